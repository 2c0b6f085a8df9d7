"""Acceptance through the real Pulumi engine: `pulumi up`, no-change preview, drift, edits, teardown.

The CLI and language host are built from Go modules (toolchain/build.sh) and
run Plinth's real program against the live acceptance cluster (conftest.py,
live.py): the scheduler places every pod on the simulated nodes of the stack's
spec and `up` waits for every workload to be Ready. The Kubernetes resource
provider must be supplied as PLINTH_KUBERNETES_PROVIDER (see
toolchain/README.md): when it is missing, the tests that deploy are skipped
with that reason, and only the engine-level checks run.

The deploy tests form one story on one stack, in file order (up → the served
model's 90/10 route → no-change preview → plan agreement → drift → one-line
edits → a canary weight change, applied → destroy); a failure in an early step
fails the later ones with the same cause.
"""

from __future__ import annotations


import pytest

from kubeapi import ApiError
from live import (create_nodes, node_agent, pod_ready, pods, quota_overruns, requests_gpu, simulated_nodes,
                  spread_violations, unready, workloads)
from plinth.modules.gpu import GPU_RESOURCE
from plinth.modules.pipelines import NAMESPACE as ARGO, WORKFLOW_ACCOUNT
from plinth.modules.pipelines.events import NAMESPACE as ARGO_EVENTS, sensor_account, template_name
from pulumi_cli import RETRAINING_IMAGE, SERVING_HOST, STACK_SECRETS, PulumiProject, changing_steps, served
from support import CHARTS_DIR
from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE
from plinth.engine.offline import plan
from plinth.governance.check import check
from plinth.diff import diff_plans, field_changes
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec
from plinth.stackoutputs import stack_outputs

pytestmark = pytest.mark.e2e

QUOTA = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "team-quota", "namespace": "fraud"}}
ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
         "metadata": {"name": "fraud-scorer", "namespace": "fraud"}}
"""The e2e stack's served model (pulumi_cli.served): ONE HTTPRoute carrying its canary split."""


def charts_at_hand():
    if not (CHARTS_DIR / "INDEX.json").is_file():
        pytest.skip(f"no packaged charts at {CHARTS_DIR}: the e2e stack installs the services from them "
                    "(set PLINTH_CHARTS_DIR)")


@pytest.fixture(scope="module")
def engine(toolchain, control_plane, tmp_path_factory, kube):
    """A project copy with an e2e stack over the minimal blueprint plus the platform services, not deployed;
    the cluster gets the nodes of the stack's spec."""
    charts_at_hand()
    project = PulumiProject(toolchain, tmp_path_factory.mktemp("pulumi"), control_plane.kubeconfig_path)
    project.write_stack(project.overrides())
    create_nodes(kube, simulated_nodes(e2e_spec(project)))
    project("stack", "init", project.stack)
    project.set_secrets()
    yield project
    # Leave nothing behind even when a step failed half-way.
    project("destroy", "--yes", "--skip-preview", check=False)


@pytest.fixture(scope="module")
def deploy(kubernetes_provider, engine):
    """`up`, which returns once every workload it waits for is Ready (the live cluster's report is printed)."""
    return engine("up", "--yes", "--skip-preview")


def test_an_invalid_spec_fails_the_real_engine_with_its_file_and_line(toolchain, control_plane, tmp_path):
    charts_at_hand()
    project = PulumiProject(toolchain, tmp_path, control_plane.kubeconfig_path)
    project.write_stack(project.overrides(teams=[{"name": "fraud", "quota": {"gpu": "four"}}]))
    project("stack", "init", project.stack)
    run = project("preview", check=False)
    assert run.rc != 0, run.text
    assert "teams[fraud].quota.gpu" in run.out, run.text
    assert "Pulumi.e2e.yaml:" in run.out, run.text
    assert "Traceback" not in run.out, run.text


def e2e_spec(engine, overrides=None):
    return load_spec(engine.dir / "blueprints" / "minimal.yaml", overrides or engine.overrides())


def e2e_plan(engine, overrides=None):
    return plan(e2e_spec(engine, overrides), "e2e", stack=engine.stack)


