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

from support import (BLUEPRINTS, MINIMAL, ROOT, ROUTE_CAPTURES, ROUTES_OF_ITS_OWN, SERVICES, STACKS, platform_spec,
                     spec_document)
from plinth.engine.offline import plan
from plinth.governance.check import check, subjects
from plinth.governance.policies import POLICIES, Subject, evaluate, read_levels
from plinth.governance.policies.core import HELM_RELEASE
from plinth.governance.policies.availability import HA_EXEMPTIONS
from plinth.modules.governance import spec_hash
from plinth.spec.load import load_spec, load_stack_spec
from plinth.spec.models import PlatformSpec

PLINTH = [str(Path(sys.executable).parent / "plinth")]
SERVICES = {
    "certificates": {"certManager": {"enabled": True}},
    "secrets": {"vault": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}},
    "monitoring": {"enabled": True},
}


def platform(**overrides) -> PlatformSpec:
    return platform_spec(SERVICES, overrides)


@pytest.fixture(scope="module")
def clean():
    return subjects(plan(platform(), "test"))


@pytest.fixture(scope="module")
def prod():
    # Backups are on in prod: on-prem they go to the object store.
    return subjects(plan(platform(metadata={"environment": "prod"}, secrets={"vault": {"ha": True}},
                                  storage={"objectStore": {"enabled": True}},
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
    # (The minimal spec's team names an ml-engineer group only: the one team role there is.)
    bad = changed(clean, by_kind("Role", "plinth:ml-engineer"), lambda p: p["rules"][0].update(verbs=["*"]))
    assert violations(bad, "no-wildcard-rbac") == [("Role fraud/plinth:ml-engineer", "a rule grants `*` in verbs")]


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


def _object(kind: str, name: str, namespace: str, spec: dict, api: str = "apps/v1") -> Subject:
    """A Kubernetes object as `plinth check` sees one (a chart's rendered object, or one of Plinth's)."""
    return Subject(f"kubernetes:{api}:{kind}", name, {"apiVersion": api, "kind": kind,
                                                      "metadata": {"name": name, "namespace": namespace},
                                                      "spec": spec})


def _deployment(name: str, namespace: str, replicas: int | None, labels: dict) -> Subject:
    spec = {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {}}}
    return _object("Deployment", name, namespace, spec if replicas is None else {**spec, "replicas": replicas})


def _budget(name: str, namespace: str, labels: dict) -> Subject:
    return _object("PodDisruptionBudget", name, namespace, {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                   api="policy/v1")


def test_prod_high_availability_every_workload_has_two_replicas_and_a_budget(prod):
    app = {"app": "api"}
    added = [
        _deployment("single", "apps", None, {"app": "single"}),           # replicas default to 1
        _deployment("api", "apps", 2, app), _budget("api", "apps", app),   # fine
        _deployment("unbudgeted", "apps", 3, {"app": "x"}),
        _budget("elsewhere", "other", {"app": "x"}),                       # another namespace's budget
        _object("Redis", "cache", "apps", {}, api="redis.redis.opstreelabs.in/v1beta2"),
        _object("RedisReplication", "rr", "apps", {"clusterSize": 3}, api="redis.redis.opstreelabs.in/v1beta2"),
        _object("Cluster", "pg", "apps", {"instances": 3, "enablePDB": False}, api="postgresql.cnpg.io/v1"),
        _object("Cluster", "pg-ok", "apps", {"instances": 3}, api="postgresql.cnpg.io/v1"),
        # prometheus-operator labels the pods; the chart's budget selects them by those labels.
        _object("Prometheus", "prom", "monitoring", {"replicas": 2}, api="monitoring.coreos.com/v1"),
        _budget("prom", "monitoring", {"app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "prom"}),
        _object("Alertmanager", "am", "monitoring", {"replicas": 3}, api="monitoring.coreos.com/v1"),
        # Named by HA_EXEMPTIONS (a model's canary track; a chart fixing its operator at one replica).
        _deployment("m-canary", "fraud", 1, {"plinth.dev/track": "canary"}),
        _deployment("gpu-operator", "gpu-operator", 1, {"app": "gpu-operator"}),
    ]
    assert violations(prod + added, "prod-high-availability") == [
        ("Deployment apps/single", "runs 1 replica(s): prod needs 2 or more"),
        ("Deployment apps/single", "no PodDisruptionBudget in namespace apps selects its pods"),
        ("Deployment apps/unbudgeted", "no PodDisruptionBudget in namespace apps selects its pods"),
        ("Redis apps/cache", "runs 1 replica(s): prod needs 2 or more"),
        ("Redis apps/cache", "no PodDisruptionBudget: a standalone Redis is one pod"),
        ("RedisReplication apps/rr", "no PodDisruptionBudget: pdb.enabled is not true"),
        ("Cluster apps/pg", "no PodDisruptionBudget: enablePDB is false"),
        ("Alertmanager monitoring/am", "no PodDisruptionBudget in namespace monitoring selects its pods"),
    ]
    # Only prod is held to it.
    dev = [s for s in prod if not (s.kind == "ConfigMap" and s.metadata.get("name") == "plinth-ledger")]
    assert violations(dev + added, "prod-high-availability") == []


def test_prod_high_availability_sees_plinths_own_workloads():
    found = subjects(plan(platform(metadata={"environment": "prod"}, secrets={"vault": {"ha": True}},
                                   registry={"pythonIndex": {"enabled": True}},
                                   storage={"objectStore": {"enabled": True}},
                                   featureStore={"feast": {"enabled": True}}), "test"))
    assert violations(found, "prod-high-availability") == []
    bad = changed(found, by_kind("Deployment", "pypiserver"), lambda p: p["spec"].update(replicas=1))
    bad = [s for s in bad if not (s.type.endswith(":PodDisruptionBudget") and s.metadata["name"] == "pypiserver")]
    bad = changed(bad, lambda s: s.type.endswith(":RedisReplication"), lambda p: p["spec"].pop("pdb"))
    assert violations(bad, "prod-high-availability") == [
        ("RedisReplication feast/feast-redis", "no PodDisruptionBudget: pdb.enabled is not true"),
        ("Deployment python-index/pypiserver", "runs 1 replica(s): prod needs 2 or more"),
        ("Deployment python-index/pypiserver", "no PodDisruptionBudget in namespace python-index selects its pods"),
    ]


def test_every_ha_exemption_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for exemption in HA_EXEMPTIONS:
        labels = ", ".join(f"`{k}={v}`" for k, v in exemption.labels)
        row = f"| `{exemption.namespace}` | `{exemption.name}` | {labels} | {exemption.reason} |"
        assert row in readme, row


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
    doc = spec_document(SERVICES, {"storage": {"longhorn": {"values": values}}})
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
    assert "  fix: remove the values key; expose through an HTTPRoute on the platform Gateway (the service's " \
           "hostname field)" in run.stdout
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
    assert facts == {"platform": "regulated", "environment": "prod", "mirror": "harbor.corp.internal/mirror",
                     "perimeter": ["harbor.corp.internal", "files.corp.internal", "login.corp.internal"],
                     "signOn": True}
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
    # The provider's group as the API server names it (identity.oidc's groups prefix).
    assert {"subject": "Group oidc:internal-audit", "scope": "credit", "role": "plinth:viewer"}.items() <= next(
        r for r in report["access"] if r["subject"] == "Group oidc:internal-audit" and r["scope"] == "credit").items()
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
    # Item by item: a named item's field from -> to (matched by its name, not its position).
    assert {"path": "data.databases[harbor/harbor-postgres].instances", "from": 3, "to": 1} in changes["data"]
    assert {"path": "exposure.listeners[harbor].hostname", "from": "registry.models.corp.internal",
            "to": "registry.models-dev.corp.internal"} in changes["exposure"]
    assert "## Changes since the previous report" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize("args, message", [
    (["report"], "--out: required: the directory to write the report into"),
    (["report", "--out", "x", "--since", "missing.json"], "--since: missing.json: not a report.json"),
])
def test_report_bad_input_exits_2(args, message, tmp_path):
    run = subprocess.run([*PLINTH, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, run.stderr


# --- the policies for modules still to come (eks, gke, serving): synthetic resources with the real type tokens
# and the engine's camelCase inputs, over a planned platform (which has none of them, so stays clean).

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def k8s(kind: str, name: str, namespace: str | None = "fraud", labels: dict | None = None, api: str = "apps/v1",
        **props) -> Subject:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {}), "labels": labels or {}}
    return Subject(f"kubernetes:{api}:{kind}", name, {"apiVersion": api, "kind": kind, "metadata": metadata, **props})


def pod(*containers: dict, tolerations: list | None = None, labels: dict | None = None) -> dict:
    spec = {"containers": list(containers), **({"tolerations": tolerations} if tolerations else {})}
    return {"template": {"metadata": {"labels": labels or {}}, "spec": spec}}


def container(name: str, limits: dict | None = None, requests: dict | None = None, **more) -> dict:
    resources = {**({"limits": limits} if limits else {}), **({"requests": requests} if requests else {})}
    return {"name": name, "image": "nvcr.io/nvidia/tritonserver:24.08-py3", "resources": resources, **more}


def test_gpu_workloads(clean):
    good = [
        k8s("Deployment", "scorer", spec={"replicas": 1, **pod(container("triton", {"nvidia.com/gpu": "1"}),
                                                                 tolerations=[GPU_TOLERATION])}),
        k8s("Job", "finetune", api="batch/v1", spec=pod(
            container("train", {"nvidia.com/mig-1g.10gb": "1"}, {"nvidia.com/mig-1g.10gb": "1"}),
            tolerations=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}])),
        k8s("DaemonSet", "node-agent", spec=pod(container("agent"), tolerations=[GPU_TOLERATION])),
        k8s("Deployment", "api", spec=pod(container("api", {"cpu": "1"}))),
    ]
    assert violations(clean + good, "gpu-workloads") == []
    bad = [
        k8s("Deployment", "scorer", spec=pod(container("triton", requests={"nvidia.com/gpu": "1"}))),
        k8s("StatefulSet", "embedder", spec=pod(container("bento", {"nvidia.com/gpu": "2"}),
                                                tolerations=[{**GPU_TOLERATION, "effect": "NoExecute"}])),
        k8s("CronJob", "report", api="batch/v1", spec={"schedule": "@daily", "jobTemplate": {
            "spec": pod(container("report"), tolerations=[{"operator": "Exists"}])}}),
        k8s("Pod", "debug", api="v1", spec={"containers": [container("shell")],
                                            "tolerations": [{"key": "nvidia.com/gpu", "value": "present"}]}),
    ]
    assert violations(clean + bad, "gpu-workloads") == [
        ("Deployment fraud/scorer", "container triton requests nvidia.com/gpu without a limit"),
        ("Deployment fraud/scorer", "asks for a GPU without tolerating the taint nvidia.com/gpu=present:NoSchedule"),
        ("StatefulSet fraud/embedder",
         "asks for a GPU without tolerating the taint nvidia.com/gpu=present:NoSchedule"),
        ("CronJob fraud/report", "tolerates the taint nvidia.com/gpu=present:NoSchedule without asking for a GPU: "
                                 "it would squat GPU nodes"),
        ("Pod fraud/debug", "tolerates the taint nvidia.com/gpu=present:NoSchedule without asking for a GPU: "
                            "it would squat GPU nodes"),
    ]


PROBES = {"livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": 8000}},
          "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": 8000}}}


