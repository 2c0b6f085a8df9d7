"""Model serving's objects against the schemas the cluster holds them to: Kubernetes' own (strict) for
built-in kinds, and for HTTPRoute, ServiceMonitor, PrometheusRule (and CiliumNetworkPolicy) the CRDs the
platform installs, rendered from the packaged prometheus-operator-crds chart and Gateway API bundle."""

from __future__ import annotations

import copy
from dataclasses import replace
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from e2e.binaries import toolchain_crds
from support import platform_spec
from validation import crd_schemas, restricted_problems, validate, validation_failures
from plinth.engine.charts import CONFIG_GROUP, HELM_RELEASE, render_charts
from plinth.engine.offline import plan
from plinth.render import kubernetes_objects
from plinth.spec.rules import check_rules

CRD_SOURCES = {"prometheus-operator-crds", "gateway-api-crds-v1-6-1"}
MODELS = [
    {"name": "scorer", "team": "fraud", "runtime": "triton", "modelRepository": "s3://models/scorer",
     "repositoryCidrs": ["10.30.0.0/16"], "gpu": 1, "stable": {"version": "3", "replicas": 2},
     "canary": {"version": "4", "weight": 10}, "shadow": {"version": "5"},
     "autoscaling": {"enabled": True, "maxReplicas": 4}},
    {"name": "ranker", "team": "fraud", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker",
     "stable": {"version": "1.2.0"},
     "drift": {"reference": "pvc://ranker-data/train.parquet", "window": "pvc://ranker-data/logged.csv"}},
]


@cache
def _render(charts_dir: Path):
    spec = platform_spec({
        "charts": {"source": str(charts_dir)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "monitoring": {"enabled": True, "drift": {"enabled": True}},  # ranker's drift job needs it
        "gpu": {"operator": {"enabled": True}},
        "teams": [{"name": "fraud", "quota": {"gpu": 8, "cpu": "16", "memory": "64Gi"}}],
        "serving": {"hostname": "serving.models.plinth.internal", "models": MODELS},
    })
    assert check_rules(spec) == []
    result = plan(spec, "serving")
    # Only the CRD sources: the other charts are the chart tier's (tests/charts/test_charts.py).
    sources = replace(result, resources=tuple(r for r in result.resources if r.type in (HELM_RELEASE, CONFIG_GROUP)
                                              and r.name in CRD_SOURCES))
    assert {r.name for r in sources.resources} == CRD_SOURCES
    rendered = render_charts(sources, spec.kubernetes.version, charts_dir)
    assert [(c.resource.name, c.note) for c in rendered if c.note] == []
    ours = [obj for r, obj in kubernetes_objects(result) if "plinth:serving:Serving" in r.urn]
    # With the CRDs controllers register at start (Cilium's; the registered_crds fixture skips without them).
    registered = [yaml.safe_load(path.read_text()) for path in toolchain_crds()]
    return spec, ours, crd_schemas(rendered, extra_objects=registered)


@pytest.fixture
def rendered(charts_dir, helm, registered_crds):
    return _render(charts_dir)


def test_serving_objects_validate_against_kubernetes_and_their_crds(rendered):
    spec, ours, crds = rendered
    for key in (("gateway.networking.k8s.io/v1", "HTTPRoute"), ("monitoring.coreos.com/v1", "ServiceMonitor"),
                ("monitoring.coreos.com/v1", "PrometheusRule"), ("monitoring.coreos.com/v1", "PodMonitor")):
        assert key in crds, key
    kinds = {o["kind"] for o in ours}
    assert {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy",
            "ConfigMap", "HTTPRoute", "ServiceMonitor", "PrometheusRule", "CiliumNetworkPolicy",
            "CronJob", "PodMonitor"} == kinds  # the last two: ranker's drift job
    assert ("cilium.io/v2", "CiliumNetworkPolicy") in crds
    assert validation_failures(ours, f"{spec.kubernetes.version}.0", crds) == []


def test_the_crd_schemas_catch_a_broken_route_and_rule(rendered):
    spec, ours, crds = rendered
    version = f"{spec.kubernetes.version}.0"
    route = copy.deepcopy(next(o for o in ours if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "scorer"))
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = "ninety"
    with pytest.raises(jsonschema.ValidationError):
        validate(route, version, crds)
    route = copy.deepcopy(next(o for o in ours if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "scorer"))
    route["spec"]["rules"][0]["filters"][1]["requestMirror"] = {}  # a mirror needs its backend
    with pytest.raises(jsonschema.ValidationError):
        validate(route, version, crds)
    route = copy.deepcopy(next(o for o in ours if o["kind"] == "HTTPRoute" and o["metadata"]["name"] == "scorer"))
    [track_header] = route["spec"]["rules"][-1]["matches"][0]["headers"]  # a track rule's header match
    track_header["type"] = "Prefix"  # Exact or RegularExpression only
    with pytest.raises(jsonschema.ValidationError):
        validate(route, version, crds)
    rule = copy.deepcopy(next(o for o in ours if o["kind"] == "PrometheusRule"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule, version, crds)


def test_model_pods_meet_the_restricted_profile(rendered):
    _, ours, _ = rendered
    pods = {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in ours if o["kind"] == "Deployment"}
    pods |= {o["metadata"]["name"]: o["spec"]["jobTemplate"]["spec"]["template"]["spec"] for o in ours
             if o["kind"] == "CronJob"}
    assert set(pods) == {"scorer-stable", "scorer-canary", "scorer-shadow", "ranker-stable", "ranker-drift"}
    assert {name: restricted_problems(pod) for name, pod in pods.items()} == {name: [] for name in pods}