def test_up_creates_every_object_and_installs_every_release(deploy, engine, kube):
    result = e2e_plan(engine)
    objects = [obj for _, obj in kubernetes_objects(result)]
    missing = [(o["kind"], o["metadata"]["name"]) for o in objects if kube.get(o) is None]
    assert missing == []
    releases = [r.inputs for r in result.resources if r.type == HELM_RELEASE]
    assert sorted(r["name"] for r in releases) == [
        "argo-events", "argo-workflows", "cert-manager", "cilium", "cloudnative-pg", "feast-feature-server",
        "gpu-operator", "harbor",
        "kube-prometheus-stack",
        "longhorn", "mlflow", "plugin-barman-cloud", "prometheus-operator-crds", "redis-operator", "seaweedfs", "vault",
        "vault-secrets-operator", "velero"]
    for release in releases:  # Helm's own record of a deployed first revision
        record = kube.get({"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": f"sh.helm.release.v1.{release['name']}.v1", "namespace": release["namespace"]}})
        assert record is not None and record["metadata"]["labels"]["status"] == "deployed", release["name"]
    # The charts' own objects are there too, e.g. the CRDs, Cilium's agent and the Gateway API CRDs.
    for probe in ({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "cilium",
                                                                             "namespace": "kube-system"}},
                  {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "volumes.longhorn.io"}},
                  {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "gateways.gateway.networking.k8s.io"}},
                  # Velero's, from its chart's crds/ (its Schedule, a Plinth object, is among `objects` above).
                  {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                   "metadata": {"name": "schedules.velero.io"}}):
        assert kube.get(probe) is not None, probe
    state = engine("stack", "export").out
    assert [key for key, value in STACK_SECRETS.items() if value in state] == []


def test_the_stack_exports_where_each_service_is_reached(deploy, engine, monkeypatch):
    """What the services register, read back through the real CLI as `plinth verify --stack` reads it."""
    for key, value in engine.env.items():
        monkeypatch.setenv(key, value)
    outputs = stack_outputs(engine.stack, engine.dir)
    assert outputs["endpoints"] == {
        "argo-workflows": {"server": "https://argo-workflows-server.argo.svc:2746"},
        "harbor": {"url": "http://harbor.harbor.svc"},
        "mlflow": {"trackingUri": "http://mlflow.mlflow.svc"},
        "monitoring": {"prometheus": "http://prometheus-operated.monitoring.svc:9090"},
        "python-index": {"indexUrl": "http://pypiserver.python-index.svc:8080/simple/"},
        "serving": {"url": f"https://{SERVING_HOST}"},
        "vault": {"address": "https://vault.vault.svc:8200"},
    }
    assert "kubeconfig" not in outputs  # the user's own on an existing cluster


def test_every_pod_is_admitted_scheduled_and_ready_where_it_belongs(deploy, engine, kube):
    """After `up`: no workload short of its replicas (a pod refused by Pod Security, quota or a missing
    ServiceAccount never exists; one the scheduler cannot place stays Pending), GPU pods on GPU nodes only
    and no other pod there (node agents aside), hard spread and anti-affinity on distinct nodes."""
    assert unready(kube) == []
    everything = pods(kube)
    assert [p["metadata"]["name"] for p in everything if p["status"].get("phase") not in ("Running", "Succeeded")
            or (p["status"]["phase"] == "Running" and not pod_ready(p))] == []
    gpu_nodes = {n["metadata"]["name"] for n in kube.request("GET", "/api/v1/nodes")["items"]
                 if GPU_RESOURCE in n["status"]["capacity"]}
    assert gpu_nodes, "the e2e stack's nodes include a GPU node"
    assert [p for p in everything if requests_gpu(p)], "the e2e stack serves a GPU model"
    misplaced = [(p["metadata"]["name"], p["spec"]["nodeName"]) for p in everything
                 if (p["spec"]["nodeName"] in gpu_nodes) != requests_gpu(p) and not node_agent(p)]
    assert misplaced == []
    assert spread_violations(everything) == []
    running = [p for p in everything if p["status"]["phase"] == "Running"]
    print(f"\nlive cluster after up ({deploy.seconds:.0f}s): {len(running)} pods Running and Ready on "
          f"{len({p['spec']['nodeName'] for p in running})} nodes, "
          f"{len(everything) - len(running)} completed (Jobs)")


def test_every_teams_quota_admits_its_models_at_maximum_replicas(deploy, engine):
    """What the API server's quota admission would sum up for each team's model pods at their maximum
    (autoscaler's maximum, canary, shadow) stays within the team's ResourceQuota."""
    objects = [obj for _, obj in kubernetes_objects(e2e_plan(engine))]
    assert quota_overruns(objects) == []


