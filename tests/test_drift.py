"""A served model's drift job (serving.models[].drift): the CronJob and PodMonitor Plinth plans in the team's
namespace, its network policy, its image, its alert threshold and the spec rules. The job's program itself,
with the real Evidently: tests/test_drift_job.py."""

from __future__ import annotations

import kubernetes_validate
import pytest

from support import by_key
from test_serving import BENTO, TRITON, spec
from test_spec_errors import overlay_errors
from plinth.catalog import IMAGES
from plinth.engine.offline import plan
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.podsecurity import restricted
from plinth.mirror import mirror_list
from plinth.modules.serving.drift import DRIFT_OF_LABEL
from plinth.render import kubernetes_objects
from plinth.spec.rules import check_rules
from plinth.vocabulary import USER_PROVIDED

DRIFT = {"reference": "pvc://ranker-data/reference/train.parquet", "window": "pvc://ranker-logs/window.csv",
         "threshold": 0.4}
DRIFTING = {**BENTO, "drift": DRIFT}


@pytest.fixture(scope="module")
def planned():
    drifting = spec(models=[TRITON, DRIFTING])
    assert check_rules(drifting) == []
    return plan(drifting, "drift")


@pytest.fixture(scope="module")
def served(planned):
    return by_key(planned, "plinth:serving:Serving")


def test_a_drift_job_runs_the_drift_image_on_its_schedule_in_the_teams_namespace(served):
    cronjob = served[("CronJob", "search", "ranker-drift")].inputs
    # The data claims are the team's: the references-resolve policy reads them here.
    assert cronjob["metadata"]["annotations"][USER_PROVIDED] == (
        "PersistentVolumeClaim/ranker-data,PersistentVolumeClaim/ranker-logs")
    assert cronjob["spec"]["schedule"] == "0 4 * * *" and cronjob["spec"]["timeZone"] == "Etc/UTC"
    assert cronjob["spec"]["concurrencyPolicy"] == "Replace"  # the next run takes over serving the score
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "workloads" and pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["image"] == IMAGES["drift"] == "ghcr.io/plinth-platform/plinth-drift:0.7.23-1"
    assert container["args"] == ["--reference=/data/ranker-data/reference/train.parquet",
                                 "--window=/data/ranker-logs/window.csv", "--model=ranker", "--team=search",
                                 "--max-rows=1000000", "--serve=9108"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
    mounts = {m["mountPath"]: m["readOnly"] for m in container["volumeMounts"] if m["name"].startswith("data-")}
    assert mounts == {"/data/ranker-data": True, "/data/ranker-logs": True}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
    assert claims == {"ranker-data", "ranker-logs"}
    # Computing may take long; only then does the port open (and must keep answering).
    assert container["startupProbe"] == {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10, "failureThreshold": 360}
    assert "initialDelaySeconds" not in container["livenessProbe"]
    # Pod Security restricted, as the model servers.
    assert restricted(pod) == []
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_only_models_with_drift_get_a_job_and_the_image_is_listed_only_then(served):
    assert [key for key in served if key[0] == "CronJob"] == [("CronJob", "search", "ranker-drift")]
    assert IMAGES["drift"] in {i.source for i in mirror_list(spec(models=[TRITON, DRIFTING])).images}
    assert IMAGES["drift"] not in {i.source for i in mirror_list(spec(models=[TRITON, BENTO])).images}


def test_prometheus_scrapes_the_jobs_score_and_nothing_else_reaches_it(served):
    monitor = served[("PodMonitor", "search", "ranker-drift")].inputs["spec"]
    labels = {"app.kubernetes.io/instance": "test", DRIFT_OF_LABEL: "ranker"}
    assert monitor["selector"] == {"matchLabels": labels}
    assert monitor["namespaceSelector"] == {"matchNames": ["search"]}
    assert monitor["podMetricsEndpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "60s"}]
    cronjob = served[("CronJob", "search", "ranker-drift")].inputs
    assert cronjob["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"] == labels
    policy = served[("NetworkPolicy", "search", "allow-from-monitoring-ranker-drift")].inputs["spec"]
    assert policy == {"podSelector": {"matchLabels": labels}, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
         "ports": [{"port": 9108, "protocol": "TCP"}]}]}
    # The model's own policies do not select the job's pods (they select plinth.dev/model).
    model_policy = served[("NetworkPolicy", "search", "allow-from-monitoring-ranker")].inputs["spec"]
    assert DRIFT_OF_LABEL not in model_policy["podSelector"]["matchLabels"]


