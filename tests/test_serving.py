"""Model serving under Pulumi's mock runtime: what each model gets in its team's namespace, and the spec rules.

The CRD-schema check of the HTTPRoute, ServiceMonitor and PrometheusRule objects is in
tests/charts/test_serving_chart.py (it renders the CRDs from the packaged charts).
"""

from __future__ import annotations

import json
import math

import kubernetes_validate
import pulumi
import pytest

from support import PROD_BACKUPS, by_key, platform_spec
from test_spec_errors import overlay_errors
from plinth.catalog import IMAGES
from plinth.engine import offline
from plinth.engine.offline import plan
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.policies.models import _tolerates_gpu_taint
from plinth.vocabulary import GPU_TAINT, MODEL_LABEL
from plinth.mirror import mirror_list
from plinth.modules import gpu as gpu_module
from plinth.modules.monitoring import DASHBOARD_LABEL
from plinth.modules.serving.names import TRACK_LABEL
from plinth.modules.serving.runtimes import deployment_options
from plinth.render import kubernetes_objects
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

HOST = "serving.models.plinth.internal"
TRITON = {"name": "scorer", "team": "fraud", "runtime": "triton", "modelRepository": "s3://models/scorer",
          "repositoryCidrs": ["10.30.0.0/16"], "gpu": 1, "startupSeconds": 900,
          "stable": {"version": "3", "replicas": 2}, "canary": {"version": "4", "weight": 10},
          "shadow": {"version": "5"}, "autoscaling": {"enabled": True, "maxReplicas": 4, "targetUtilization": 60},
          "slo": {"latencyMs": 250, "errorRatePercent": 0.5}}
BENTO = {"name": "ranker", "team": "search", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker",
         "stable": {"version": "1.2.0"}}
PLATFORM = {
    "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
    "certificates": {"certManager": {"enabled": True}},
    "monitoring": {"enabled": True, "drift": {"enabled": True, "threshold": 0.3, "receiver": "retrain"},
                   "alertmanager": {"receivers": [{"name": "retrain", "type": "webhook"}]}},
    "gpu": {"operator": {"enabled": True}},
    "teams": [{"name": "fraud", "quota": {"gpu": 8, "cpu": "16", "memory": "64Gi"}}, {"name": "search"}],
    "serving": {"hostname": HOST, "models": [TRITON, BENTO]},
}


def spec(models: list[dict] | None = None, **overrides) -> PlatformSpec:
    """The platform above with `overrides` merged in; `models` replaces the served models (lists merge by name)."""
    base = PLATFORM if models is None else {**PLATFORM, "serving": {**PLATFORM["serving"], "models": models}}
    return platform_spec(base, overrides)


def objects(result) -> dict:
    """(kind, namespace, name) -> Resource of every Kubernetes object of the serving component."""
    return by_key(result, "plinth:serving:Serving")


@pytest.fixture(scope="module")
def planned():
    assert check_rules(spec()) == []
    return plan(spec(), "serving")


@pytest.fixture(scope="module")
def served(planned):
    return objects(planned)


def deployment(served, name: str, namespace: str = "fraud") -> dict:
    return served[("Deployment", namespace, name)].inputs


def container(served, name: str, namespace: str = "fraud") -> dict:
    [only] = deployment(served, name, namespace)["spec"]["template"]["spec"]["containers"]
    return only


def route(served, name: str = "scorer", namespace: str = "fraud") -> dict:
    return served[("HTTPRoute", namespace, name)].inputs["spec"]


# --- the workloads ------------------------------------------------------------------------------------


