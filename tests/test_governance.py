"""Governance: each policy with a passing and a violating case, `plinth check`, and the ledger.

Violating cases change one resource of a real plan (the way a careless module or a `values`
escape hatch would) and assert the exact policy, resource and message; the shipped blueprints
and stacks must be clean.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from support import BLUEPRINTS, MINIMAL, ROOT, STACKS
from plinth.engine.offline import plan
from plinth.governance.check import check, subjects
from plinth.governance.policies import POLICIES, Subject, evaluate, read_levels
from plinth.modules.governance import spec_hash
from plinth.spec.load import load_spec, load_stack_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.yamltree import merge

PLINTH = [str(Path(sys.executable).parent / "plinth")]
SERVICES = {
    "certificates": {"certManager": {"enabled": True}},
    "secrets": {"vault": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}},
    "monitoring": {"enabled": True},
}


def platform(**overrides) -> PlatformSpec:
    return PlatformSpec.model_validate(merge(merge(YAML(typ="safe").load(MINIMAL), SERVICES), overrides))


@pytest.fixture(scope="module")
def clean():
    return subjects(plan(platform(), "test"))


@pytest.fixture(scope="module")
def prod():
    return subjects(plan(platform(metadata={"environment": "prod"}, secrets={"vault": {"ha": True}},
                                  airgap={"enabled": True, "mirror": {"registry": "mirror.corp/m",
                                                                      "charts": "oci://mirror.corp/charts"}}),
                         "test"))


def violations(found: list[Subject], name: str) -> list[tuple[str, str]]:
    [(_, _, result)] = [r for r in evaluate(found) if r[0].name == name]
    return [(v.subject, v.message) for v in result]


def changed(found: list[Subject], pick, change) -> list[Subject]:
    """The subjects with one resource (the first `pick` matches) changed in place by `change`."""
    out = copy.deepcopy(found)
    target = next(s for s in out if pick(s))
    change(target.props)
    return out


def by_kind(kind: str, name: str | None = None):
    return lambda s: s.kind == kind and (name is None or s.metadata.get("name") == name)


@pytest.mark.parametrize("name", [p.name for p in POLICIES])
def test_every_policy_passes_on_a_planned_platform(name, clean, prod):
    assert violations(clean, name) == []
    assert violations(prod, name) == []


def test_no_wildcard_rbac(clean):
    bad = changed(clean, by_kind("Role", "plinth:viewer"), lambda p: p["rules"][0].update(verbs=["*"]))
    assert violations(bad, "no-wildcard-rbac") == [("Role fraud/plinth:viewer", "a rule grants `*` in verbs")]


def test_team_namespace_isolation(clean):
    bad = changed(clean, by_kind("NetworkPolicy", "default-deny"), lambda p: p["spec"].update(policyTypes=["Ingress"]))
    bad = changed(bad, by_kind("Namespace", "fraud"),
                  lambda p: p["metadata"]["labels"].update({"pod-security.kubernetes.io/enforce": "baseline"}))
    assert violations(bad, "team-namespace-isolation") == [
        ("Namespace fraud", "Pod Security is not enforced at `restricted`"),
        ("Namespace fraud", "no default-deny NetworkPolicy for both ingress and egress")]


def test_ownership_labels(clean):
    bad = changed(clean, by_kind("ResourceQuota"), lambda p: p["metadata"]["labels"].pop("plinth.dev/cost-center"))
    bad = changed(bad, by_kind("LimitRange"), lambda p: p["metadata"]["labels"].pop("plinth.dev/team"))
    assert sorted(violations(bad, "ownership-labels")) == [
        ("LimitRange fraud/container-defaults", "in team fraud's namespace without label plinth.dev/team=fraud"),
        ("ResourceQuota fraud/team-quota", "missing label(s) plinth.dev/cost-center")]


def test_airgap_mirror_only(prod):
    release = lambda s: s.type.endswith("helm.sh/v3:Release") and s.props["name"] == "vault"  # noqa: E731
    bad = changed(prod, release, lambda p: p["values"]["server"]["image"].update(repository="docker.io/hashicorp/vault"))
    assert violations(bad, "airgap-mirror-only") == [
        ("Release vault", "image docker.io/hashicorp/vault:2.0.4 is not from the mirror mirror.corp/m")]


def test_pinned_images(prod):
    release = lambda s: s.type.endswith("helm.sh/v3:Release") and s.props["name"] == "vault"  # noqa: E731
    bad = changed(prod, release, lambda p: p["values"]["injector"]["image"].update(tag="latest"))
    assert violations(bad, "pinned-images") == [
        ("Release vault", "image mirror.corp/m/hashicorp/vault-k8s:latest uses the tag `latest`")]


def test_prod_high_availability(prod):
    release = lambda s: s.type.endswith("helm.sh/v3:Release") and s.props["name"] == "vault"  # noqa: E731
    bad = changed(prod, release, lambda p: p["values"]["server"]["ha"].update(replicas=1))
    assert violations(bad, "prod-high-availability") == [
        ("Release vault", "Vault is not raft HA with at least 3 replicas")]


def test_secrets_from_stack_config(clean):
    bad = changed(clean, by_kind("Secret", "grafana-admin"), lambda p: p["metadata"].pop("annotations"))
    assert violations(bad, "secrets-from-stack-config") == [(
        "Secret monitoring/grafana-admin",
        "a Secret without the plinth.dev/secret-source annotation naming where its payload comes from")]


def test_no_external_services(clean):
    release = lambda s: s.type.endswith("helm.sh/v3:Release") and s.props["name"] == "longhorn"  # noqa: E731
    bad = changed(clean, release, lambda p: p["values"].update(service={"ui": {"type": "NodePort"}}))
    assert violations(bad, "no-external-services") == [
        ("Release longhorn", "values service.ui.type = NodePort: the chart would expose a Service outside the cluster")]


@pytest.mark.parametrize("path", [p for p in BLUEPRINTS if p.suffix == ".yaml"], ids=lambda p: p.name)
def test_every_blueprint_is_clean(path):
    assert [r.policy.name for r in check(plan(load_spec(path), "test")) if r.violations] == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_is_clean(stack):
    assert [r.policy.name for r in check(plan(load_stack_spec(ROOT, stack), "test")) if r.violations] == []


def test_levels_in_pulumis_policy_config_form():
    assert read_levels({"all": "advisory", "pinned-images": {"enforcementLevel": "mandatory"}}, "f") == {
        p.name: "mandatory" if p.name == "pinned-images" else "advisory" for p in POLICIES}
    with pytest.raises(ValueError, match="f: unknown policy 'pinned-image'"):
        read_levels({"pinned-image": "advisory"}, "f")
    with pytest.raises(ValueError, match="f: pinned-images: level 'warn' is not one of mandatory, advisory"):
        read_levels({"pinned-images": "warn"}, "f")


def _project(tmp_path: Path, values: dict, policy: dict | None = None) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: plinth\nruntime: python\n")
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "stacks").mkdir()
    doc = merge(merge(YAML(typ="safe").load(MINIMAL), SERVICES), {"storage": {"longhorn": {"values": values}}})
    (tmp_path / "blueprints" / "b.yaml").write_text(json.dumps(doc))
    (tmp_path / "stacks" / "Pulumi.s.yaml").write_text("config:\n  plinth:blueprint: blueprints/b.yaml\n")
    if policy is not None:
        (tmp_path / "stacks" / "policy.s.json").write_text(json.dumps(policy))
    return tmp_path


def test_plinth_check_exits_1_on_a_mandatory_violation_and_honours_the_stacks_levels(tmp_path):
    project = _project(tmp_path, {"service": {"ui": {"type": "NodePort"}}})
    run = subprocess.run([*PLINTH, "check", "--stack", "s"], cwd=project, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "[mandatory] no-external-services" in run.stdout
    assert "  - Release longhorn: values service.ui.type = NodePort" in run.stdout
    assert "  fix: expose through an HTTPRoute on the platform Gateway" in run.stdout
    (project / "stacks" / "policy.s.json").write_text('{"no-external-services": "advisory"}')
    run = subprocess.run([*PLINTH, "check", "--stack", "s", "--json"], cwd=project, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    [result] = [r for r in json.loads(run.stdout) if r["policy"] == "no-external-services"]
    assert result["level"] == "advisory" and len(result["violations"]) == 1


def test_a_malformed_policy_configuration_is_bad_input(tmp_path):
    project = _project(tmp_path, {}, {"no-such-policy": "advisory"})
    run = subprocess.run([*PLINTH, "check", "--stack", "s"], cwd=project, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert "policy.s.json: unknown policy 'no-such-policy'" in run.stderr and "Traceback" not in run.stderr


def test_the_ledger_records_the_spec_and_its_files_not_the_run(tmp_path):
    result = plan(load_stack_spec(ROOT, "regulated-prod"), "test")
    [ledger] = [r for r in result.resources if r.type.endswith("core/v1:ConfigMap") and r.name == "ledger"]
    facts = json.loads(ledger.inputs["data"]["platform.json"])
    assert facts == {"platform": "regulated", "environment": "prod", "mirror": "harbor.corp.internal/mirror"}
    record = json.loads(ledger.inputs["data"]["spec.json"])
    assert record["sha256"] == spec_hash(load_stack_spec(ROOT, "regulated-prod"))
    # The same spec from another file has the same hash.
    copy_path = tmp_path / "copy.yaml"
    copy_path.write_text((ROOT / "blueprints" / "minimal.yaml").read_text())
    assert spec_hash(load_spec(copy_path)) == spec_hash(load_spec(ROOT / "blueprints" / "minimal.yaml"))
    # Planned twice: identical (no timestamps, nothing per run).
    assert plan(load_stack_spec(ROOT, "regulated-prod"), "test").to_json() == result.to_json()


def test_the_access_matrix_is_the_planned_roles_and_bindings():
    from plinth.governance.report import access_matrix

    rows = access_matrix(plan(load_spec(ROOT / "blueprints" / "minimal.yaml"), "test"))
    assert [(r["subject"], r["scope"], r["role"]) for r in rows] == [
        ("Group fraud-data-scientists", "fraud", "plinth:data-scientist"),
        ("Group fraud-ml-engineers", "fraud", "plinth:ml-engineer"),
        ("Group ml-platform-admins", "cluster", "plinth:minimal:platform-admin"),
        ("Group risk-auditors", "fraud", "plinth:viewer"),
        ("Group search-data-scientists", "search", "plinth:data-scientist"),
        ("Group search-ml-engineers", "search", "plinth:ml-engineer")]
    viewer = next(r for r in rows if r["role"] == "plinth:viewer")
    assert viewer["permissions"] == [
        "get,list,watch on apps/deployments, apps/replicasets, apps/statefulsets, "
        "autoscaling/horizontalpodautoscalers, batch/cronjobs, batch/jobs, configmaps, endpoints, events, "
        "gateway.networking.k8s.io/httproutes, limitranges, networking.k8s.io/networkpolicies, "
        "persistentvolumeclaims, pods, pods/log, resourcequotas, serviceaccounts, services"]


def test_plinth_report_for_the_regulated_stack_and_what_changed_since(tmp_path):
    first = subprocess.run([*PLINTH, "report", "--stack", "regulated-prod", "--out", str(tmp_path / "a")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert {"subject": "Group internal-audit", "scope": "credit", "role": "plinth:viewer"}.items() <= next(
        r for r in report["access"] if r["subject"] == "Group internal-audit" and r["scope"] == "credit").items()
    assert [p["result"] for p in report["policies"]] == ["pass"] * len(POLICIES)
    assert {"secret": "harbor/harbor-admin", "type": "Opaque", "source": "plinth:harborAdminPassword"} \
        in report["secrets"]
    assert "(secret)" not in json.dumps(report)  # names and sources, never a payload
    assert [f["path"] for f in report["provenance"]["files"]] == [
        "blueprints/onprem-airgap-regulated.yaml", "stacks/Pulumi.regulated-prod.yaml"]
    assert {"route": "harbor/harbor", "hostnames": ["registry.models.corp.internal"],
            "backends": ["harbor:80"]} in report["exposure"]["routes"]
    assert "## Access matrix" in (tmp_path / "a" / "report.md").read_text()
    # The dev stack, compared with prod: the spec and the gateway host differ, the policies do not.
    second = subprocess.run([*PLINTH, "report", "--stack", "regulated-dev", "--out", str(tmp_path / "b"),
                             "--since", str(tmp_path / "a" / "report.json")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    changes = json.loads((tmp_path / "b" / "report.json").read_text())["changes"]
    assert set(changes) >= {"spec", "exposure"} and "policies" not in changes
    assert "## Changes since the previous report" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["report"], "--out: required: the directory to write the report into"),
    (["report", "--out", "x", "--since", "missing.json"], "--since: missing.json: not a report.json"),
])
def test_report_bad_input_exits_2(args, message, tmp_path):
    run = subprocess.run([*PLINTH, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr
