"""GPU enablement (gpu.operator) under Pulumi's mock runtime: the driver switch, the sharing Plinth
generates (time-slicing ConfigMap, MIG strategy and profile), mirrored images, DCGM metrics and the GPU
dashboard, the privileged namespace, and the spec rules at file:line."""

from __future__ import annotations

import json
from functools import cache

import pytest
import yaml

from support import by_name, platform_spec
from test_spec_errors import overlay_errors
from plinth.catalog import CHARTS, ImageRef, mirror_image
from plinth.engine.offline import plan
from plinth.governance.check import check
from plinth.governance.policies.models import _tolerates_gpu_taint
from plinth.mirror import mirror_list
from plinth.modules.gpu import (
    DEVICE_PLUGIN_CONFIG, GPU_NODE_LABEL, IMAGE_BLOCKS, MIG_CONFIG_LABEL, TIME_SLICING, gpu_node_selector,
    gpu_taint, gpu_toleration,
)
from plinth.modules.monitoring import DASHBOARD_LABEL
from plinth.program import SERVICES
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

MIRROR = "mirror.corp.internal/plinth"
AIRGAP = {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                      "pullSecret": {"username": "robot"}}}


def spec(monitoring: bool = True, airgap: bool = False, **operator) -> PlatformSpec:
    return platform_spec({
        "monitoring": {"enabled": monitoring},
        "gpu": {"operator": {"enabled": True, **operator}},
        **({"airgap": AIRGAP} if airgap else {}),
    })


@cache
def _plan(monitoring: bool = True, airgap: bool = False, sharing: tuple = (), driver: bool = False):
    s = spec(monitoring, airgap, driver=driver, sharing=dict(sharing))
    assert check_rules(s) == []
    return s, plan(s, "gpu")


def platform(monitoring: bool = True, airgap: bool = False, sharing: tuple = (), driver: bool = False) -> dict:
    _, result = _plan(monitoring, airgap, sharing, driver)
    return by_name(result)


def values(resources) -> dict:
    return resources["gpu-operator"].inputs["values"]


TIME_SLICED = (("type", "timeSlicing"), ("replicas", 4))
MIG_SINGLE = (("type", "mig"), ("migProfile", "all-1g.10gb"))
MIG_MIXED = (("type", "mig"), ("migProfile", "all-balanced"))


def test_the_operator_is_a_service_after_monitoring():
    names = [name for name, _ in SERVICES]
    # Its dashboard lives in the monitoring namespace, which must exist first.
    assert names.index("monitoring") < names.index("gpu-operator") < names.index("ledger")
    resources = platform()
    assert resources["monitoring"].urn in resources["gpu-operator"].dependencies
    assert resources["monitoring-namespace"].urn in resources["gpu-operator-dashboard"].dependencies


def test_the_driver_is_off_unless_the_spec_installs_it():
    off, on = values(platform())["driver"], values(platform(driver=True))["driver"]
    # Off: the ClusterPolicy names no driver image at all (nothing would pull it).
    assert (off["enabled"], off["repository"], off["image"], off["version"]) == (False, "", "", "")
    assert (on["enabled"], on["repository"], on["image"], on["version"]) == (True, "nvcr.io/nvidia", "driver",
                                                                              "595.91.07")
    listed = {i.source for i in mirror_list(_plan()[0]).images if i.service == "gpu-operator"}
    with_driver = {i.source for i in mirror_list(_plan(driver=True)[0]).images if i.service == "gpu-operator"}
    # Nothing pulls the driver image (gigabytes) unless the operator installs the driver.
    assert with_driver - listed == {"nvcr.io/nvidia/driver:595.91.07"}


def test_time_slicing_is_a_configmap_the_device_plugin_is_pointed_at():
    resources = platform(sharing=TIME_SLICED)
    config = resources["gpu-operator-device-plugin-config"].inputs
    assert config["metadata"]["namespace"] == "gpu-operator"
    assert config["metadata"]["name"] == DEVICE_PLUGIN_CONFIG
    assert yaml.safe_load(config["data"][TIME_SLICING]) == {
        "version": "v1", "sharing": {"timeSlicing": {"resources": [{"name": "nvidia.com/gpu", "replicas": 4}]}}}
    v = values(resources)
    assert v["devicePlugin"]["config"] == {"name": DEVICE_PLUGIN_CONFIG, "default": TIME_SLICING}
    assert v["mig"] == {"strategy": "none"}
    # The ConfigMap exists before the release whose device plugin reads it.
    assert resources["gpu-operator-device-plugin-config"].urn in resources["gpu-operator"].dependencies


