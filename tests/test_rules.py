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


def test_test_cluster_options_are_refused_in_prod():
    found = violations(metadata={"environment": "prod"}, testing={"skipAwait": True, "awaitTimeoutSeconds": 20})
    assert (("testing", "skipAwait"), "prod-no-test-options") in found
    assert (("testing", "awaitTimeoutSeconds"), "prod-no-test-options") in found
    assert not [v for v in violations(metadata={"environment": "staging"}, testing={"awaitTimeoutSeconds": 20})
                if v[1] == "prod-no-test-options"]


def test_every_violation_names_a_fix():
    everything = spec(metadata={"environment": "prod"}, secrets={"vault": {"enabled": True, "autoUnseal": {
        "type": "awskms"}}}, testing={"skipAwait": True}, airgap={"enabled": True})
    found = check_rules(everything)
    assert {v.rule for v in found} >= {"prod-vault-ha", "prod-no-test-options", "unseal-key", "airgap-needs-mirror"}
    assert all(v.fix and v.message for v in found)
