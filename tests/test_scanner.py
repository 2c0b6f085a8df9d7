"""A Kubernetes security scanner (checkov) over every object Plinth authors, for every blueprint and stack.

Zero failed checks, or a narrow suppression here with its reason. (The charts' own
objects are the upstream projects'; the chart tier validates them against schemas.)

checkov pins `packaging<24` while the Pulumi SDK needs `packaging>=26`, so it lives in
an environment of its own: `$PLINTH_CHECKOV`, else `checkov` on PATH (e.g. `pipx install
checkov`; `.ci/run` makes `.venv-tools`).
"""

from __future__ import annotations

import fnmatch
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from support import BLUEPRINTS, ROOT, STACKS, checkov, stack_marks
from test_serving_registry import registered

from plinth.engine.offline import plan
from plinth.render import render
from plinth.spec.load import load_spec, load_stack_spec

# check id -> why it does not apply to what Plinth authors. Keep this narrow.
SUPPRESSED: dict[str, str] = {
    "CKV_K8S_43": "images Plinth runs itself are pinned by exact tag in plinth/catalog.py; digests are "
                  "pinned where the catalog has them (chart images) and resolved when mirroring otherwise",
}

# (check id, resource pattern) -> why it does not apply to those resources only.
SUPPRESSED_FOR: dict[tuple[str, str], str] = {
    ("CKV_K8S_35", "Deployment.feast.feast-*"): "a team's Feast server reads its credentials only from its "
    "environment: Feast substitutes the `${VAR}`s of feature_store.yaml from it when it loads the file (each a "
    "secretKeyRef, never a value), as the Feast chart's own server does",
    ("CKV_K8S_35", "Deployment.fraud.scorer-*"): "the registry-backed model's init container signs on to MLflow as "
    "its team's service account, and MLflow's client reads those credentials only from its environment "
    "(MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, each a secretKeyRef, never a value)",
    # The regulated blueprint's credit-risk logs its requests (drift.requestLog) into the object store.
    ("CKV_K8S_35", "Deployment.credit.credit-risk-stable"): "the request logger beside the model server signs its "
    "writes to the object store with its team's keys, which it reads from its environment as the AWS SDKs do "
    "(envFrom the team's Secret object-store-credentials, never a value)",
    ("CKV_K8S_35", "CronJob.credit.credit-risk-drift"): "the drift job reads its window of logged requests from the "
    "object store with pyarrow's S3 client, which takes its team's keys from its environment (envFrom the team's "
    "Secret object-store-credentials, never a value)",
}

SPECS = [pytest.param(load_spec, p, id=p.name) for p in BLUEPRINTS if p.suffix == ".yaml"] + [
    pytest.param(lambda s: load_stack_spec(ROOT, s), s, id=f"stack-{s}", marks=stack_marks(s))
    for s in STACKS
] + [pytest.param(lambda _: registered(), "registry-backed-serving", id="registry-backed-serving")]
"""Every blueprint and stack, and a platform serving a model from the registry (its init container)."""


def scan(directory: Path) -> dict:
    proc = subprocess.run([checkov(), "-d", str(directory), "--framework", "kubernetes", "--quiet", "--compact",
                           "--skip-download", "-o", "json"], capture_output=True, text=True, timeout=600)
    reports = json.loads(proc.stdout)
    return reports[0] if isinstance(reports, list) else reports


@pytest.mark.parametrize("load, ref", SPECS)
def test_the_scanner_finds_nothing_in_what_plinth_authors(load, ref, tmp_path):
    render(plan(load(ref), str(ref)), tmp_path)
    shutil.rmtree(tmp_path / "helm", ignore_errors=True)  # values files, not Kubernetes objects
    report = scan(tmp_path)
    failed = [(c["check_id"], c["check_name"], c["resource"]) for c in report["results"]["failed_checks"]
              if c["check_id"] not in SUPPRESSED and not any(
                  c["check_id"] == check and fnmatch.fnmatchcase(c["resource"], pattern)
                  for check, pattern in SUPPRESSED_FOR)]
    assert failed == []
    assert report["summary"]["passed"] > 0


def test_the_scanner_flags_a_wildcard_role(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: bad}\n"
        "rules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n")
    assert scan(tmp_path)["summary"]["failed"] > 0