def test_without_sharing_there_is_no_device_plugin_config_and_mig_stays_off():
    resources = platform()
    assert "gpu-operator-device-plugin-config" not in resources
    assert "gpu-operator-mig-config" not in resources
    v = values(resources)
    assert v["devicePlugin"]["config"] == {"name": "", "default": ""}
    assert v["mig"] == {"strategy": "none"}
    assert v["migManager"]["config"] == {"default": "all-disabled"}


@pytest.mark.parametrize("sharing, strategy", [(MIG_SINGLE, "single"), (MIG_MIXED, "mixed")],
                         ids=["one-size", "balanced"])
def test_mig_strategy_and_profile_follow_the_spec(sharing, strategy):
    resources = platform(sharing=sharing)
    profile = dict(sharing)["migProfile"]
    v = values(resources)
    assert v["mig"] == {"strategy": strategy}
    # The CRD allows only all-disabled or "": empty, so the operator does not label the nodes all-disabled.
    assert v["migManager"]["config"] == {"default": ""}
    assert v["devicePlugin"]["config"] == {"name": "", "default": ""}
    # NFD labels the GPU nodes with the profile MIG manager applies; it needs NFD's CRD from the release.
    rule = resources["gpu-operator-mig-config"]
    assert rule.type == "kubernetes:nfd.k8s-sigs.io/v1alpha1:NodeFeatureRule"
    [term] = rule.inputs["spec"]["rules"]
    assert term["labels"] == {MIG_CONFIG_LABEL: profile}
    assert term["matchFeatures"] == [{"feature": "pci.device", "matchExpressions": {
        "vendor": {"op": "In", "value": ["10de"]}, "class": {"op": "In", "value": ["0300", "0302"]}}}]
    assert resources["gpu-operator"].urn in rule.dependencies


def _blocks(v: dict) -> dict[tuple[str, ...], dict]:
    out = {}
    for path in IMAGE_BLOCKS:
        node = v
        for key in path:
            node = node[key]
        out[path] = node
    return out


def test_every_image_comes_from_the_mirror_with_the_pull_secret_in_airgap_mode():
    spec_, _ = _plan(airgap=True, driver=True)
    v = values(platform(airgap=True, driver=True))
    blocks = _blocks(v)
    refs = {f"{b['repository']}/{b['image']}:{b['version']}" for b in blocks.values()}
    nfd = v["node-feature-discovery"]
    refs.add(f"{nfd['image']['repository']}:{nfd['image']['tag']}")
    # Every catalog image is set somewhere, each through the mirror rule.
    assert refs == {mirror_image(ref, MIRROR) for ref in CHARTS["gpu-operator"].images}
    assert all(b["imagePullSecrets"] == ["mirror-pull"] for path, b in blocks.items() if len(path) == 1)
    assert nfd["imagePullSecrets"] == [{"name": "mirror-pull"}]
    listed = [i for i in mirror_list(spec_).images if i.service == "gpu-operator"]
    assert listed and all(i.target == mirror_image(i.source, MIRROR) for i in listed)
    # Without air-gap: the same pinned versions from their upstream registries.
    upstream = _blocks(values(platform()))[("devicePlugin",)]
    assert f"{upstream['repository']}/{upstream['image']}:{upstream['version']}" == \
        "nvcr.io/nvidia/k8s-device-plugin:v0.20.0"
    assert "imagePullSecrets" in upstream and upstream["imagePullSecrets"] == []


def test_image_triples_split_where_the_operator_joins_them():
    for path, b in _blocks(values(platform(airgap=True, driver=True))).items():
        # The operator joins repository + "/" + image + ":" + version: the image is the last path segment.
        assert b["repository"].startswith(MIRROR + "/") and "/" not in b["image"] and b["version"], path
        assert ImageRef.parse(f"{b['repository']}/{b['image']}:{b['version']}").tag == b["version"], path