def allowed(kube, account: str, verb: str, resource: str, namespace: str) -> bool:
    """The live API server's RBAC answer: may ServiceAccount `namespace/name` do `verb` on `resource`
    (argoproj.io) in `namespace`?"""
    sa_namespace, name = account.split("/")
    review = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{sa_namespace}:{name}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"],
                 "resourceAttributes": {"namespace": namespace, "verb": verb, "group": "argoproj.io",
                                        "resource": resource}}})
    return review["status"]["allowed"]


def test_the_pipelines_run_and_each_teams_workflows_stay_its_own(deploy, engine, kube):
    """Argo Workflows and Argo Events on the live cluster: their controllers and the Argo Server are Ready, the
    ranker's generated retraining template is stored in its team's namespace (admitted by Argo's CRD), and by the
    API server's RBAC the ranker's Sensor account may submit Workflows in team fraud's namespace and nowhere else,
    while a team's workflow account may only report its task results."""
    ready = {(w["metadata"]["namespace"], w["metadata"]["name"]) for w in workloads(kube)
             if w["kind"] == "Deployment" and w["metadata"]["namespace"] in (ARGO, ARGO_EVENTS)
             and w.get("status", {}).get("readyReplicas", 0) == w["spec"]["replicas"] > 0}
    assert {(ARGO, "argo-workflows-workflow-controller"), (ARGO, "argo-workflows-server"),
            (ARGO_EVENTS, "argo-events-controller-manager")} <= ready, ready
    ranker = next(m for m in e2e_spec(engine).serving.models if m.retraining)
    template = kube.get({"apiVersion": "argoproj.io/v1alpha1", "kind": "WorkflowTemplate",
                         "metadata": {"name": template_name(ranker), "namespace": ranker.team}})
    assert template is not None
    [step] = template["spec"]["templates"]
    assert step["container"]["image"] == RETRAINING_IMAGE
    assert template["spec"]["serviceAccountName"] == WORKFLOW_ACCOUNT
    sensor = f"{ARGO_EVENTS}/{sensor_account(ranker.team)}"
    assert allowed(kube, sensor, "create", "workflows", ranker.team)
    assert not allowed(kube, sensor, "create", "workflows", "search")
    assert not allowed(kube, sensor, "delete", "workflows", ranker.team)
    worker = f"{ranker.team}/{WORKFLOW_ACCOUNT}"
    assert allowed(kube, worker, "create", "workflowtaskresults", ranker.team)
    assert not allowed(kube, worker, "create", "workflows", ranker.team)
    assert not allowed(kube, worker, "create", "workflowtaskresults", "search")


def weighted_splits(route_spec: dict) -> list[list[tuple[str, int]]]:
    """(backend, weight) of each rule not matched by a header: the split every other request takes."""
    return [[(ref["name"], ref["weight"]) for ref in rule["backendRefs"]] for rule in route_spec["rules"]
            if not any(match.get("headers") for match in rule.get("matches", []))]


def assert_split(route_spec: dict, stable: int, canary: int) -> None:
    splits = weighted_splits(route_spec)
    assert splits, route_spec
    assert all(split == [("fraud-scorer", stable), ("fraud-scorer-canary", canary)] for split in splits), splits


def test_the_served_model_is_routed_90_10_on_the_platform_gateway(deploy, kube):
    route = kube.get(ROUTE)
    assert route is not None
    assert [(p["namespace"], p["name"]) for p in route["spec"]["parentRefs"]] == [("plinth-gateway", "plinth")]
    assert_split(route["spec"], 90, 10)
    for backend in ("fraud-scorer", "fraud-scorer-canary"):  # the Services the route sends to
        assert kube.get({"apiVersion": "v1", "kind": "Service",
                         "metadata": {"name": backend, "namespace": "fraud"}}) is not None, backend


def test_preview_right_after_up_expects_no_changes_and_passes_the_policy_pack(deploy, engine):
    """What CI runs for drift, against the cluster's live objects (--refresh), with the governance policies."""
    engine("preview", "--refresh", "--expect-no-changes", "--policy-pack", "policies")


def test_offline_plan_and_real_engine_agree_on_every_resource(deploy, engine):
    offline = {r.urn for r in e2e_plan(engine).resources}
    # The engine expands a manifest bundle (ConfigGroup) into one child per object; the offline
    # plan records the bundle itself (its files are read at deploy time).
    # (`pulumi:providers:pulumi` is the engine's own provider for that component.)
    deployed = {urn for urn in engine.urns()
                if f"{CONFIG_GROUP}$" not in urn and "::pulumi:providers:pulumi::" not in urn}
    assert deployed == offline