def served(model: str, namespace: str = "fraud", **probes) -> Subject:
    labels = {"app.kubernetes.io/name": model, "plinth.dev/model": model}
    return k8s("Deployment", model, namespace, labels, spec={"replicas": 2, **pod(
        container("triton", {"nvidia.com/gpu": "1"}, **probes), tolerations=[GPU_TOLERATION], labels=labels)})


def budget(name: str, selector: dict | None, namespace: str = "fraud") -> Subject:
    return k8s("PodDisruptionBudget", name, namespace, api="policy/v1",
               spec={"maxUnavailable": 1, **({"selector": selector} if selector is not None else {})})


def alerts(name: str, *rules: dict, namespace: str = "fraud") -> Subject:
    return k8s("PrometheusRule", name, namespace, api="monitoring.coreos.com/v1",
               spec={"groups": [{"name": name, "rules": list(rules)}]})


def test_served_model_reliability(clean):
    good = [
        served("fraud-scorer", **PROBES),
        budget("fraud-scorer", {"matchLabels": {"app.kubernetes.io/name": "fraud-scorer"}}),
        alerts("fraud-scorer", {"alert": "ModelDown", "expr": 'sum(up{model="fraud-scorer"}) == 0'}),
        served("ranker", "search", **PROBES),
        budget("ranker", {"matchExpressions": [{"key": "plinth.dev/model", "operator": "In",
                                                "values": ["ranker"]}]}, "search"),
        alerts("serving", {"alert": "HighLatency", "expr": "histogram_quantile(0.99, x) > 1",
                           "labels": {"model": "ranker"}}, namespace="search"),
        k8s("Deployment", "unlabelled", spec=pod(container("api"))),  # not a model server: no probes needed
    ]
    assert violations(clean + good, "served-model-reliability") == []
    bad = [
        served("fraud-scorer", livenessProbe=PROBES["livenessProbe"]),
        budget("fraud-scorer", {"matchLabels": {"app.kubernetes.io/name": "fraud-scorer"}}, "search"),
        budget("everything-else", {"matchLabels": {"app.kubernetes.io/name": "other"}}),
        budget("null-selector", None),
        alerts("fraud-scorer", {"alert": "ModelDown", "expr": 'up{model="fraud-scorer-v2"} == 0'}),
        served("ranker", "search"),
        budget("ranker", {}, "search"),  # policy/v1: an empty selector covers every pod in the namespace
        alerts("ranker", {"alert": "ModelDown", "expr": 'up{model="ranker"} == 0'}),  # in the wrong namespace
    ]
    assert violations(clean + bad, "served-model-reliability") == [
        ("Deployment fraud/fraud-scorer", "container triton has no readinessProbe"),
        ("Deployment fraud/fraud-scorer", "no PodDisruptionBudget in namespace fraud selects its pods"),
        ("Deployment fraud/fraud-scorer", "no PrometheusRule in namespace fraud has a rule naming the model "
                                          "fraud-scorer"),
        ("Deployment search/ranker", "container triton has no livenessProbe or readinessProbe"),
        ("Deployment search/ranker", "no PrometheusRule in namespace search has a rule naming the model ranker"),
    ]


