"""Admission (ValidatingAdmissionPolicies) under Pulumi's mock runtime: the policies a platform gets, their
bindings' actions by `admission.mode`, and their place before every service. What the API server makes of them
is tests/e2e/test_admission_policies.py."""

from __future__ import annotations

from support import SERVICES, by_name, platform_spec
from plinth.engine.offline import plan

AIRGAP = {"enabled": True, "mirror": {"registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts"}}
EVERYWHERE = ["plinth-host-access", "plinth-no-external-services", "plinth-ownership-labels",
              "plinth-team-rolebindings"]


def bindings(resources: dict) -> dict[str, list[str]]:
    """The admission component's bindings: policy name -> validationActions."""
    return {r.inputs["spec"]["policyName"]: r.inputs["spec"]["validationActions"] for r in resources.values()
            if r.type.endswith(":ValidatingAdmissionPolicyBinding") and "plinth:admission:Admission" in r.urn}


def test_every_policy_is_bound_with_the_modes_actions_and_the_mirror_rule_only_in_air_gap():
    assert bindings(by_name(plan(platform_spec(), "test"))) == {name: ["Deny"] for name in EVERYWHERE}
    audited = by_name(plan(platform_spec(airgap=AIRGAP, admission={"mode": "audit"}), "test"))
    assert bindings(audited) == {name: ["Audit", "Warn"] for name in ["plinth-mirror-only", *EVERYWHERE]}
    assert "plinth-mirror-only: air-gap mode: every image comes from the mirror mirror.corp/m" in [
        v["message"] for v in audited["admission-plinth-mirror-only"].inputs["spec"]["validations"]]
    assert bindings(by_name(plan(platform_spec(admission={"enabled": False}), "test"))) == {}


def test_each_binding_follows_its_policy_and_every_service_follows_them():
    resources = by_name(plan(platform_spec(SERVICES), "test"))
    policies = {name: resources[f"admission-{name}"].urn for name in EVERYWHERE}
    for name, urn in policies.items():
        assert urn in resources[f"admission-{name}-binding"].dependencies, name
    for release in ("cilium", "cert-manager", "longhorn", "monitoring"):
        assert set(policies.values()) <= set(resources[release].dependencies), release
