"""Cross-field rules as pure functions over a spec (no engine, no files)."""

from __future__ import annotations

from ruamel.yaml import YAML

from support import MINIMAL
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.spec.yamltree import merge


def spec(**overrides) -> PlatformSpec:
    return PlatformSpec.model_validate(merge(YAML(typ="safe").load(MINIMAL), overrides))


def violations(**overrides) -> list[tuple[tuple, str]]:
    return [(v.loc, v.rule) for v in check_rules(spec(**overrides))]


MODEL = {"name": "scorer", "team": "fraud", "runtime": "bentoml", "image": "registry.example/scorer",
         "stable": {"version": "1", "replicas": 1}}


def test_minimal_spec_has_no_violations():
    assert violations() == []


def test_gpu_quota_must_fit_every_replica_including_canary():
    model = {**MODEL, "gpu": 1, "stable": {"version": "1", "replicas": 2}, "canary": {"version": "2", "replicas": 1}}
    found = violations(serving={"models": [model]}, gpu={"operator": {"enabled": True}},
                       network={"cilium": {"enabled": True}})
    assert (("teams", 0, "quota", "gpu"), "gpu-quota-fits") in found  # 3 GPUs needed, quota 2


def test_canary_needs_gateway_and_a_new_version():
    found = violations(serving={"models": [{**MODEL, "canary": {"version": "1", "weight": 20}}]})
    assert (("serving", "models", 0, "canary"), "canary-needs-gateway") in found
    assert (("serving", "models", 0, "canary", "version"), "canary-differs") in found


def test_runtime_specific_fields():
    triton = {"name": "t", "team": "fraud", "runtime": "triton", "stable": {"version": "1"}}
    bento = {**MODEL, "name": "b", "image": None}
    found = violations(serving={"models": [triton, bento]})
    assert (("serving", "models", 0, "modelRepository"), "triton-model-repository") in found
    assert (("serving", "models", 1, "image"), "bentoml-image") in found


def test_airgap_needs_a_mirror_and_mirror_only_images():
    assert (("airgap", "mirror"), "airgap-needs-mirror") in violations(airgap={"enabled": True})
    found = violations(airgap={"enabled": True, "mirror": {"registry": "harbor.corp/mirror", "charts": "oci://x"}},
                       serving={"models": [MODEL]})
    assert (("serving", "models", 0, "image"), "airgap-mirror-only") in found


def test_reserved_namespaces_and_gpu_node_pools():
    found = violations(teams=[{"name": "kube-system"}])
    assert (("teams", 1, "name"), "reserved-namespace") in found
    eks = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
           "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
           "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
    found = violations(target=eks, serving={"models": [{**MODEL, "gpu": 1}]})
    assert (("target", "nodePools"), "gpu-node-pool") in found


def test_gpu_sharing_and_drift():
    found = violations(gpu={"operator": {"sharing": {"type": "mig"}}}, monitoring={"drift": {"enabled": True}})
    assert (("gpu", "operator", "sharing", "migProfile"), "mig-profile") in found
    assert (("monitoring", "drift", "enabled"), "drift-needs-monitoring") in found


def test_every_violation_names_a_fix():
    everything = spec(metadata={"environment": "prod"}, secrets={"vault": {"enabled": True, "autoUnseal": {
        "type": "awskms"}}}, testing={"skipAwait": True}, airgap={"enabled": True})
    found = check_rules(everything)
    assert {v.rule for v in found} >= {"prod-vault-ha", "prod-no-test-options", "unseal-key", "airgap-needs-mirror"}
    assert all(v.fix and v.message for v in found)


CILIUM = {"enabled": True, "apiServer": {"host": "10.10.0.10"}}
EKS = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
       "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}


def messages(**overrides) -> list[tuple[tuple, str, str]]:
    return [(v.loc, v.rule, v.message) for v in check_rules(spec(**overrides))
            if v.rule.startswith(("load-balancer", "public-load-balancer"))]


def test_an_existing_cluster_gateway_needs_load_balancer_addresses():
    assert messages(network={"cilium": CILIUM}) == [(
        ("network", "loadBalancer", "ranges"), "load-balancer-ranges",
        "the platform Gateway is a LoadBalancer Service: on an existing cluster it gets no address without ranges")]
    assert messages(network={"cilium": CILIUM, "loadBalancer": {"ranges": ["10.30.0.240/29"]}}) == []
    # the explicit opt-out: something else assigns addresses
    assert messages(network={"cilium": CILIUM, "loadBalancer": {"mode": "external"}}) == []
    assert messages(network={"cilium": {**CILIUM, "gatewayApi": False}}) == []
    assert messages(network={"cilium": CILIUM, "loadBalancer": {"mode": "external", "interfaces": ["^eth0$"],
                                                                 "public": True}}) == [
        (("network", "loadBalancer", "interfaces"), "load-balancer-mode",
         "interfaces are for mode l2; with external, something else assigns and announces the addresses"),
        (("network", "loadBalancer", "public"), "load-balancer-public",
         "public and publicReason are for eks and gke: on an existing cluster the ranges decide who reaches the "
         "Gateway")]


def test_load_balancer_ranges_do_not_overlap_each_other_or_declared_networks():
    found = messages(
        network={"cilium": CILIUM, "loadBalancer": {"ranges": [
            "10.30.0.240/29", "10.30.0.244-10.30.0.250", "10.20.0.8/29", "10.10.0.8-10.10.0.12"]}},
        airgap={"enabled": True, "mirror": {"registry": "harbor.corp/mirror", "charts": "oci://harbor.corp/charts",
                                            "cidrs": ["10.20.0.0/24"]}})
    assert found == [
        (("network", "loadBalancer", "ranges", 1), "load-balancer-ranges-overlap",
         "10.30.0.244-10.30.0.250 overlaps 10.30.0.240/29"),
        (("network", "loadBalancer", "ranges", 2), "load-balancer-ranges-overlap",
         "10.20.0.8/29 overlaps 10.20.0.0/24 (airgap.mirror.cidrs[0])"),
        (("network", "loadBalancer", "ranges", 3), "load-balancer-ranges-overlap",
         "10.10.0.8-10.10.0.12 overlaps 10.10.0.10/32 (network.cilium.apiServer.host)"),
    ]


def test_cloud_gateways_are_internal_unless_public_with_a_reason():
    cloud = {"cilium": {"enabled": True}}
    assert messages(target=EKS, network=cloud) == []
    assert messages(target=EKS, network={**cloud, "loadBalancer": {"ranges": ["10.30.0.240/29"], "public": True}}) == [
        (("network", "loadBalancer", "ranges"), "load-balancer-by-target",
         "on eks the cloud's load balancer gives the Gateway its address"),
        (("network", "loadBalancer", "publicReason"), "public-load-balancer-reason",
         "a public Gateway needs a reason: the platform is private by default")]
    assert messages(target={**EKS, "egress": "none"}, network={**cloud, "loadBalancer": {
        "public": True, "publicReason": "partner scoring API"}}) == [
        (("network", "loadBalancer", "public"), "public-load-balancer-subnets",
         "an internet-facing load balancer needs public subnets, and egress none has none")]
    assert messages(target=EKS, network={**cloud, "loadBalancer": {"publicReason": "partner scoring API"}}) == [
        (("network", "loadBalancer", "publicReason"), "public-load-balancer-reason",
         "a reason for a public Gateway, but the Gateway is internal")]