def test_every_track_gets_a_deployment_a_service_and_a_disruption_budget(served):
    for track in ("stable", "canary", "shadow"):
        deploy = deployment(served, f"scorer-{track}")
        labels = deploy["spec"]["template"]["metadata"]["labels"]
        assert labels[MODEL_LABEL] == "scorer" and labels[TRACK_LABEL] == track
        assert deploy["metadata"]["labels"][MODEL_LABEL] == "scorer"
        selector = deploy["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items() and "app.kubernetes.io/version" not in selector
        service = served[("Service", "fraud", "scorer" if track == "stable" else f"scorer-{track}")].inputs
        assert service["spec"]["selector"] == selector
        budget = served[("PodDisruptionBudget", "fraud", f"scorer-{track}")].inputs["spec"]
        assert budget == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    assert deployment(served, "scorer-canary")["spec"]["template"]["metadata"]["labels"][
        "app.kubernetes.io/version"] == "4"
    # Only the models of a team land in its namespace.
    assert {ns for (_, ns, _) in served if ns != "monitoring"} == {"fraud", "search"}
    assert ("Deployment", "search", "ranker-stable") in served
    assert ("Deployment", "fraud", "ranker-stable") not in served


def test_gpu_models_take_gpus_as_limits_and_tolerate_exactly_the_gpu_nodes(served):
    pod = deployment(served, "scorer-stable")["spec"]["template"]["spec"]
    resources = container(served, "scorer-stable")["resources"]
    assert resources["limits"][gpu_module.GPU_RESOURCE] == "1" and gpu_module.GPU_RESOURCE == "nvidia.com/gpu"
    assert resources["requests"] == {"cpu": "1", "memory": "4Gi"}
    # The GPU module's taint and label, which are the gpu-workloads policy's taint.
    assert (gpu_module.GPU_TAINT_KEY, gpu_module.GPU_TAINT_VALUE, gpu_module.GPU_TAINT_EFFECT) == (
        GPU_TAINT["key"], GPU_TAINT["value"], GPU_TAINT["effect"]) == ("nvidia.com/gpu", "present", "NoSchedule")
    assert pod["tolerations"] == [gpu_module.gpu_toleration()]
    assert all(_tolerates_gpu_taint(t) for t in pod["tolerations"])
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"} == gpu_module.gpu_node_selector()
    # A CPU model neither asks for a GPU nor squats GPU nodes.
    bento = deployment(served, "ranker-stable", "search")["spec"]["template"]["spec"]
    assert "tolerations" not in bento and "nodeSelector" not in bento
    assert "nvidia.com/gpu" not in bento["containers"][0]["resources"]["limits"]
    # A GPU model rolls without a surge pod (the quota holds exactly its GPUs).
    assert deployment(served, "scorer-stable")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0,
                                                                                        "maxUnavailable": 1}