def cloud(type_: str, resource: str, **props) -> Subject:
    return Subject(type_, resource, props)


S3_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
S3_SSE_V2 = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
S3_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BLOCK_ALL = dict.fromkeys(("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
KMS = [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}, "bucketKeyEnabled": True}]


def test_cloud_private_and_encrypted(clean):
    good = [
        cloud("aws:eks/cluster:Cluster", "ml", vpcConfig={"endpointPrivateAccess": True,
                                                          "endpointPublicAccess": False}),
        cloud("aws:eks/cluster:Cluster", "lab", vpcConfig={"endpointPublicAccess": True},
              tags={"plinth.dev/public-endpoint-reason": "no VPN for the lab account"}),
        cloud("aws:s3/bucketV2:BucketV2", "models", bucket="plinth-models"),
        cloud(S3_SSE_V2, "models-sse", bucket="plinth-models", rules=KMS),
        cloud(S3_PAB, "models-pab", bucket="plinth-models", **BLOCK_ALL),
        cloud("aws:s3/bucket:Bucket", "features", bucket="plinth-features"),
        cloud(S3_SSE, "features-sse", bucket="plinth-features",
              rules=[{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]),
        cloud(S3_PAB, "features-pab", bucket="plinth-features", **BLOCK_ALL),
        cloud("gcp:container/cluster:Cluster", "ml",
              privateClusterConfig={"enablePrivateNodes": True, "enablePrivateEndpoint": True}),
        cloud("gcp:container/cluster:Cluster", "lab", privateClusterConfig={"enablePrivateNodes": True},
              resourceLabels={"plinth-public-endpoint-reason": "no-vpn"}),
        cloud("gcp:storage/bucket:Bucket", "models", name="plinth-models", location="EU",
              uniformBucketLevelAccess=True, publicAccessPrevention="enforced"),
    ]
    assert violations(clean + good, "cloud-private-and-encrypted") == []
    bad = [
        cloud("aws:eks/cluster:Cluster", "ml", vpcConfig={"subnetIds": ["subnet-1"]}),  # EKS defaults to public
        cloud("aws:eks/cluster:Cluster", "lab", vpcConfig={"endpointPublicAccess": True}, tags={"team": "ml"}),
        cloud("aws:s3/bucketV2:BucketV2", "scratch"),
        cloud("aws:s3/bucket:Bucket", "logs", bucket="plinth-logs"),
        cloud(S3_SSE, "logs-sse", bucket="plinth-logs", rules=[{"bucketKeyEnabled": True}]),
        cloud(S3_PAB, "logs-pab", bucket="plinth-logs", blockPublicAcls=True, ignorePublicAcls=True),
        cloud("aws:s3/bucketV2:BucketV2", "raw", bucket="plinth-raw"),
        cloud(S3_SSE_V2, "other-sse", bucket="plinth-other", rules=KMS),
        cloud("gcp:container/cluster:Cluster", "ml", privateClusterConfig={"enablePrivateEndpoint": True}),
        cloud("gcp:container/cluster:Cluster", "lab", resourceLabels={"team": "ml"}),
        cloud("gcp:storage/bucket:Bucket", "models", name="plinth-models", location="EU",
              uniformBucketLevelAccess=False),
    ]
    assert violations(clean + bad, "cloud-private-and-encrypted") == [
        ("Cluster ml", "the API server endpoint is public (vpcConfig.endpointPublicAccess) without a "
                       "plinth.dev/public-endpoint-reason tag"),
        ("Cluster lab", "the API server endpoint is public (vpcConfig.endpointPublicAccess) without a "
                        "plinth.dev/public-endpoint-reason tag"),
        ("BucketV2 scratch", "the bucket is not named explicitly (`bucket`), so its encryption and public access "
                             "block cannot be matched to it"),
        ("Bucket logs", "no server-side encryption configuration for bucket plinth-logs"),
        ("Bucket logs", "the public access block for bucket plinth-logs leaves blockPublicPolicy, "
                        "restrictPublicBuckets off"),
        ("BucketV2 raw", "no server-side encryption configuration for bucket plinth-raw"),
        ("BucketV2 raw", "no public access block for bucket plinth-raw"),
        ("Cluster ml", "nodes are not private (privateClusterConfig.enablePrivateNodes)"),
        ("Cluster lab", "nodes are not private (privateClusterConfig.enablePrivateNodes)"),
        ("Cluster lab", "the control-plane endpoint is public (privateClusterConfig.enablePrivateEndpoint) without "
                        "a plinth-public-endpoint-reason resource label"),
        ("Bucket models", "uniform bucket-level access is off (uniformBucketLevelAccess)"),
        ("Bucket models", "public access prevention is not enforced (publicAccessPrevention)"),
    ]


OIDC = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF"


def trust(condition: dict | None = None, action: str = "sts:AssumeRoleWithWebIdentity",
          federated: str = f"arn:aws:iam::111122223333:oidc-provider/{OIDC}") -> str:
    statement = {"Effect": "Allow", "Principal": {"Federated": federated}, "Action": action}
    return json.dumps({"Version": "2012-10-17", "Statement": [{**statement, **({"Condition": condition}
                                                                               if condition else {})}]})


def role(name: str, policy: str) -> Subject:
    return Subject("aws:iam/role:Role", name, {"name": name, "assumeRolePolicy": policy})


def gcp_grant(type_: str, name: str, role_: str = "roles/iam.workloadIdentityUser", **members) -> Subject:
    return Subject(f"gcp:serviceaccount/{type_}", name, {
        "serviceAccountId": "projects/ml-prod/serviceAccounts/scorer@ml-prod.iam.gserviceaccount.com",
        "role": role_, **members})


def test_workload_identity_scoped(clean):
    good = [
        role("fraud-scorer", trust({"StringEquals": {f"{OIDC}:sub": "system:serviceaccount:fraud:scorer",
                                                     f"{OIDC}:aud": "sts.amazonaws.com"}})),
        role("ranker", trust({"StringEquals": {f"{OIDC}:sub": ["system:serviceaccount:search:ranker"]}})),
        role("nodes", json.dumps({"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}})),
        gcp_grant("iAMMember:IAMMember", "scorer", member="serviceAccount:ml-prod.svc.id.goog[fraud/scorer]"),
        gcp_grant("iAMBinding:IAMBinding", "ranker", members=["serviceAccount:ml-prod.svc.id.goog[search/ranker]"]),
        gcp_grant("iAMMember:IAMMember", "admins", "roles/iam.serviceAccountUser", member="group:ml@corp.example"),
    ]
    assert violations(clean + good, "workload-identity-scoped") == []
    bad = [
        role("any-in-fraud", trust({"StringLike": {f"{OIDC}:sub": "system:serviceaccount:fraud:*"}})),
        role("unconditioned", trust(action="sts:*")),
        role("two", trust({"StringEquals": {f"{OIDC}:sub": ["system:serviceaccount:fraud:a",
                                                            "system:serviceaccount:fraud:b"]}})),
        role("starred", trust({"StringEquals": {f"{OIDC}:sub": "system:serviceaccount:*:scorer"}})),
        gcp_grant("iAMBinding:IAMBinding", "pair", members=["serviceAccount:ml-prod.svc.id.goog[fraud/a]",
                                                            "serviceAccount:ml-prod.svc.id.goog[fraud/b]"]),
        gcp_grant("iAMMember:IAMMember", "whole-namespace", member="serviceAccount:ml-prod.svc.id.goog[fraud/*]"),
    ]
    assert violations(clean + bad, "workload-identity-scoped") == [
        ("Role any-in-fraud", f"trusts {OIDC} with StringLike on {OIDC}:sub: use StringEquals naming one "
                              "service account"),
        ("Role unconditioned", f"trusts {OIDC} without a StringEquals condition on {OIDC}:sub"),
        ("Role two", f"{OIDC}:sub must be exactly one system:serviceaccount:<namespace>:<name> without `*`, not "
                     "system:serviceaccount:fraud:a, system:serviceaccount:fraud:b"),
        ("Role starred", f"{OIDC}:sub must be exactly one system:serviceaccount:<namespace>:<name> without `*`, not "
                         "system:serviceaccount:*:scorer"),
        ("IAMBinding pair", "roles/iam.workloadIdentityUser must go to exactly one "
                            "serviceAccount:<project>.svc.id.goog[<namespace>/<name>] without `*`, not "
                            "serviceAccount:ml-prod.svc.id.goog[fraud/a], serviceAccount:ml-prod.svc.id.goog[fraud/b]"),
        ("IAMMember whole-namespace", "roles/iam.workloadIdentityUser must go to exactly one "
                                      "serviceAccount:<project>.svc.id.goog[<namespace>/<name>] without `*`, not "
                                      "serviceAccount:ml-prod.svc.id.goog[fraud/*]"),
    ]





ACME = {"certificates": {"certManager": {"enabled": True, "issuer": {
    "type": "acme", "acme": {"server": "https://acme.corp.example/directory", "email": "platform@corp.example"}}}},
    "network": {"cilium": {"enabled": True, "apiServer": {"host": "10.0.0.1", "port": 6443}}}}


def test_references_resolve_an_acme_platform():
    """The ACME solver's route attaches to the Gateway's `http` listener: the Gateway must have one."""
    assert violations(subjects(plan(platform(**ACME), "test")), "references-resolve") == []


def test_references_resolve(clean):
    with_gateway = subjects(plan(platform(**ACME), "test"))
    bad = changed(with_gateway, by_kind("ClusterIssuer", "plinth-ca"), lambda p: p["spec"]["acme"]["solvers"][0][
        "http01"]["gatewayHTTPRoute"]["parentRefs"][0].update(sectionName="plain"))
    bad = changed(bad, by_kind("Certificate", "plinth-gateway-tls"),
                  lambda p: p["spec"]["issuerRef"].update(name="nobody"))
    bad = changed(bad, by_kind("HTTPRoute"), lambda p: p["spec"]["parentRefs"][0].update(name="other"))
    assert violations(bad, "references-resolve") == [
        ("ClusterIssuer plinth-ca", "parentRef names listener 'plain' of Gateway plinth-gateway/plinth, which has "
                                    "only http, https"),
        ("Certificate plinth-gateway/plinth-gateway-tls",
         "issuerRef names ClusterIssuer nobody, which the plan does not declare"),
        ("HTTPRoute plinth-gateway/http-redirect",
         "parentRef names Gateway plinth-gateway/other, which the plan does not declare"),
    ]


@pytest.fixture(scope="module")
def regulated():
    return subjects(plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))


def _team_route(name: str, spec: dict) -> Subject:
    return Subject("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", name, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "spec": spec,
        "metadata": {"name": name, "namespace": "credit", "labels": {"plinth.dev/team": "credit"}}})


@pytest.mark.parametrize("name", sorted(ROUTE_CAPTURES))
def test_a_team_route_capturing_other_traffic_is_refused(regulated, name):
    found = violations([*regulated, _team_route(name, ROUTE_CAPTURES[name])], "team-routes-own-paths")
    assert found and {subject for subject, _ in found} == {f"HTTPRoute credit/{name}"}


def test_team_route_violations_say_what_is_taken(regulated):
    def messages(name):
        return [m for _, m in violations([*regulated, _team_route(name, ROUTE_CAPTURES[name])],
                                         "team-routes-own-paths")]
    assert messages("python-index-packages") == [
        "host name pypi.models.corp.internal is the platform's (pypi.models.corp.internal), reserved to platform "
        "routes"]
    assert messages("other-teams-model") == [
        "path /fraud/fraud-scorer/v2/models (PathPrefix) on the serving host serving.models.corp.internal is "
        "outside /credit/"]
    assert messages("serving-host-without-path") == [
        "path / (PathPrefix) on the serving host serving.models.corp.internal is outside /credit/"]
    assert messages("no-host-names") == [
        "names no host name, so it would answer for every host name of the listeners it attaches to"]
    assert messages("every-host-by-wildcard") == [
        "host name *.models.corp.internal is the platform's (alertmanager.models.corp.internal, "
        "grafana.models.corp.internal, hubble.models.corp.internal, longhorn.models.corp.internal, "
        "mlflow.models.corp.internal, notebooks.models.corp.internal, prometheus.models.corp.internal, "
        "pypi.models.corp.internal, registry.models.corp.internal), reserved to platform routes"]
    assert messages("other-teams-host") == [
        "host name fraud.models.corp.internal is not the team's own (credit.models.corp.internal)"]


def test_a_team_route_of_its_own_passes(regulated):
    # The serving module's own routes are team routes too: the shipped blueprint passes (also in the test above).
    assert violations(regulated, "team-routes-own-paths") == []
    for name, spec in ROUTES_OF_ITS_OWN.items():
        assert violations([*regulated, _team_route(name, spec)], "team-routes-own-paths") == [], name


# --- what passed `plinth validate` and `plinth check` before: each is flagged now, with the policy and the key ----


def flagged(name: str, **overrides) -> list[tuple[str, str, str | None]]:
    """(resource, message, values key) of one policy over the plan of a spec with these overrides."""
    found = subjects(plan(platform(**overrides), "test"))
    [(_, _, result)] = [r for r in evaluate(found) if r[0].name == name]
    return [(v.subject, v.message, v.values_key) for v in result]


CILIUM = {"enabled": True, "kubeProxyReplacement": True, "gatewayApi": True,
          "apiServer": {"host": "api.corp", "port": 6443}}


def test_a_load_balancer_under_any_values_key_is_an_external_service():
    found = flagged("no-external-services", secrets={"vault": {"values": {"ui": {"enabled": True,
                                                                                 "serviceType": "LoadBalancer"}}}},
                    certificates={"certManager": {"values": {"webhook": {"serviceType": "NodePort"}}}})
    assert ("Release vault", "values ui.serviceType = LoadBalancer: the chart would expose a Service outside the "
            "cluster", "ui.serviceType") in found
    assert ("Release cert-manager", "values webhook.serviceType = NodePort: the chart would expose a Service "
            "outside the cluster", "webhook.serviceType") in found


def test_a_charts_own_ingress_or_route_is_an_external_service():
    found = flagged("no-external-services", storage={"longhorn": {"values": {"ingress": {"enabled": True}}}},
                    monitoring={"enabled": True, "values": {"prometheus": {"route": {"main": {"enabled": True}}}}})
    assert ("Release longhorn", "values ingress.enabled = true: the chart would create an Ingress; traffic enters "
            "through the platform Gateway only", "ingress.enabled") in found
    assert ("Release monitoring", "values prometheus.route.main.enabled = true: the chart would create a "
            "route of its own; traffic enters through the platform Gateway only", "prometheus.route.main.enabled") \
        in found


def test_cilium_never_enforcing_policy_or_copying_gateway_keys_to_a_team_is_flagged():
    found = flagged("cilium-policy-enforcement", network={"cilium": {**CILIUM, "values": {
        "policyEnforcementMode": "never", "gatewayAPI": {"secretsNamespace": {"name": "fraud"}}}}})
    assert found == [
        ("Release cilium", "values policyEnforcementMode = never: every NetworkPolicy would be ignored",
         "policyEnforcementMode"),
        ("Release cilium", "values gatewayAPI.secretsNamespace.name = fraud: the Gateway's TLS keys would be copied "
         "outside the platform namespaces (cilium-secrets, kube-system, plinth-gateway)",
         "gatewayAPI.secretsNamespace.name")]


def test_vault_in_dev_mode_is_flagged():
    assert flagged("vault-not-dev", secrets={"vault": {"values": {"server": {"dev": {"enabled": True}}}}}) == [
        ("Release vault", "values server.dev.enabled = true: an in-memory Vault with a known root token",
         "server.dev.enabled")]
    assert flagged("vault-not-dev", secrets={"vault": {"values": {"server": {"extraArgs": "-dev -dev-root-token-id=x"}}}}) \
        == [("Release vault", "values server.extraArgs '-dev -dev-root-token-id=x' starts Vault in dev mode",
             "server.extraArgs")]
    assert flagged("vault-not-dev", secrets={"vault": {"values": {"server": {"extraArgs": "-log-level=debug"}}}}) == []


def test_anonymous_grafana_is_flagged():
    ini = {"auth.anonymous": {"enabled": True, "org_role": "Admin"}}
    assert flagged("grafana-not-anonymous", monitoring={"enabled": True, "values": {"grafana": {"grafana.ini": ini}}}) \
        == [("Release monitoring", "values grafana.grafana.ini.auth.anonymous.enabled = true: Grafana "
             "without a login", "grafana.grafana.ini.auth.anonymous.enabled")]


def test_prometheus_on_the_host_network_or_a_host_path_is_flagged():
    spec = {"hostNetwork": True, "volumes": [{"name": "root", "hostPath": {"path": "/"}}]}
    found = flagged("host-access-allowlist", monitoring={"enabled": True, "values": {"prometheus": {
        "prometheusSpec": spec}}})
    assert found == [
        ("Release monitoring", "values prometheus.prometheusSpec.hostNetwork = true: host access for a "
         "chart outside the allowlist", "prometheus.prometheusSpec.hostNetwork"),
        ("Release monitoring", "values prometheus.prometheusSpec.volumes[0].hostPath: a host path for a "
         "chart outside the allowlist", "prometheus.prometheusSpec.volumes[0].hostPath.path")]


POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
    "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "c", "image": "r/c:1", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}]}}


def with_pod(found: list[Subject], change=lambda pod: None, namespace: str = "fraud") -> list[Subject]:
    """The subjects plus a pod a chart renders into `namespace` (changed by `change`)."""
    from plinth.governance.check import chart_subject

    pod = copy.deepcopy(POD)
    change(pod["spec"])
    return [*found, chart_subject(pod, "vault", namespace)]


def test_pod_security_holds_every_pod_to_its_namespaces_level(clean):
    assert violations(with_pod(clean), "pod-security") == []
    bad = with_pod(clean, lambda spec: spec["containers"][0]["securityContext"].update(privileged=True))
    assert violations(bad, "pod-security") == [
        ("Pod fraud/p (chart vault)", "breaks Pod Security restricted (namespace fraud): container c: privileged")]
    assert violations(bad, "host-access-allowlist") == [
        ("Pod fraud/p (chart vault)", "container c: privileged: not an allowlisted platform workload")]
    bad = with_pod(clean, lambda spec: spec.update(securityContext={}, hostPID=True,
                                                   volumes=[{"name": "v", "gitRepo": {"repository": "x"}}]))
    assert violations(bad, "pod-security") == [
        ("Pod fraud/p (chart vault)", "breaks Pod Security restricted (namespace fraud): hostPID: true; volume v of "
         "type gitRepo; container c: runAsNonRoot is not true; container c: seccompProfile is not RuntimeDefault or "
         "Localhost")]


def test_pod_security_baseline_and_restricted_follow_the_standard():
    from plinth.governance.podsecurity import baseline, restricted

    good = copy.deepcopy(POD["spec"])
    assert restricted(good) == [] and baseline(good) == []
    pod = copy.deepcopy(good)
    pod["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"},
                                           {"name": "net.ipv4.tcp_syncookies", "value": "1"}],
                                  seLinuxOptions={"type": "spc_t"})
    pod["containers"][0]["securityContext"].update(
        procMount="Unmasked", capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN", "CHOWN"]},
        seccompProfile={"type": "Unconfined"}, appArmorProfile={"type": "Unconfined"})
    pod["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 8080}]
    assert baseline(pod) == [
        "pod: seLinuxOptions.type spc_t", "sysctl kernel.msgmax", "container c: adds capabilities SYS_ADMIN",
        "container c: hostPort 8080", "container c: procMount Unmasked", "container c: seccompProfile Unconfined",
        "container c: appArmorProfile Unconfined"]
    assert restricted(pod)[len(baseline(pod)):] == ["container c: adds capabilities CHOWN"]
    # runAsNonRoot on the pod covers every container; a container may not turn it off.
    pod = copy.deepcopy(good)
    pod["containers"][0]["securityContext"]["runAsNonRoot"] = False
    assert restricted(pod) == ["container c: runAsNonRoot is not true"]
    assert baseline({"containers": [{"name": "c"}], "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
                     "hostNetwork": True}) == ["hostNetwork: true", "hostPath volume h"]
    # Policy version 1.34 forbids a host in probes and lifecycle handlers; 1.33 does not.
    probe = {"containers": [{"name": "c", "livenessProbe": {"httpGet": {"host": "10.0.0.1", "port": 80}},
                             "lifecycle": {"preStop": {"tcpSocket": {"host": "metadata", "port": 80}}}}]}
    assert baseline(probe, version=(1, 34)) == ["container c: livenessProbe.httpGet.host sets host",
                                                "container c: lifecycle.preStop.tcpSocket.host sets host"]
    assert baseline(probe, version=(1, 33)) == []
    assert baseline({"containers": [{"name": "c"}], "securityContext": {
        "sysctls": [{"name": "net.ipv4.tcp_rmem", "value": "4096 131072 6291456"}]}}) == []
    # Windows pods are exempt from restricted's Linux-only controls.
    windows = {"os": {"name": "windows"}, "securityContext": {"runAsNonRoot": True}, "containers": [{"name": "c"}]}
    assert restricted(windows) == []


def test_plinth_check_names_the_values_key_and_its_file_line(tmp_path):
    project = _project(tmp_path, {})
    (project / "blueprints" / "b.yaml").write_text(MINIMAL + (
        "certificates:\n"
        "  certManager: {enabled: true}\n"
        "secrets:\n"
        "  vault:\n"
        "    enabled: true\n"
        "    values:\n"
        "      server:\n"
        "        dev:\n"
        "          enabled: true\n"))
    line = (MINIMAL.count("\n") + 9)
    run = subprocess.run([*PLINTH, "check", "--stack", "s"], cwd=project, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert "  - Release vault: values server.dev.enabled = true: an in-memory Vault with a known root token\n" \
           f"      values vault: server.dev.enabled (secrets.vault.values.server.dev.enabled at blueprints/b.yaml:{line}:11)" \
        in run.stdout
    assert "note: chart objects were not inspected (3 charts: only their values); pass --charts DIR (a directory " \
           "chart source) to render and check every object they create" in run.stderr


def test_in_air_gap_every_chart_comes_from_a_perimeter_host(prod):
    assert violations(prod, "airgap-mirror-only") == []
    bad = changed(prod, lambda s: s.type == "kubernetes:helm.sh/v3:Release" and s.props.get("name") == "vault",
                  lambda p: p.update(chart="oci://mirror.corp.attacker.example/charts/vault"))
    assert violations(bad, "airgap-mirror-only") == [
        ("Release vault", "chart source oci://mirror.corp.attacker.example/charts/vault is outside the perimeter "
         "(mirror.corp)")]


def test_a_route_of_plinths_attaches_to_the_platform_gateway_only(clean):
    route = Subject("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", "r", {
        "metadata": {"name": "r", "namespace": "fraud"},
        "spec": {"parentRefs": [{"name": "platform", "namespace": "plinth-gateway"}, {"name": "own"}]}})
    assert violations([*clean, route], "no-external-services") == [
        ("HTTPRoute fraud/r", "attaches to Gateway fraud/own, not the platform Gateway in plinth-gateway")]


def test_references_resolve_pods_and_monitors(regulated):
    def pod(p):
        spec = p["spec"]["template"]["spec"]
        spec.update(serviceAccountName="scorer", priorityClassName="urgent")
        spec["volumes"].append({"name": "extra", "configMap": {"name": "missing-config"}})
        spec["volumes"].append({"name": "maybe", "secret": {"secretName": "optional-one", "optional": True}})
    bad = changed(regulated, by_kind("Deployment", "fraud-scorer-stable"), pod)
    bad = changed(bad, by_kind("Deployment", "fraud-scorer-canary"),
                  lambda p: p["metadata"]["annotations"].pop("plinth.dev/user-provided"))
    bad = changed(bad, by_kind("ServiceMonitor", "fraud-scorer"),
                  lambda p: p["spec"]["endpoints"][0].update(port="metricz"))
    bad = changed(bad, by_kind("ServiceMonitor", "credit-risk"),
                  lambda p: p["spec"]["selector"]["matchLabels"].update({"plinth.dev/model": "other"}))
    missing = "which the plan does not declare and no operator creates"
    assert violations(bad, "references-resolve") == [
        ("Deployment fraud/fraud-scorer-canary", f"its pods use PersistentVolumeClaim fraud-models, {missing}"),
        ("Deployment fraud/fraud-scorer-stable", f"its pods use ServiceAccount scorer, {missing}"),
        ("Deployment fraud/fraud-scorer-stable", f"its pods use PriorityClass urgent, {missing}"),
        ("Deployment fraud/fraud-scorer-stable", f"its pods use ConfigMap missing-config, {missing}"),
        ("ServiceMonitor credit/credit-risk", "selects no Service in credit"),
        ("ServiceMonitor fraud/fraud-scorer",
         "endpoint port 'metricz' is not a port name of the Service(s) it selects"),
    ]


def test_plinth_check_charts_must_be_a_directory(tmp_path):
    done = subprocess.run([*PLINTH, "check", str(ROOT / "blueprints" / "minimal.yaml"), "--charts",
                           str(tmp_path / "none")], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2, done.stderr
    assert f"--charts: {tmp_path / 'none'}: not a directory" in done.stderr


# --- web UIs on the Gateway: behind sign-on ----------------------------------------------------------------


def _platform_route(name: str, namespace: str, service: str, port: int = 80) -> Subject:
    return Subject("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute", name, {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"hostnames": [f"{name}.models.corp.internal"],
                 "rules": [{"backendRefs": [{"name": service, "port": port}]}]}})


def test_a_route_to_a_ui_without_a_login_of_its_own_is_refused(regulated):
    routes = [_platform_route("prometheus", "monitoring", "kube-prometheus-stack-prometheus", 9090),
              _platform_route("hubble", "kube-system", "hubble-ui"),
              _platform_route("longhorn", "longhorn-system", "longhorn-frontend")]
    assert violations([*regulated, *routes], "ui-sign-on") == [
        ("HTTPRoute monitoring/prometheus", "sends requests to Prometheus (monitoring/kube-prometheus-stack-prometheus),"
         " which has no login of its own"),
        ("HTTPRoute kube-system/hubble", "sends requests to Hubble UI (kube-system/hubble-ui), which has no login of "
         "its own"),
        ("HTTPRoute longhorn-system/longhorn", "sends requests to the Longhorn UI (longhorn-system/longhorn-frontend), "
         "which has no login of its own")]


def test_grafana_on_the_gateway_signs_on_when_the_platform_has_a_provider(regulated):
    # The regulated blueprint: Grafana on the Gateway, signed on through identity.oidc.
    [route] = [s for s in regulated if s.kind == "HTTPRoute" and s.metadata.get("namespace") == "monitoring"]
    assert violations(regulated, "ui-sign-on") == []
    unsigned = changed(regulated, lambda s: s.type == HELM_RELEASE and s.props.get("name") == "kube-prometheus-stack",
                       lambda p: p["values"]["grafana"]["grafana.ini"].pop("auth.generic_oauth"))
    assert violations(unsigned, "ui-sign-on") == [
        (f"HTTPRoute monitoring/{route.metadata['name']}", "sends requests to Grafana "
         "(monitoring/kube-prometheus-stack-grafana), which does not sign people on through identity.oidc")]


def test_jupyterhub_on_the_gateway_signs_on_through_the_provider(regulated):
    # The regulated blueprint: JupyterHub on the Gateway with the provider's GenericOAuthenticator.
    [route] = [s for s in regulated if s.kind == "HTTPRoute" and s.metadata.get("namespace") == "jupyterhub"]
    assert violations(regulated, "ui-sign-on") == []
    dummy = changed(regulated, lambda s: s.type == HELM_RELEASE and s.props.get("name") == "jupyterhub",
                    lambda p: p["values"]["hub"]["config"]["JupyterHub"].update(authenticator_class="dummy"))
    assert violations(dummy, "ui-sign-on") == [
        (f"HTTPRoute jupyterhub/{route.metadata['name']}", "sends requests to JupyterHub (jupyterhub/proxy-public), "
         "which does not sign people on through identity.oidc (hub.config.JupyterHub.authenticator_class "
         "generic-oauth)")]


def test_grafana_with_its_own_login_passes_where_there_is_no_provider():
    spec = platform_spec(SERVICES, {"network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                                                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
                                    "monitoring": {"grafana": {"hostname": "grafana.models.plinth.internal"}}})
    found = subjects(plan(spec, "test"))
    assert [s for s in found if s.kind == "HTTPRoute" and s.metadata.get("namespace") == "monitoring"]
    assert violations(found, "ui-sign-on") == []