def test_dcgm_servicemonitor_and_the_dashboard_follow_monitoring():
    resources = platform()
    monitor = values(resources)["dcgmExporter"]["serviceMonitor"]
    assert monitor["enabled"] is True
    assert monitor["relabelings"] == [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
                                       "action": "replace"}]
    dashboard = resources["gpu-operator-dashboard"].inputs
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"][DASHBOARD_LABEL] == "1"
    doc = json.loads(dashboard["data"]["plinth-gpu.json"])
    exprs = [t["expr"] for panel in doc["panels"] for t in panel["targets"]]
    for metric in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"):
        assert any(metric in e and "by (node, gpu)" in e for e in exprs), metric
    assert doc["uid"] == "plinth-gpu" and len({p["id"] for p in doc["panels"]}) == len(doc["panels"])
    # Prometheus may scrape the namespace.
    assert resources["gpu-operator-allow-from-monitoring"].inputs["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]

    without = platform(monitoring=False)
    assert values(without)["dcgmExporter"]["serviceMonitor"]["enabled"] is False
    assert "gpu-operator-dashboard" not in without
    assert not any(name.startswith("gpu-operator-allow-from") for name in without)


def test_the_namespace_is_privileged_and_default_deny():
    resources = platform()
    labels = resources["gpu-operator-namespace"].inputs["metadata"]["labels"]
    assert {labels[f"pod-security.kubernetes.io/{mode}"] for mode in ("enforce", "audit", "warn")} == {"privileged"}
    assert values(resources)["psa"] == {"enabled": False}  # the operator leaves the labels alone
    assert resources["gpu-operator-default-deny-ingress"].inputs["spec"] == {"podSelector": {},
                                                                            "policyTypes": ["Ingress"]}
    # No webhook in the chart: nothing admits the API server.
    assert not any(name.startswith("gpu-operator-allow-from-apiserver") for name in resources)


def test_the_operands_tolerate_the_gpu_taint_that_the_governance_policy_names():
    v = values(platform())
    assert v["daemonsets"]["tolerations"] == [gpu_toleration()]
    assert gpu_toleration() in v["node-feature-discovery"]["worker"]["tolerations"]
    assert _tolerates_gpu_taint(gpu_toleration())
    assert gpu_taint() == {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}
    assert gpu_node_selector() == {GPU_NODE_LABEL: "true"} == {"nvidia.com/gpu.present": "true"}
    # Fresh objects: a caller changing its copy changes nobody else's.
    gpu_toleration()["key"] = "changed"
    assert gpu_toleration()["key"] == "nvidia.com/gpu"


def test_enabling_the_operator_plans_instead_of_being_refused():
    found = [(v.loc, v.rule) for v in check_rules(spec())]
    assert found == []


def test_a_user_value_may_not_set_what_plinth_owns():
    found = [(v.loc, v.rule) for v in check_rules(spec(values={"driver": {"enabled": True},
                                                                 "operator": {"resources": {}}}))]
    assert found == [(("gpu", "operator", "values", "driver", "enabled"), "values-owned-key")]


def test_the_governance_policies_pass():
    failed = [(r.policy.name, v.message) for r in check(_plan(airgap=True)[1]) if r.failed for v in r.violations]
    assert failed == []


OVERLAY = "gpu:\n  operator:\n    enabled: true\n    sharing:\n"


@pytest.mark.parametrize("sharing, message", [
    ("      type: mig\n",
     "bad.yaml:5:5: gpu.operator.sharing.migProfile: MIG sharing needs a profile [rule mig-profile; fix: set "
     "migProfile, e.g. all-1g.10gb]"),
    ("      type: mig\n      migProfile: 1g.10gb\n",
     "bad.yaml:7:7: gpu.operator.sharing.migProfile: '1g.10gb' is not a MIG configuration MIG manager provides "
     "[rule mig-profile-format; fix: use all-<n>g.<m>gb (one size on every GPU, e.g. all-1g.10gb) or "
     "all-balanced (sizes mixed)]"),
    ("      type: mig\n      migProfile: all-disabled\n",
     "bad.yaml:7:7: gpu.operator.sharing.migProfile: 'all-disabled' is not a MIG configuration MIG manager "
     "provides [rule mig-profile-format; fix: use all-<n>g.<m>gb (one size on every GPU, e.g. all-1g.10gb) or "
     "all-balanced (sizes mixed)]"),
    ("      type: timeSlicing\n      replicas: 1\n",
     "bad.yaml:7:7: gpu.operator.sharing.replicas: time-slicing needs at least 2 replicas [rule "
     "time-slicing-replicas; fix: set replicas to 2 or more, or type: none]"),
    ("      migProfile: all-1g.10gb\n",
     "bad.yaml:6:7: gpu.operator.sharing.migProfile: migProfile is set but sharing type is 'none' [rule "
     "mig-profile-unused; fix: set type: mig, or remove migProfile]"),
    ("      type: mig\n      migProfile: all-3g.40gb\n      replicas: 4\n",
     "bad.yaml:8:7: gpu.operator.sharing.replicas: replicas is set but sharing type is 'mig' [rule "
     "time-slicing-replicas-unused; fix: set type: timeSlicing, or remove replicas]"),
], ids=["mig-without-profile", "profile-not-all", "profile-disables-mig", "one-slice", "profile-unused",
        "replicas-unused"])
def test_sharing_mistakes_are_reported_at_their_line(sharing, message, write):
    assert overlay_errors(write, OVERLAY + sharing) == [message]


@pytest.mark.parametrize("profile", ["all-1g.10gb", "all-1g.10gb.me", "all-7g.141gb", "all-balanced"])
def test_generated_mig_configurations_are_accepted(profile):
    assert check_rules(spec(sharing={"type": "mig", "migProfile": profile})) == []
