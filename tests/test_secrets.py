"""Secrets to workloads: the Vault Secrets Operator per team, and Vault's side in the configure stage.

The isolation claim is checked on both sides: the Kubernetes objects a team gets, and the Vault
role and policy the configure stage declares (the policy parsed as HCL, as Vault reads it).
"""

from __future__ import annotations

import fnmatch
import subprocess
import sys
from pathlib import Path

import hcl
import pytest

from support import ROOT, CONFIGURE_STACKS, STACKS, network_policies, platform_spec, values
from support import platform as with_services
from plinth.engine.offline import plan
from plinth.plan import SECRET
from plinth.spec.load import load_stack_spec, stack_stage
from plinth.spec.models import PlatformSpec

PLINTH = [str(Path(sys.executable).parent / "plinth")]
TEAMS = [
    {"name": "fraud", "groups": {"mlEngineer": ["fraud-eng"], "dataScientist": ["fraud-ds"], "viewer": ["audit"]}},
    {"name": "credit", "groups": {"mlEngineer": ["credit-eng"]}},
    {"name": "fraud-2"},  # a name that starts with another team's name
]


def spec(**overrides) -> PlatformSpec:
    return platform_spec({
        "certificates": {"certManager": {"enabled": True}},
        "secrets": {"vault": {"enabled": True}},
        "teams": TEAMS,
    }, overrides)


def of_type(result, type_suffix: str) -> list:
    return [r for r in result.resources if r.type.endswith(type_suffix)]


@pytest.fixture(scope="module")
def platform():
    return plan(spec(), "test")


@pytest.fixture(scope="module")
def configure():
    return plan(spec(registry={"harbor": {"enabled": True, "hostname": "registry.corp.internal"}}), "test",
                stage="configure")


def test_every_team_gets_its_own_vault_auth_usable_from_its_namespace_only(platform):
    auths = {r.inputs["metadata"]["namespace"]: r.inputs for r in of_type(platform, ":VaultAuth")}
    assert set(auths) == {t["name"] for t in TEAMS}
    for team, auth in auths.items():
        assert auth["spec"]["kubernetes"] == {"role": f"team-{team}", "serviceAccount": "vault-secrets",
                                              "audiences": ["vault"]}
        assert auth["spec"]["allowedNamespaces"] == [team]
        assert auth["spec"]["vaultConnectionRef"] == "vault-secrets-operator/default"
    accounts = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"])
                for r in of_type(platform, "core/v1:ServiceAccount")}
    assert {(t["name"], "vault-secrets") for t in TEAMS} <= accounts


def test_the_operator_trusts_the_platform_ca_and_has_no_shared_auth(platform):
    [release] = [r for r in of_type(platform, "helm.sh/v3:Release") if r.name == "secrets-operator"]
    values = release.inputs["values"]
    assert values["defaultVaultConnection"] == {"enabled": True, "address": "https://vault.vault.svc:8200",
                                                "caCertSecret": "vault-ca", "skipTLSVerify": False}
    assert values["defaultAuthMethod"] == {"enabled": False}
    assert values["controller"]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The VaultAuths are custom resources of the operator's CRDs: created after its release.
    for auth in of_type(platform, ":VaultAuth"):
        assert release.urn in auth.dependencies


def _roles_and_policies(result):
    policies = {r.inputs["name"]: hcl.loads(r.inputs["policy"])["path"] for r in of_type(result, ":Policy")}
    roles = {r.inputs["roleName"]: r.inputs for r in of_type(result, "kubernetes/authBackendRole:AuthBackendRole")}
    return roles, policies


def test_a_team_role_is_bound_to_one_account_in_one_namespace(configure):
    roles, _ = _roles_and_policies(configure)
    assert set(roles) == {f"team-{t['name']}" for t in TEAMS}
    for team in (t["name"] for t in TEAMS):
        role = roles[f"team-{team}"]
        assert role["boundServiceAccountNames"] == ["vault-secrets"]
        assert role["boundServiceAccountNamespaces"] == [team]
        assert role["audience"] == "vault"
        assert role["tokenPolicies"] == [f"team-{team}"]