def test_a_manual_edit_is_reported_as_drift_and_repaired_by_up(deploy, engine, kube):
    kube.patch(QUOTA, {"spec": {"hard": {"requests.nvidia.com/gpu": "64"}}})

    drift = engine("preview", "--json", "--refresh", "--expect-no-changes", check=False)
    assert drift.rc != 0, drift.text
    steps = changing_steps(drift)
    assert [(s["op"], s["urn"].rsplit("::", 1)[1]) for s in steps] == [("update", "tenancy-fraud-quota")]
    assert list(field_changes(steps[0]["oldState"]["inputs"], steps[0]["newState"]["inputs"], "")) == [
        ("spec.hard.requests.nvidia.com/gpu", "64", "4")]

    engine("up", "--refresh", "--yes", "--skip-preview")
    assert kube.get(QUOTA)["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"


def preview_of(engine, after: dict) -> list[dict]:
    """The changing steps of a preview with the stack's overrides replaced by `after` (restored afterwards)."""
    before = engine.overrides()
    engine.write_stack(after)
    try:
        return engine.preview_steps()
    finally:
        engine.write_stack(before)


def recorded(steps: list[dict]) -> tuple[list[dict], dict]:
    """The steps of a spec change apart from the ledger's, and the ledger's: an in-place update of its
    spec record (the spec's hash and files) and nothing else."""
    ledger = [s for s in steps if s["urn"].endswith("ConfigMap::ledger")]
    assert [s["op"] for s in ledger] == ["update"], ledger
    changed = {path for path, _, _ in field_changes(ledger[0]["oldState"]["inputs"], ledger[0]["newState"]["inputs"],
                                                    "")}
    assert changed == {"data.spec.json"}, changed
    return [s for s in steps if s is not ledger[0]], ledger[0]


@pytest.fixture(scope="module")
def two_line_change(deploy, engine) -> tuple[dict, dict, dict]:
    """One preview of two one-line edits (a team's GPU quota; Longhorn's replica count): the steps by resource
    name, the ledger's step, and the overrides after the edits."""
    storage = {**engine.overrides()["storage"], "longhorn": {"enabled": True, "replicaCount": 2}}
    after = engine.overrides(teams=[{"name": "fraud", "quota": {"gpu": 6}}], storage=storage)
    steps, ledger = recorded(preview_of(engine, after))
    assert sorted((s["op"], s["urn"].rsplit("::", 1)[1]) for s in steps) == [
        ("update", "longhorn"), ("update", "tenancy-fraud-quota")]
    return {s["urn"].rsplit("::", 1)[1]: s for s in steps}, ledger, after


def test_a_one_line_quota_change_previews_as_exactly_that_change(two_line_change, engine):
    steps, ledger, after = two_line_change
    quota = steps["tenancy-fraud-quota"]
    real = list(field_changes(quota["oldState"]["inputs"], quota["newState"]["inputs"], ""))
    assert real == [("spec.hard.requests.nvidia.com/gpu", "4", "6")]

    # `plinth diff` of the two offline plans reports the same changes (and the same ledger update).
    offline = diff_plans(e2e_plan(engine), e2e_plan(engine, after))
    assert [(c.kind, c.resource.urn, list(c.fields)) for c in offline
            if c.resource.urn not in (ledger["urn"], steps["longhorn"]["urn"])] == [("changed", quota["urn"], real)]
    assert {c.resource.urn for c in offline if c.resource.urn != ledger["urn"]} == {
        step["urn"] for step in steps.values()}


def test_a_longhorn_replica_change_previews_as_exactly_that_change(two_line_change):
    steps, _, _ = two_line_change
    longhorn = steps["longhorn"]
    # (the Release's state also holds computed fields, e.g. its status: only the inputs we set are compared)
    changed = [path for path, _, _ in field_changes(longhorn["oldState"]["inputs"], longhorn["newState"]["inputs"],
                                                     "") if path.startswith("values.")]
    assert changed == ["values.defaultSettings.defaultReplicaCount",
                       "values.persistence.defaultClassReplicaCount"]


def test_a_canary_weight_change_is_one_route_update_and_up_applies_it(deploy, engine, kube):
    """10 -> 25: the route alone changes (besides the ledger's spec record), only in its weights; `up`
    applies exactly that and the next preview is clean. The stack stays at 25 (what is deployed)."""
    before, after = engine.overrides(), engine.overrides(serving=served(canary_weight=25))
    [route_urn] = [r.urn for r in e2e_plan(engine, after).resources
                   if r.inputs.get("kind") == "HTTPRoute" and r.inputs["metadata"]["name"] == ROUTE["metadata"]["name"]]
    engine.write_stack(after)
    steps, ledger = recorded(engine.preview_steps())
    assert [(s["op"], s["urn"]) for s in steps] == [("update", route_urn)]
    old, new = steps[0]["oldState"]["inputs"], steps[0]["newState"]["inputs"]
    assert {path.rsplit("].", 1)[1] for path, _, _ in field_changes(old, new, "")} == {"weight"}
    assert_split(old["spec"], 90, 10)
    assert_split(new["spec"], 75, 25)

    def unweighted(rules: list[dict]) -> list[dict]:
        return [{**rule, "backendRefs": [{k: v for k, v in ref.items() if k != "weight"}
                                         for ref in rule["backendRefs"]]} for rule in rules]

    assert unweighted(old["spec"]["rules"]) == unweighted(new["spec"]["rules"])
    # `plinth diff` of the two offline plans names the same one resource.
    offline = diff_plans(e2e_plan(engine, before), e2e_plan(engine, after))
    assert [(c.kind, c.resource.urn) for c in offline if c.resource.urn != ledger["urn"]] == [("changed", route_urn)]

    engine("up", "--yes", "--skip-preview")
    assert_split(kube.get(ROUTE)["spec"], 75, 25)
    engine("preview", "--expect-no-changes")


def served_objects_left(kube, objects: list[dict]) -> list[tuple[str, str]]:
    """Which of the served model's objects the API server still holds (and is not deleting)."""
    left = []
    for obj in objects:
        try:
            live = kube.get(obj)
        except ApiError as exc:  # its API went with its CRD (Gateway API, Prometheus Operator)
            if exc.status != 404:
                raise
            live = None
        if live is not None and live["metadata"].get("deletionTimestamp") is None:
            left.append((obj["kind"], obj["metadata"]["name"]))
    return left


def test_destroy_leaves_nothing_of_plinth_behind(deploy, engine, kube):
    model_objects = [obj for _, obj in kubernetes_objects(e2e_plan(engine))
                     if "plinth.dev/model" in obj["metadata"].get("labels", {})]
    assert {o["kind"] for o in model_objects} >= {"Deployment", "Service", "HTTPRoute", "PrometheusRule"}
    engine("destroy", "--yes", "--skip-preview")
    leftovers = [
        (kind, o["metadata"]["name"])
        for api_version, kind in [("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                                  ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")]
        for o in kube.list_labelled(api_version, kind, "app.kubernetes.io/managed-by=plinth")
        if o["metadata"].get("deletionTimestamp") is None
    ]
    assert leftovers == []
    releases = kube.list_labelled("v1", "Secret", "owner=helm")
    assert [r["metadata"]["name"] for r in releases] == []
    assert served_objects_left(kube, model_objects) == []
    assert engine.urns() == set()


def test_the_policy_pack_and_plinth_check_agree(engine, toolchain, control_plane, tmp_path):
    """`pulumi preview --policy-pack policies` fails a violating stack with the policy `plinth check` names, from
    the same functions (the deployed stack passes it: test_preview_right_after_up...)."""
    project = PulumiProject(toolchain, tmp_path, control_plane.kubeconfig_path)
    # The minimal blueprint with Longhorn alone, its UI exposed: the smallest stack that breaks a policy.
    exposed = {"target": {"type": "existing", "kubeconfig": project.kubeconfig}, "charts": {"source": str(CHARTS_DIR)},
               "storage": {"longhorn": {"enabled": True, "values": {"service": {"ui": {"type": "NodePort"}}}}}}
    project.write_stack(exposed)
    project("stack", "init", project.stack)
    project.set_secrets()
    run = project("preview", "--policy-pack", "policies", check=False)
    assert run.rc != 0, run.text
    assert "no-external-services" in run.out and "values service.ui.type = NodePort" in run.out, run.text
    assert "mandatory" in run.out, run.text
    offline = check(e2e_plan(project, exposed))
    assert [r.policy.name for r in offline if r.failed] == ["no-external-services"]
    assert [r.policy.name for r in check(e2e_plan(engine)) if r.violations] == []