def test_pods_run_restricted_and_spread_across_nodes(served):
    for name, ns, gid in (("scorer-stable", "fraud", 1000), ("ranker-stable", "search", 1034)):
        pod = deployment(served, name, ns)["spec"]["template"]["spec"]
        # A high UID no host account has, in the group of the runtime image's own user.
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["runAsGroup"] == pod["securityContext"]["fsGroup"] == gid
        assert pod["containers"][0]["securityContext"] == {
            "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
        assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "workloads"
        [spread] = pod["topologySpreadConstraints"]
        assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1
        assert spread["labelSelector"]["matchLabels"] == deployment(served, name, ns)["spec"]["selector"]["matchLabels"]
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"  # dev; DoNotSchedule in staging and prod
        assert "minDomains" not in spread  # dev: replicas may share a node
    prod = objects(plan(spec(metadata={"environment": "prod"}, **PROD_BACKUPS), "serving"))
    [spread] = deployment(prod, "scorer-stable")["spec"]["template"]["spec"]["topologySpreadConstraints"]
    # Staging and prod: every replica on its own node, or Pending (maxSkew 1 alone would let 3 replicas
    # share 2 nodes): the scheduler counts missing nodes as empty domains up to minDomains.
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["minDomains"] == deployment(prod, "scorer-stable")["spec"]["replicas"]


def test_triton_serves_its_release_on_the_right_ports_and_probes(served):
    triton = container(served, "scorer-canary")
    assert triton["image"] == IMAGES["tritonserver"] == "nvcr.io/nvidia/tritonserver:26.10-py3"
    assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    args = triton["args"]
    assert triton["command"] == ["tritonserver"]
    assert "--model-repository=s3://models/scorer/4" in args  # <modelRepository>/<canary version>
    assert "--model-control-mode=explicit" in args and "--load-model=*" in args
    assert not [a for a in args if "poll" in a]
    assert "--metrics-config=summary_latencies=true" in args
    assert triton["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    startup = triton["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= TRITON["startupSeconds"]
    service = served[("Service", "fraud", "scorer")].inputs["spec"]
    assert {p["name"]: p["port"] for p in service["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
    monitor = served[("ServiceMonitor", "fraud", "scorer")].inputs["spec"]
    assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("metrics", "/metrics")]


def test_bentoml_runs_the_release_tag_of_the_bento(served):
    bento = container(served, "ranker-stable", "search")
    assert bento["image"] == "registry.corp.internal/ml/ranker:1.2.0"
    assert {p["name"]: p["containerPort"] for p in bento["ports"]} == {"http": 3000}
    assert bento["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert bento["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert bento["startupProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert "args" not in bento  # the Bento's own entrypoint serves it
    mounts = {m["mountPath"] for m in bento["volumeMounts"]}
    assert mounts == {"/tmp", "/home/bentoml/prometheus_multiproc_dir"}  # writable, the root is read-only
    monitor = served[("ServiceMonitor", "search", "ranker")].inputs["spec"]
    assert [(e["port"], e["path"]) for e in monitor["endpoints"]] == [("http", "/metrics")]


def test_a_pvc_repository_is_mounted_read_only():
    model = {**TRITON, "modelRepository": "pvc://models/fraud/scorer", "repositoryCidrs": []}
    served = objects(plan(spec(models=[model]), "serving"))
    triton = container(served, "scorer-stable")
    assert "--model-repository=/models/fraud/scorer/3" in triton["args"]
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in triton["volumeMounts"]
    pod = deployment(served, "scorer-stable")["spec"]["template"]["spec"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in pod["volumes"]
    assert ("NetworkPolicy", "fraud", "allow-to-repository-scorer") not in served  # no way out needed


# --- the route ----------------------------------------------------------------------------------------


def test_one_route_per_model_carries_the_canary_split_exactly(served):
    spec_ = route(served)
    assert spec_["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "plinth",
                                    "namespace": "plinth-gateway", "sectionName": "serving"}]
    assert spec_["hostnames"] == [HOST]
    # Triton: inference and health only, under /<team>/<model>, rewritten to Triton's own paths.
    weighted = spec_["rules"][:2]
    assert [r["matches"] for r in weighted] == [
        [{"path": {"type": "PathPrefix", "value": "/fraud/scorer/v2/models"}}],
        [{"path": {"type": "PathPrefix", "value": "/fraud/scorer/v2/health"}}]]
    for rule in spec_["rules"]:
        rewrite = next(f for f in rule["filters"] if f["type"] == "URLRewrite")
        assert rule["matches"][0]["path"]["value"] == "/fraud/scorer" + rewrite["urlRewrite"]["path"][
            "replacePrefixMatch"]
    for rule in weighted:
        assert rule["backendRefs"] == [{"name": "scorer", "port": 8000, "weight": 90},
                                       {"name": "scorer-canary", "port": 8000, "weight": 10}]
    bento = route(served, "ranker", "search")
    assert [r["backendRefs"] for r in bento["rules"] if "headers" not in r["matches"][0]] == [
        [{"name": "ranker", "port": 3000, "weight": 100}]]
    assert bento["rules"][0]["filters"] == [{"type": "URLRewrite", "urlRewrite": {
        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    assert len([key for key in served if key[0] == "HTTPRoute"]) == 2


def test_a_track_header_reaches_exactly_that_tracks_service(served):
    """`x-plinth-track: <track>` on the weighted rules' own paths (a tie on the path, won by the header match),
    to that track's Service alone: no split, no mirror."""
    rules = route(served)["rules"]
    assert len(rules) == 2 + 2 * 3  # the weighted rules, then each path once per track
    tracked = rules[2:]
    assert [r["matches"] for r in tracked] == [
        [{"path": {"type": "PathPrefix", "value": f"/fraud/scorer/v2/{api}"},
          "headers": [{"type": "Exact", "name": "x-plinth-track", "value": track}]}]
        for track in ("stable", "canary", "shadow") for api in ("models", "health")]
    assert [r["backendRefs"] for r in tracked] == [
        [{"name": service, "port": 8000}] for service in ("scorer", "scorer-canary", "scorer-shadow")
        for _ in range(2)]
    assert all([f["type"] for f in r["filters"]] == ["URLRewrite"] for r in tracked)
    # A model without canary and shadow: stable only, on BentoML's one path.
    bento = route(served, "ranker", "search")["rules"]
    assert [(r["matches"], r["backendRefs"]) for r in bento[1:]] == [
        ([{"path": {"type": "PathPrefix", "value": "/search/ranker"},
           "headers": [{"type": "Exact", "name": "x-plinth-track", "value": "stable"}]}],
         [{"name": "ranker", "port": 3000}])]


@pytest.mark.parametrize("weight", [0, 1, 37, 100])
def test_any_canary_weight_is_split_exactly(weight):
    model = {**TRITON, "canary": {"version": "4", "weight": weight}}
    served = objects(plan(spec(models=[model]), "serving"))
    assert [b["weight"] for b in route(served)["rules"][0]["backendRefs"]] == [100 - weight, weight]


def test_the_shadow_gets_a_mirror_of_every_request_and_answers_nobody(served):
    """... nobody but a request that asks for it by the track header (its own rule, tested above)."""
    for rule in route(served)["rules"]:
        if "headers" in rule["matches"][0]:
            continue
        mirrors = [f for f in rule["filters"] if f["type"] == "RequestMirror"]
        assert mirrors == [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": "scorer-shadow", "port": 8000}}}]  # every request: no percent/fraction
        assert "scorer-shadow" not in {b["name"] for b in rule["backendRefs"]}
    assert ("Deployment", "fraud", "scorer-shadow") in served and ("Service", "fraud", "scorer-shadow") in served
    assert container(served, "scorer-shadow")["args"][0] == "--model-repository=s3://models/scorer/5"
    bento = route(served, "ranker", "search")
    assert not [f for r in bento["rules"] for f in r["filters"] if f["type"] == "RequestMirror"]


def test_without_the_gateway_models_are_in_cluster_only():
    off = {"network": {"cilium": {"enabled": False}}, "certificates": {"certManager": {"enabled": False}},
           "serving": {"hostname": None}}
    assert check_rules(spec([BENTO], **off)) == []
    served = objects(plan(spec([BENTO], **off), "serving"))
    assert not [key for key in served if key[0] in ("HTTPRoute", "CiliumNetworkPolicy")]
    assert ("Service", "search", "ranker") in served


# --- autoscaling --------------------------------------------------------------------------------------


def test_the_autoscaler_owns_the_stable_replicas(served):
    hpa = served[("HorizontalPodAutoscaler", "fraud", "scorer")].inputs
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "scorer-stable"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}}]
    assert deployment(served, "scorer-stable")["spec"]["replicas"] == 2  # the starting point
    assert ("HorizontalPodAutoscaler", "search", "ranker") not in served


def test_spec_replicas_is_left_out_of_the_diff_only_where_the_autoscaler_scales(monkeypatch):
    """What the engine is told: the registrations' ignoreChanges, as the mock monitor receives them."""
    ignored: dict[tuple[str, str], list[str]] = {}
    record = offline._RecordingMonitor._record

    def keep(self, request, urn, inputs):
        ignored[(request.type, request.name)] = list(request.ignoreChanges)
        return record(self, request, urn, inputs)

    monkeypatch.setattr(offline._RecordingMonitor, "_record", keep)
    plan(spec(), "serving")
    deployments = {name: changes for (kind, name), changes in ignored.items()
                   if kind == "kubernetes:apps/v1:Deployment"}
    assert deployments["serving-fraud-scorer-stable"] == ["spec.replicas"]
    for name in ("serving-fraud-scorer-canary", "serving-fraud-scorer-shadow", "serving-search-ranker-stable"):
        assert deployments[name] == [], name
    assert ignored[("kubernetes:core/v1:Service", "serving-fraud-scorer-stable")] == []


def test_deployment_options_ignore_replicas_for_an_autoscaled_stable_only():
    model = spec().serving.models[0]
    base = pulumi.ResourceOptions(depends_on=[])
    assert deployment_options(model, "stable", base).ignore_changes == ["spec.replicas"]
    assert deployment_options(model, "canary", base) is base
    fixed = spec().serving.models[1]
    assert deployment_options(fixed, "stable", base) is base


# --- network, monitoring ---------------------------------------------------------------------------------


def test_only_the_gateways_proxies_and_prometheus_reach_the_model_pods(served):
    selector = {"matchLabels": {"app.kubernetes.io/instance": "test", MODEL_LABEL: "scorer"}}
    gateway = served[("CiliumNetworkPolicy", "fraud", "allow-from-gateway-scorer")].inputs["spec"]
    assert gateway == {"endpointSelector": selector, "ingress": [
        {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": "8000", "protocol": "TCP"}]}]}]}
    monitoring = served[("NetworkPolicy", "fraud", "allow-from-monitoring-scorer")].inputs["spec"]
    assert monitoring == {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"protocol": "TCP", "port": 8002}]}]}
    egress = served[("NetworkPolicy", "fraud", "allow-to-repository-scorer")].inputs["spec"]
    assert egress == {"podSelector": selector, "policyTypes": ["Egress"],
                      "egress": [{"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}]}]}
    bento = served[("CiliumNetworkPolicy", "search", "allow-from-gateway-ranker")].inputs["spec"]
    assert bento["ingress"][0]["toPorts"] == [{"ports": [{"port": "3000", "protocol": "TCP"}]}]


def alerts(served, name: str = "scorer", namespace: str = "fraud") -> dict[str, dict]:
    [group] = served[("PrometheusRule", namespace, name)].inputs["spec"]["groups"]
    return {rule["alert"]: rule for rule in group["rules"]}


def test_each_model_alerts_on_its_slo_its_canary_its_gpus_and_drift(served):
    rules = alerts(served)
    assert set(rules) == {"ModelErrorRateHigh", "ModelLatencyHigh", "ModelUnavailable",
                          "ModelCanaryWorse", "ModelGpuSaturated", "ModelDrift"}
    assert all(rule["labels"]["model"] == "scorer" for rule in rules.values())
    assert rules["ModelErrorRateHigh"]["expr"].endswith(" > 0.005")  # errorRatePercent 0.5
    assert "nv_inference_request_failure" in rules["ModelErrorRateHigh"]["expr"]
    assert rules["ModelLatencyHigh"]["expr"].endswith(" > 250")
    assert 'quantile="0.95"' in rules["ModelLatencyHigh"]["expr"]
    canary = rules["ModelCanaryWorse"]["expr"]
    assert 'plinth_track=~"canary"' in canary and 'plinth_track=~"stable"' in canary and " - " in canary
    assert " > 0.005) or (" in canary and canary.endswith(" * 1.2)")  # the default latency margin: 20%
    assert "DCGM_FI_DEV_GPU_UTIL" in rules["ModelGpuSaturated"]["expr"]
    drift = rules["ModelDrift"]
    assert drift["expr"] == 'max(plinth_model_drift_score{namespace="fraud",model="scorer"}) > 0.3'
    assert drift["labels"]["alert_kind"] == "drift"
    bento = alerts(served, "ranker", "search")
    assert set(bento) == {"ModelErrorRateHigh", "ModelLatencyHigh", "ModelUnavailable", "ModelDrift"}
    assert "bentoml_service_request_duration_seconds_bucket" in bento["ModelLatencyHigh"]["expr"]
    assert 'http_response_code=~"5.."' in bento["ModelErrorRateHigh"]["expr"]
    # The scrape turns the pods' model and track labels into the labels the rules select on.
    monitor = served[("ServiceMonitor", "fraud", "scorer")].inputs["spec"]
    assert {r["targetLabel"] for r in monitor["endpoints"][0]["relabelings"]} == {"plinth_model", "plinth_track"}


def test_the_serving_dashboard_shows_every_model_by_track(planned, served):
    dashboard = served[("ConfigMap", "monitoring", "plinth-dashboard-serving")]
    assert dashboard.inputs["metadata"]["labels"][DASHBOARD_LABEL] == "1"
    doc = json.loads(dashboard.inputs["data"]["plinth-serving.json"])
    rows = [p["title"] for p in doc["panels"] if p["type"] == "row"]
    assert rows == ["fraud/scorer (triton)", "search/ranker (bentoml)"]
    titles = {p["title"] for p in doc["panels"] if p["type"] != "row"}
    assert titles == {"Requests / s by track", "Error ratio by track", "p95 latency by track"}
    errors = next(p for p in doc["panels"] if p["title"] == "Error ratio by track")
    assert [t["legendFormat"] for t in errors["targets"]] == ["stable", "canary", "shadow"]
    # It lands after the monitoring namespace exists (serving comes after monitoring).
    by_name = {r.name: r for r in planned.resources}
    assert by_name["monitoring-namespace"].urn in dashboard.dependencies
    off = objects(plan(spec(monitoring={"enabled": False, "drift": {"enabled": False, "receiver": None}}),
                       "serving"))
    assert not [key for key in off if key[0] in ("ConfigMap", "ServiceMonitor", "PrometheusRule")]


def test_models_wait_for_their_team_namespace_and_the_gpu_operator(planned):
    by_name = {r.name: r for r in planned.resources}
    scorer = by_name["serving-fraud-scorer-stable"]
    assert by_name["tenancy-fraud-namespace"].urn in scorer.dependencies
    component = next(r for r in planned.resources if r.type == "plinth:serving:Serving")
    dashboard = next(r for r in planned.resources if r.name == "serving-dashboard")
    # Every service before serving (the GPU operator among them) is waited for.
    assert any(d.split("::")[2].startswith("plinth:gpu:GpuOperator$") for d in dashboard.dependencies)
    assert any(d.split("::")[2].startswith("plinth:gpu:GpuOperator$") for d in scorer.dependencies)
    monitor = by_name["serving-fraud-scorer-monitor"]
    crds = next(r for r in planned.resources if r.name == "prometheus-operator-crds" and r.custom)
    assert crds.urn in monitor.dependencies  # its CRD first
    assert component.custom is False


# --- governance, schemas, images -------------------------------------------------------------------


def test_every_object_is_valid_kubernetes(planned):
    built_in = [obj for r, obj in kubernetes_objects(planned) if "plinth:serving:Serving" in r.urn
                and obj["kind"] not in ("HTTPRoute", "ServiceMonitor", "PrometheusRule", "CiliumNetworkPolicy")]
    assert {o["kind"] for o in built_in} == {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy",
                                            "HorizontalPodAutoscaler", "ConfigMap"}
    for obj in built_in:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)


def test_served_models_pass_the_governance_policies(planned):
    results = {policy.name: found for policy, _, found in evaluate(subjects(planned))}
    assert results["served-model-reliability"] == [] and results["gpu-workloads"] == []

    def in_team_namespaces(found) -> list:
        return [v for v in found if v.subject.split(" ")[-1].split("/")[0] in ("fraud", "search")]

    for policy in ("ownership-labels", "pinned-images", "no-external-services", "team-namespace-isolation",
                   "secrets-from-stack-config"):
        assert in_team_namespaces(results[policy]) == [], policy
    # The policy does see the model servers: without its PrometheusRule, the model is reported.
    stripped = [s for s in subjects(planned) if not (s.kind == "PrometheusRule" and s.metadata["name"] == "scorer")]
    [(_, _, found)] = [r for r in evaluate(stripped) if r[0].name == "served-model-reliability"]
    assert {v.subject for v in found} == {f"Deployment fraud/scorer-{track}" for track in ("stable", "canary",
                                                                                            "shadow")}


def test_the_triton_image_is_listed_and_pulled_from_the_mirror():
    assert "nvcr.io/nvidia/tritonserver:26.10-py3" in {i.source for i in mirror_list(spec()).images}
    mirror = "harbor.corp.internal/mirror"
    airgap = spec(airgap={"enabled": True, "mirror": {"registry": mirror, "charts": "oci://harbor.corp.internal/c"}},
                  models=[TRITON])
    served = objects(plan(airgap, "serving"))
    assert container(served, "scorer-stable")["image"] == f"{mirror}/nvidia/tritonserver:26.10-py3"
    bento_only = spec(models=[BENTO])
    assert not [i for i in mirror_list(bento_only).images if "tritonserver" in i.source]


# --- spec rules, at their file:line ---------------------------------------------------------------------

BASE = """\
network:
  cilium: {enabled: true, apiServer: {host: api.k8s.internal}}
  loadBalancer:
    ranges: [172.31.255.240/29]
certificates:
  certManager: {enabled: true}
gpu:
  operator: {enabled: true}
"""


def test_the_teams_gpus_over_every_track_at_max_replicas_must_fit_its_quota(write):
    # 1 GPU x (4 autoscaled stable + 1 canary + 1 shadow) = 6 > quota 2 (base.yaml's fraud team)
    errors = overlay_errors(write, BASE + """\
monitoring: {enabled: true}
serving:
  hostname: serving.models.plinth.internal
  models:
    - name: scorer
      team: fraud
      runtime: triton
      modelRepository: pvc://models/scorer
      gpu: 1
      stable: {version: "1"}
      canary: {version: "2"}
      shadow: {version: "3"}
      autoscaling: {enabled: true, maxReplicas: 4}
""")
    assert errors == ["base.yaml:16:7: teams[fraud].quota.gpu: the team's models need up to 6 GPUs but the quota "
                      "is 2 [rule gpu-quota-fits; fix: raise quota.gpu or lower model replicas/gpu]"]


def test_a_canary_or_shadow_needs_the_gateway_and_models_need_a_host_name_with_it(write):
    errors = overlay_errors(write, """\
monitoring: {enabled: true}
serving:
  models:
    - name: ranker
      team: fraud
      runtime: bentoml
      image: registry.corp.internal/ranker
      stable: {version: "1"}
      canary: {version: "2"}
      shadow: {version: "3"}
""")
    assert errors == [
        "bad.yaml:10:7: serving.models[ranker].canary: a canary needs weighted routing (Gateway API) [rule "
        "canary-needs-gateway; fix: enable network.cilium with gatewayApi: true]",
        "bad.yaml:11:7: serving.models[ranker].shadow: a shadow needs the Gateway's request mirroring (Gateway API) "
        "[rule shadow-needs-gateway; fix: enable network.cilium with gatewayApi: true, or remove shadow]"]
    errors = overlay_errors(write, BASE + """\
monitoring: {enabled: true}
serving:
  models:
    - name: ranker
      team: fraud
      runtime: bentoml
      image: registry.corp.internal/ranker
      stable: {version: "1"}
""")
    assert errors == [
        "bad.yaml:11:1: serving.hostname: models are routed through the platform Gateway, which needs their host "
        "name [rule serving-hostname-required; fix: set serving.hostname to one name under models.plinth.internal]"]


def test_the_drift_receiver_must_be_an_alertmanager_receiver(write):
    errors = overlay_errors(write, """\
monitoring:
  enabled: true
  alertmanager:
    receivers:
      - {name: oncall, type: pagerduty}
  drift:
    enabled: true
    receiver: retrain
""")
    assert errors == [
        "bad.yaml:9:5: monitoring.drift.receiver: receiver 'retrain' is not defined [rule drift-receiver-exists; "
        "fix: add it under monitoring.alertmanager.receivers (defined: oncall), or fix the name]"]


def test_serving_rules_as_pure_functions():
    def rules(models: list[dict] | None = None, **overrides) -> set[tuple]:
        return {(v.loc, v.rule) for v in check_rules(spec(models, **overrides))}

    bad_host = rules(serving={"hostname": "models.example.com"})
    assert (("serving", "hostname"), "serving-hostname") in bad_host
    no_monitoring = rules(monitoring={"enabled": False, "drift": {"enabled": False, "receiver": None}})
    assert (("serving", "models"), "serving-needs-monitoring") in no_monitoring
    unreachable = rules(models=[{**TRITON, "repositoryCidrs": []}])
    assert (("serving", "models", 0, "modelRepository"), "model-repository-egress") in unreachable
    tagged = rules(models=[{**BENTO, "image": "registry.corp.internal/ranker:1"}])
    assert (("serving", "models", 0, "image"), "bentoml-image") in tagged
    same = rules(models=[{**TRITON, "shadow": {"version": "3"}}])
    assert (("serving", "models", 0, "shadow", "version"), "shadow-differs") in same
    memory = rules(models=[{**BENTO, "memory": "40Gi"}])  # quota 32Gi
    assert (("teams", 1, "quota", "memory"), "serving-quota-fits") in memory
    claim = rules(models=[{**TRITON, "modelRepository": "pvc://Bad_Claim/x"}])
    assert (("serving", "models", 0, "modelRepository"), "triton-model-repository") in claim
    assert math.isclose(spec().serving.models[0].slo.error_rate_percent, 0.5)


DIGEST = "sha256:" + "ab" * 32


def test_a_bento_release_can_be_pinned_by_digest_and_a_triton_release_cannot():
    pinned = {**BENTO, "stable": {"version": f"1.2.0@{DIGEST}"}}
    assert check_rules(spec(models=[TRITON, pinned])) == []
    served = objects(plan(spec(models=[TRITON, pinned]), "serving"))
    bento = deployment(served, "ranker-stable", "search")
    assert bento["spec"]["template"]["spec"]["containers"][0]["image"] == f"registry.corp.internal/ml/ranker:1.2.0@{DIGEST}"
    assert bento["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] == "1.2.0"
    triton = {**TRITON, "canary": {"version": f"4@{DIGEST}", "weight": 10}}
    [violation] = [v for v in check_rules(spec(models=[triton, BENTO])) if v.rule == "triton-version-directory"]
    assert (violation.loc, violation.fix) == (("serving", "models", 0, "canary", "version"),
                                              "set canary.version to the directory name ('4')")