def test_team_a_cannot_name_team_b_path(configure):
    roles, policies = _roles_and_policies(configure)
    names = [t["name"] for t in TEAMS]
    for a in names:
        granted = [path for policy in roles[f"team-{a}"]["tokenPolicies"] for path in policies[policy]]
        assert granted, a
        for b in names:
            if b == a:
                continue
            # Any secret of team B, as Vault names it (KV v2 data and metadata paths).
            for secret in (f"teams/data/{b}/db", f"teams/metadata/{b}/db"):
                assert not any(fnmatch.fnmatchcase(secret, pattern) for pattern in granted), (a, b, granted)
        assert any(fnmatch.fnmatchcase(f"teams/data/{a}/db", p) for p in granted)


def test_harbor_gets_one_private_project_per_team_with_least_privilege_members(configure):
    projects = {r.inputs["name"]: r.inputs for r in of_type(configure, "harbor:index/project:Project")}
    assert set(projects) == {t["name"] for t in TEAMS}
    assert all(p["public"] is False for p in projects.values())
    members = {(r.inputs["groupName"], r.inputs["role"], r.inputs["type"])
               for r in of_type(configure, "harbor:index/projectMemberGroup:ProjectMemberGroup")}
    assert members == {("fraud-eng", "developer", "oidc"), ("fraud-ds", "guest", "oidc"),
                       ("audit", "limitedguest", "oidc"), ("credit-eng", "developer", "oidc")}
    [provider] = of_type(configure, "providers:harbor")
    assert provider.inputs["url"] == "https://registry.corp.internal"
    assert provider.inputs["password"] == SECRET


def test_the_configure_stage_holds_no_vault_credential(configure):
    [provider] = of_type(configure, "providers:vault")
    assert "token" not in provider.inputs
    assert provider.inputs["address"] == "https://vault.vault.svc:8200"


# --- people sign on to Vault through the identity provider (identity.oidc.clients.vault) ---------------------

CA = """-----BEGIN CERTIFICATE-----
MIIBwzCCAWmgAwIBAgIUHakePfc///1ocpE66h6ZMGJxhgwwCgYIKoZIzj0EAwIw
-----END CERTIFICATE-----
"""
OIDC = {"issuer": "https://login.corp.internal/realms/ml", "certificateAuthority": CA,
        "clients": {"kubernetes": "ml-kubernetes", "vault": "ml-vault"}}


def sign_on_spec(*layers: dict) -> PlatformSpec:
    return platform_spec({"certificates": {"certManager": {"enabled": True}}, "secrets": {"vault": {"enabled": True}},
                          "identity": {"oidc": OIDC}, "teams": [*TEAMS, {"name": "nobody"}]}, *layers)


@pytest.fixture(scope="module")
def sign_on():
    return plan(sign_on_spec(), "test", stage="configure")


def test_vault_signs_people_on_through_the_provider_with_no_default_role(sign_on):
    [backend] = of_type(sign_on, "jwt/authBackend:AuthBackend")
    assert backend.inputs == {
        "type": "oidc", "path": "oidc", "oidcDiscoveryUrl": "https://login.corp.internal/realms/ml",
        "oidcDiscoveryCaPem": CA, "oidcClientId": "ml-vault", "oidcClientSecret": SECRET,
        "description": "People of the identity provider: one role per team (team-<team>)"}