def test_the_models_drift_threshold_overrides_the_platforms_in_its_alert(served):
    def drift_expr(namespace: str, name: str) -> str:
        groups = served[("PrometheusRule", namespace, name)].inputs["spec"]["groups"]
        [rule] = [r for r in groups[0]["rules"] if r["alert"] == "ModelDrift"]
        return rule["expr"]

    assert drift_expr("search", "ranker") == 'max(plinth_model_drift_score{namespace="search",model="ranker"}) > 0.4'
    assert drift_expr("fraud", "scorer") == 'max(plinth_model_drift_score{namespace="fraud",model="scorer"}) > 0.3'


def test_the_cronjob_and_policy_are_valid_kubernetes(planned):
    objects = [obj for r, obj in kubernetes_objects(planned) if "plinth:serving:Serving" in r.urn
               and obj["kind"] == "CronJob"]
    assert len(objects) == 1
    for obj in objects:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)


# --- spec rules, at their file:line ---------------------------------------------------------------------

MODEL = """\
serving:
  models:
    - name: ranker
      team: fraud
      runtime: bentoml
      image: registry.corp.internal/ranker
      stable: {version: "1"}
      drift:
"""


def test_a_drift_job_needs_the_drift_alert_and_pvc_files(write):
    errors = overlay_errors(write, "monitoring: {enabled: true}\n" + MODEL + """\
        reference: pvc://data/../etc/passwd.csv
        window: pvc://logs/window.json
""")
    assert errors == [
        "bad.yaml:10:7: serving.models[ranker].drift: the drift job's score is only alerted on with monitoring.drift "
        "enabled [rule model-drift-alerts; fix: set monitoring.drift.enabled: true, or remove the model's drift]",
        "bad.yaml:11:9: serving.models[ranker].drift.reference: 'pvc://data/../etc/passwd.csv' does not name a "
        "claim and a .csv or .parquet file in it [rule drift-data-file; fix: use pvc://<claim>/<path>.csv or "
        ".parquet, the claim in the team's namespace]",
        "bad.yaml:12:9: serving.models[ranker].drift.window: 'pvc://logs/window.json' does not name a claim and a "
        ".csv or .parquet file in it [rule drift-data-file; fix: use pvc://<claim>/<path>.csv or .parquet, the "
        "claim in the team's namespace]"]


@pytest.mark.parametrize("reference", ["run:../train.csv", "run:/data/train.csv", "run:data//train.csv",
                                       "run:data/train.json"])
def test_a_run_reference_needs_a_registered_model_and_names_a_csv_or_parquet_artifact(write, reference):
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + f"""\
        reference: {reference}
        window: pvc://logs/window.csv
""")
    assert errors == [
        f"bad.yaml:11:9: serving.models[ranker].drift.reference: {reference!r} names an artifact of the served "
        "version's run, but the model serves no registered version [rule drift-reference-run; fix: add registry "
        "(the model in MLflow), or name a file: pvc://<claim>/<path>]",
        f"bad.yaml:11:9: serving.models[ranker].drift.reference: {reference!r} does not name a .csv or .parquet "
        "artifact of the run [rule drift-data-file; fix: use run:<path>.csv or .parquet, the path among the run's "
        "artifacts (e.g. run:data/train.parquet)]"]


def test_drift_fields_are_checked_by_the_schema(write):
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        schedule: daily
        reference: s3://bucket/reference.csv
        threshold: 2
""")
    assert errors == [
        r'bad.yaml:11:9: serving.models[ranker].drift.schedule: expected a string matching ^\S+( \S+){4}$, got "daily"',
        r'bad.yaml:12:9: serving.models[ranker].drift.reference: expected a string matching ^(pvc://|run:)\S+$, '
        r'got '
        '"s3://bucket/reference.csv"',
        "bad.yaml:13:9: serving.models[ranker].drift.threshold: expected a value less than or equal to 1, got 2"]


def test_the_drift_job_counts_in_the_teams_quota(write):
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        reference: pvc://data/reference.csv
        window: pvc://logs/window.csv
        memory: 31Gi
""")
    assert errors == [
        "base.yaml:15:5: teams[fraud].quota.memory: the team's models request up to 3.7581e+10 memory (stable at "
        "its maximum, canary and shadow, drift jobs) but the quota is 32Gi [rule serving-quota-fits; fix: raise "
        "quota.memory or lower the models' replicas/memory]"]


def test_the_drift_job_passes_the_governance_policies(planned):
    found = [v for _, _, violations in evaluate(subjects(planned)) for v in violations
             if "drift" in v.subject]
    assert found == []
    assert any(s.kind == "CronJob" for s in subjects(planned))  # the policies do see it
