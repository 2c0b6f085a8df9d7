"""The tenancy component under Pulumi mocks: its children and their inputs."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pytest

from support import of_kind
from plinth.context import PlatformContext
from plinth.engine.offline import record
from plinth.modules.tenancy import Tenancy, TenancyArgs
from plinth.service import Peer
from plinth.plan import SECRET
from plinth.spec.models import Team

TEAMS = (
    Team.model_validate({"name": "fraud", "costCenter": "risk", "quota": {"gpu": 4, "cpu": "32"},
                         "groups": {"mlEngineer": ["fraud-eng"], "viewer": ["auditors", "risk"]}}),
    Team.model_validate({"name": "search"}),
)


def run(**overrides):
    def program():
        provider = k8s.Provider("k8s")
        ctx = PlatformContext(provider=provider, platform="p", environment="prod", cost_center="platform",
                              kubernetes_version="1.34", skip_await=overrides.pop("skip_await", False),
                              await_timeout=overrides.pop("await_timeout", None),
                              mirror_registry=overrides.pop("mirror_registry", None),
                              pull_secret="mirror_auth" in overrides,
                              # Outputs belong to the program's run: made inside it, from the plain value.
                              mirror_auth=pulumi.Output.secret(overrides.pop("mirror_auth"))
                              if "mirror_auth" in overrides else None)
        Tenancy("tenancy", TenancyArgs(teams=TEAMS, platform_admin_group="admins", **overrides), ctx)

    return record(program)


@pytest.fixture(scope="module")
def resources():
    return run()


def test_one_namespace_per_team_with_restricted_pod_security(resources):
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"] for r in of_kind(resources, "Namespace")}
    assert set(namespaces) == {"fraud", "search"}
    for labels in namespaces.values():
        for mode in ("enforce", "audit", "warn"):
            assert labels[f"pod-security.kubernetes.io/{mode}"] == "restricted"
            assert labels[f"pod-security.kubernetes.io/{mode}-version"] == "v1.34"


def test_every_object_carries_the_governance_labels(resources):
    for res in resources:
        if not res.custom or res.type.startswith("pulumi:providers"):
            continue
        labels = res.inputs["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "plinth"
        assert labels["plinth.dev/environment"] == "prod"
        namespace = res.inputs["metadata"].get("namespace") or res.inputs["metadata"]["name"]
        if namespace == "fraud":
            assert labels["plinth.dev/team"] == "fraud"
            assert labels["plinth.dev/cost-center"] == "risk"  # the team's own cost center wins


def test_roles_are_least_privilege(resources):
    roles = of_kind(resources, "Role") + of_kind(resources, "ClusterRole")
    assert len(roles) == 2 + 1  # fraud's ml-engineer and viewer roles (the only ones bound), platform-admin
    for role in roles:
        for rule in role.inputs["rules"]:
            for key in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[key], (role.name, rule)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])
            assert "secrets" not in rule["resources"]


def test_role_bindings_follow_the_team_groups(resources):
    bindings = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]):
                [s["name"] for s in r.inputs["subjects"]] for r in of_kind(resources, "RoleBinding")}
    # search has no groups: no bindings at all; fraud has no data-scientist group.
    assert bindings == {("fraud", "plinth:ml-engineer"): ["fraud-eng"], ("fraud", "plinth:viewer"): ["auditors", "risk"]}
    admin = of_kind(resources, "ClusterRoleBinding")[0].inputs
    assert admin["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "admins"}]
    assert admin["roleRef"]["name"] == "plinth:p:platform-admin"


def test_cluster_scoped_names_carry_the_platform(resources):
    # Besides the teams' namespaces (named by the team), what tenancy creates outside any namespace
    # is named per platform (p): two platforms on one cluster never overwrite each other's.
    cluster_scoped = [r for r in resources if r.custom and "metadata" in r.inputs
                      and "namespace" not in r.inputs["metadata"] and r.inputs["kind"] != "Namespace"]
    assert sorted(r.inputs["kind"] for r in cluster_scoped) == ["ClusterRole", "ClusterRoleBinding"]
    assert {r.inputs["metadata"]["name"] for r in cluster_scoped} == {"plinth:p:platform-admin"}


def test_quota_includes_gpus_and_limit_range_sets_defaults(resources):
    quota = of_kind(resources, "ResourceQuota", "fraud")[0].inputs["spec"]["hard"]
    assert quota == {"pods": "50", "requests.cpu": "32", "requests.memory": "32Gi",
                     "requests.nvidia.com/gpu": "4", "requests.storage": "100Gi"}
    limits = of_kind(resources, "LimitRange", "search")[0].inputs["spec"]["limits"][0]
    assert limits["default"] == {"cpu": "1", "memory": "1Gi"}
    assert limits["defaultRequest"] == {"cpu": "100m", "memory": "128Mi"}


def test_default_deny_and_only_the_needed_allows(resources):
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in of_kind(resources, "NetworkPolicy", "fraud")}
    assert set(policies) == {"default-deny", "allow-same-namespace", "allow-dns"}
    assert policies["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_platform_peers_add_narrow_allows():
    resources = run(ingress_from=(Peer("monitoring", "monitoring"),), egress_to=(Peer("vault", "vault", (8200,)),))
    policies = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in of_kind(resources, "NetworkPolicy", "search")}
    assert policies["allow-to-vault"]["egress"] == [{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "vault"}}}],
        "ports": [{"protocol": "TCP", "port": 8200}]}]
    assert policies["allow-from-monitoring"]["policyTypes"] == ["Ingress"]


def test_children_are_parented_and_wait_for_their_namespace(resources):
    by_urn = {r.urn: r for r in resources}
    for res in of_kind(resources, "RoleBinding") + of_kind(resources, "NetworkPolicy"):
        team = by_urn[res.parent]
        assert team.type == "plinth:tenancy:Team"
        namespace = next(r for r in of_kind(resources, "Namespace") if r.parent == team.urn)
        assert namespace.urn in res.dependencies


def test_service_account_per_team_without_token_automount(resources):
    accounts = of_kind(resources, "ServiceAccount")
    assert sorted(a.inputs["metadata"]["namespace"] for a in accounts) == ["fraud", "search"]
    assert all(a.inputs["automountServiceAccountToken"] is False for a in accounts)


def test_mirror_pull_secret_stays_secret():
    resources = run(mirror_registry="harbor.corp.internal", mirror_auth="robot:do-not-leak")
    secrets = of_kind(resources, "Secret")
    assert len(secrets) == 2
    assert all(s.inputs["stringData"] == SECRET for s in secrets)
    assert "do-not-leak" not in repr(resources)
    accounts = of_kind(resources, "ServiceAccount")
    assert all(a.inputs["imagePullSecrets"] == [{"name": "mirror-pull"}] for a in accounts)


def test_skip_await_annotates_objects_for_test_clusters():
    resources = run(skip_await=True)
    namespace = of_kind(resources, "Namespace")[0]
    assert namespace.inputs["metadata"]["annotations"] == {
        "pulumi.com/deletionPropagationPolicy": "background", "pulumi.com/skipAwait": "true"}


def test_every_team_role_is_bound_to_the_teams_groups(resources):
    roles = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]) for r in of_kind(resources, "Role")}
    bound = {(r.inputs["metadata"]["namespace"], r.inputs["roleRef"]["name"]) for r in of_kind(resources, "RoleBinding")}
    # fraud names no data-scientist group and search no group at all: no role for them to hold.
    assert roles == bound == {("fraud", "plinth:ml-engineer"), ("fraud", "plinth:viewer")}


def test_an_await_timeout_annotates_objects_with_the_engines_timeout():
    """testing.awaitTimeoutSeconds: a test that expects `up` to fail sees the failure within that time."""
    namespace = of_kind(run(await_timeout=20), "Namespace")[0]
    assert namespace.inputs["metadata"]["annotations"] == {"pulumi.com/timeoutSeconds": "20"}
    assert "annotations" not in of_kind(run(), "Namespace")[0].inputs["metadata"]