def test_each_team_with_groups_signs_on_as_its_own_role_with_its_own_policy(sign_on):
    roles = {r.inputs["roleName"]: r.inputs for r in of_type(sign_on, "jwt/authBackendRole:AuthBackendRole")}
    # fraud-2 and nobody have no groups: nobody could sign on as them, so they get no role.
    assert set(roles) == {"team-fraud", "team-credit"}
    assert roles["team-fraud"] == {
        "backend": "oidc", "roleName": "team-fraud", "roleType": "oidc", "boundAudiences": ["ml-vault"],
        "userClaim": "email", "groupsClaim": "groups", "oidcScopes": ["email", "profile", "groups"],
        "boundClaims": {"groups": "fraud-eng,fraud-ds,audit"}, "boundClaimsType": "string",
        "allowedRedirectUris": ["https://vault.vault.svc:8200/ui/vault/auth/oidc/oidc/callback",
                                "http://localhost:8250/oidc/callback"],
        "tokenPolicies": ["team-fraud"], "tokenTtl": 3600, "tokenMaxTtl": 14400}
    assert roles["team-credit"]["boundClaims"] == {"groups": "credit-eng"}
    assert roles["team-credit"]["tokenPolicies"] == ["team-credit"]
    # The same policy as the team's ServiceAccount role: one per team, whoever logs in.
    _, policies = _roles_and_policies(sign_on)
    assert set(policies) == {f"team-{t['name']}" for t in (*TEAMS, {"name": "nobody"})}


def test_sign_on_follows_the_claims_scopes_and_address_of_the_spec():
    result = plan(sign_on_spec({
        "identity": {"oidc": {**OIDC, "certificateAuthority": None, "usernameClaim": "preferred_username",
                              "groupsClaim": "roles", "scopes": ["openid", "roles"]}},
        "secrets": {"vault": {"enabled": True, "secretsOperator": False,
                              "address": "https://vault.corp.internal:8200"}}}), "test", stage="configure")
    [backend] = of_type(result, "jwt/authBackend:AuthBackend")
    assert "oidcDiscoveryCaPem" not in backend.inputs
    [role] = [r.inputs for r in of_type(result, "jwt/authBackendRole:AuthBackendRole")
              if r.inputs["roleName"] == "team-fraud"]
    assert (role["userClaim"], role["groupsClaim"], role["oidcScopes"]) == ("preferred_username", "roles", ["roles"])
    assert role["boundClaims"] == {"roles": "fraud-eng,fraud-ds,audit"}
    assert role["allowedRedirectUris"][0] == "https://vault.corp.internal:8200/ui/vault/auth/oidc/oidc/callback"
    # Without the secrets operator: no ServiceAccount roles, but the policies the sign-on roles name.
    roles, policies = _roles_and_policies(result)
    assert roles == {}
    assert {"team-fraud", "team-credit"} <= set(policies)


def test_vault_sign_on_needs_its_client_secret_in_the_configure_stage_only():
    from plinth.program import needed_secrets

    assert "vaultOidcClientSecret" in [s.key for s in needed_secrets(sign_on_spec(), "configure")]
    assert "vaultOidcClientSecret" not in [s.key for s in needed_secrets(sign_on_spec(), "platform")]
    assert "vaultOidcClientSecret" not in [s.key for s in needed_secrets(spec(), "configure")]


def test_without_a_vault_client_nobody_signs_on_to_vault(configure):
    assert of_type(configure, "jwt/authBackend:AuthBackend") == []
    assert of_type(configure, "jwt/authBackendRole:AuthBackendRole") == []


def _vault_sign_on_rules(spec: PlatformSpec) -> list:
    from plinth.spec.rules import check_rules

    return [(v.loc, v.message, v.fix) for v in check_rules(spec) if v.rule.startswith("vault-sign-on")]


def test_a_vault_client_without_vault_is_refused():
    assert _vault_sign_on_rules(sign_on_spec({"secrets": {"vault": {"enabled": False}}})) == [
        (("identity", "oidc", "clients", "vault"), "Vault signs people on through the provider, and secrets.vault "
         "is not enabled", "enable secrets.vault, or remove clients.vault")]


def test_a_group_with_a_comma_is_refused_where_vault_binds_groups():
    teams = {"teams": [{"name": "fraud", "groups": {"mlEngineer": ["fraud-eng"],
                                                     "viewer": ["cn=audit,ou=groups"]}}]}
    assert _vault_sign_on_rules(sign_on_spec(teams)) == [
        (("teams", 0, "groups", "viewer", 0), "group 'cn=audit,ou=groups' has a comma, and Vault's sign-on role "
         "binds a team's groups as one comma-separated list", "name the group without a comma at the provider, or "
         "remove identity.oidc.clients.vault")]
    assert _vault_sign_on_rules(spec(**teams)) == []  # no Vault client: Vault binds no groups


# --- people sign on to Harbor through the identity provider (identity.oidc.clients.harbor) -------------------

HARBOR = {"registry": {"harbor": {"enabled": True, "hostname": "registry.corp.internal"}},
          "rbac": {"platformAdminGroup": "ml-admins"}}
HARBOR_OIDC = {"identity": {"oidc": {**OIDC, "certificateAuthority": None,
                                     "clients": {"kubernetes": "ml-kubernetes", "harbor": "ml-harbor"}}}}


def test_harbor_signs_people_on_through_the_provider_before_its_groups_become_members():
    result = plan(spec(**HARBOR, **HARBOR_OIDC), "test", stage="configure")
    [auth] = of_type(result, "harbor:index/configAuth:ConfigAuth")
    assert auth.inputs == {
        "authMode": "oidc_auth", "oidcName": "Single sign-on", "oidcEndpoint": "https://login.corp.internal/realms/ml",
        "oidcClientId": "ml-harbor", "oidcClientSecret": SECRET, "oidcScope": "openid,email,profile,groups",
        "oidcUserClaim": "email", "oidcAutoOnboard": True, "oidcGroupsClaim": "groups", "oidcAdminGroup": "ml-admins",
        "oidcVerifyCert": True}
    members = of_type(result, "harbor:index/projectMemberGroup:ProjectMemberGroup")
    assert len(members) == 4 and all(auth.urn in m.dependencies for m in members)


def test_without_a_harbor_client_harbor_keeps_its_own_users(configure):
    assert of_type(configure, "harbor:index/configAuth:ConfigAuth") == []


def test_harbor_sign_on_needs_its_client_secret_in_the_configure_stage_only():
    from plinth.program import needed_secrets

    signs_on = spec(**HARBOR, **HARBOR_OIDC)
    assert [s.key for s in needed_secrets(signs_on, "configure")] == [
        "harborAdminPassword", "harborOidcClientSecret"]
    assert "harborOidcClientSecret" not in [s.key for s in needed_secrets(signs_on, "platform")]
    assert "harborOidcClientSecret" not in [s.key for s in needed_secrets(spec(**HARBOR), "configure")]


def _harbor_sign_on_rules(spec: PlatformSpec) -> list:
    from plinth.spec.rules import check_rules

    return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(spec) if v.rule.startswith("harbor-sign-on")]


def test_a_harbor_client_needs_harbor_at_a_host_name_and_oidc_groups():
    at = ("identity", "oidc", "clients", "harbor")
    assert _harbor_sign_on_rules(spec(**HARBOR_OIDC, registry={"harbor": {"enabled": True}})) == [
        (at, "harbor-sign-on", "Harbor signs people on through the provider at its own host name, and registry.harbor "
         "is not enabled with a hostname", "enable registry.harbor and set registry.harbor.hostname, or remove "
         "clients.harbor")]
    ldap = {"registry": {"harbor": {**HARBOR["registry"]["harbor"], "groupType": "ldap"}}}
    assert _harbor_sign_on_rules(spec(**HARBOR_OIDC, **ldap)) == [
        (("registry", "harbor", "groupType"), "harbor-sign-on-groups", "groupType 'ldap', while Harbor signs people "
         "on through the provider (identity.oidc.clients.harbor)", "set groupType: oidc, or remove "
         "identity.oidc.clients.harbor")]
    with_ca = {"identity": {"oidc": {**HARBOR_OIDC["identity"]["oidc"], "certificateAuthority": CA}}}
    assert _harbor_sign_on_rules(spec(**HARBOR, **with_ca)) == []  # core trusts it: tests/charts/test_harbor_chart.py
    assert _harbor_sign_on_rules(spec(**HARBOR, **HARBOR_OIDC)) == []


def test_stack_stages():
    assert CONFIGURE_STACKS, "the project has at least one configure stack"
    for stack in CONFIGURE_STACKS:
        assert stack_stage(ROOT, stack) == "configure"
        configured = stack.removesuffix(".configure")
        assert load_stack_spec(ROOT, stack) == load_stack_spec(ROOT, configured)
    assert all(stack_stage(ROOT, stack) == "platform" for stack in STACKS)


def test_the_cli_plans_the_configure_stage_of_a_stack_and_refuses_a_wrong_stage():
    stack = CONFIGURE_STACKS[0]
    ok = subprocess.run([*PLINTH, "plan", "--stack", stack], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert "AuthBackendRole" in ok.stdout and "Release" not in ok.stdout
    wrong = subprocess.run([*PLINTH, "plan", "--stack", stack, "--stage", "platform"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2
    assert "is a configure stack" in wrong.stderr and "Traceback" not in wrong.stderr


# --- Vault itself, beside the other services --------------------------------------------------------------


def test_vault_is_raft_ha_with_tls_in_prod_and_never_awaited():
    spec = {"secrets": {"vault": {"enabled": True, "ha": True, "replicas": 3}}}
    prod = with_services("prod", **spec)
    vault = values(prod, "vault")
    assert vault["server"]["ha"]["replicas"] == 3 and vault["server"]["ha"]["raft"]["enabled"] is True
    config = vault["server"]["ha"]["raft"]["config"]
    assert config.count("retry_join") == 3 and 'storage "raft"' in config and "tls_disable" not in config
    assert vault["global"]["tlsDisable"] is False
    assert prod["vault-tls"].inputs["spec"]["secretName"] == "vault-server-tls"
    assert prod["vault-tls"].dependencies and prod["vault-tls"].urn in prod["vault"].dependencies
    # A sealed Vault never becomes ready: the release does not wait for it.
    assert prod["vault"].inputs["skipAwait"] is True
    dev = values(with_services("dev", secrets={"vault": {"enabled": True}}), "vault")
    assert dev["server"]["standalone"]["enabled"] is True and dev["server"]["ha"] == {"enabled": False}


def test_vault_auto_unseal_stanzas():
    unseal = {"type": "gcpckms", "key": "projects/p1/locations/europe-west4/keyRings/r/cryptoKeys/vault"}
    vault = values(with_services("dev", secrets={"vault": {"enabled": True, "autoUnseal": unseal}}), "vault")
    config = vault["server"]["standalone"]["config"]
    assert 'seal "gcpckms"' in config and 'project = "p1"' in config and 'crypto_key = "vault"' in config


def test_vault_metrics_reach_prometheus_only():
    resources = with_services("dev", secrets={"vault": {"enabled": True}}, teams=[{"name": "fraud"}])
    vault = values(resources, "vault")
    api, metrics = vault["server"]["standalone"]["config"].split('listener "tcp"')[1:3]
    # Teams reach the API listener: there /v1/sys/metrics needs a token allowed to read it.
    assert '"[::]:8200"' in api and "unauthenticated_metrics_access" not in api
    assert '"[::]:8202"' in metrics and 'unauthenticated_metrics_access = "true"' in metrics
    assert vault["serverTelemetry"]["serviceMonitor"] == {"enabled": False}
    assert vault["global"]["serverTelemetry"] == {"prometheusOperator": False}
    assert resources["vault-metrics"].inputs["spec"]["ports"] == [
        {"name": "metrics", "port": 8202, "targetPort": 8202, "protocol": "TCP"}]
    [endpoint] = resources["vault-monitor"].inputs["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["tlsConfig"]["serverName"]) == (
        "metrics", "/v1/sys/metrics", "vault.vault.svc")
    policies = network_policies(resources)["vault"]
    assert policies["allow-from-teams"][1]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8200}]
    assert "ports" not in policies["allow-from-monitoring"][1]["ingress"][0]
