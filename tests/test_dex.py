"""Dex (identity.dex) under Pulumi's mock runtime: the platform's own identity provider on the Gateway at
identity.oidc's issuer, its state in Kubernetes objects, an LDAP directory as its connector, every client of
identity.oidc.clients registered with the secret of its stack secret, no secret in its configuration; its rules."""

from __future__ import annotations

import json

import pytest

from plinth.engine.offline import plan
from plinth.modules.dex import STORAGE_RESOURCES
from plinth.plan import SECRET
from plinth.program import needed_secrets
from plinth.spec.rules import check_rules
from support import SERVICES, by_key, platform_spec
from test_identity import CA

HOST = "login.models.plinth.internal"
LDAP = {"name": "corp-ad", "host": "ad.corp.internal:636", "certificateAuthority": CA,
        "bindDn": "cn=dex,ou=services,dc=corp,dc=internal",
        "userSearch": {"baseDn": "ou=people,dc=corp,dc=internal", "username": "sAMAccountName"},
        "groupSearch": {"baseDn": "ou=groups,dc=corp,dc=internal", "filter": "(objectClass=group)"}}
CLIENTS = {"kubernetes": "ml-kubernetes", "argo": "ml-argo", "uiProxy": "ml-uis"}


def spec(environment: str = "dev", dex: dict | None = None, oidc: dict | None = None, **overrides):
    return platform_spec(SERVICES, {
        "metadata": {"environment": environment},
        "network": {**SERVICES["network"], "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "identity": {"oidc": {"issuer": f"https://{HOST}", "clients": CLIENTS, **(oidc or {})},
                     "dex": {"enabled": True, "hostname": HOST, "ldap": [LDAP], **(dex or {})},
                     "uiProxy": {"enabled": True, "hosts": {"prometheus": "prometheus.models.plinth.internal"}}},
        "pipelines": {"argo": {"enabled": True, "server": True, "hostname": "argo.models.plinth.internal"}}},
        overrides)


def planned(environment: str = "dev", **kwargs) -> dict:
    result = plan(spec(environment, **kwargs), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "dex"]
    return {**by_key(result), "release": release}


@pytest.fixture(scope="module")
def dev():
    return planned()


def config(objects) -> dict:
    return objects["release"].inputs["values"]["config"]


def test_off_by_default():
    plain = platform_spec({})
    assert plain.identity.dex.enabled is False
    assert [r for r in plan(plain, "test").resources if r.name.startswith("dex")] == []


def test_dex_is_the_issuer_with_its_state_in_kubernetes_objects(dev):
    found = config(dev)
    assert found["issuer"] == f"https://{HOST}"
    assert found["storage"] == {"type": "kubernetes", "config": {"inCluster": True}}
    assert found["enablePasswordDB"] is False
    assert found["oauth2"] == {"skipApprovalScreen": True, "responseTypes": ["code"]}
    route = dev["HTTPRoute", "dex", "dex"].inputs["spec"]
    assert route["hostnames"] == [HOST] and route["parentRefs"][0]["sectionName"] == "dex"
    assert route["rules"][0]["backendRefs"] == [{"name": "dex", "port": 5556}]


def test_the_directory_is_reached_over_verified_tls_and_its_password_by_reference(dev):
    [connector] = config(dev)["connectors"]
    assert connector == {"type": "ldap", "id": "corp-ad", "name": "corp-ad", "config": {
        "host": "ad.corp.internal:636", "insecureNoSSL": False, "insecureSkipVerify": False, "startTLS": False,
        "bindDN": "cn=dex,ou=services,dc=corp,dc=internal", "bindPW": "$DEX_LDAP_CORP_AD_BIND_PW",
        "usernamePrompt": "User name", "rootCA": "/etc/ldap-ca/corp-ad.crt",
        "userSearch": {"baseDN": "ou=people,dc=corp,dc=internal", "filter": "(objectClass=person)",
                       "username": "sAMAccountName", "idAttr": "uid", "emailAttr": "mail", "nameAttr": "cn"},
        "groupSearch": {"baseDN": "ou=groups,dc=corp,dc=internal", "filter": "(objectClass=group)",
                        "userMatchers": [{"userAttr": "DN", "groupAttr": "member"}], "nameAttr": "cn"}}}
    assert dev["ConfigMap", "dex", "dex-ldap-ca"].inputs["data"] == {"corp-ad.crt": CA}
    values = dev["release"].inputs["values"]
    assert values["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"},
                                      {"name": "ldap-ca", "mountPath": "/etc/ldap-ca", "readOnly": True}]


def test_every_client_is_registered_with_its_redirects_and_the_secret_of_its_stack_secret(dev):
    assert config(dev)["staticClients"] == [
        {"id": "ml-kubernetes", "name": "kubernetes", "public": True,
         "redirectURIs": ["http://localhost:8000", "http://localhost:18000"]},
        {"id": "ml-uis", "name": "uiProxy", "redirectURIs": ["https://prometheus.models.plinth.internal/oauth2/callback"],
         "secretEnv": "DEX_CLIENT_UIPROXY_SECRET"},
        {"id": "ml-argo", "name": "argo", "redirectURIs": ["https://argo.models.plinth.internal/oauth2/callback"],
         "secretEnv": "DEX_CLIENT_ARGO_SECRET"}]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in dev["release"].inputs["values"]["envVars"]}
    assert env == {name: {"name": "dex-credentials", "key": name} for name in (
        "DEX_LDAP_CORP_AD_BIND_PW", "DEX_CLIENT_UIPROXY_SECRET", "DEX_CLIENT_ARGO_SECRET")}


def test_no_secret_is_in_the_values_or_the_plan(dev):
    credentials = dev["Secret", "dex", "dex-credentials"].inputs
    assert credentials["stringData"] == SECRET
    assert credentials["metadata"]["annotations"]["plinth.dev/secret-source"] == (
        "plinth:dexLdapBindPassword, plinth:uiProxyClientSecret, plinth:argoOidcClientSecret")
    assert SECRET not in json.dumps(dev["release"].inputs["values"])
    keys = [s.key for s in needed_secrets(spec())]
    assert {"dexLdapBindPassword", "uiProxyClientSecret", "argoOidcClientSecret"} <= set(keys)
    assert "dexLdapBindPassword" not in [s.key for s in needed_secrets(platform_spec({}))]


def test_its_rbac_names_its_kinds_and_verbs(dev):
    assert dev["release"].inputs["values"]["rbac"] == {"create": False}  # the chart's Role is a wildcard
    assert dev["Role", "dex", "dex"].inputs["rules"] == [{
        "apiGroups": ["dex.coreos.com"], "resources": STORAGE_RESOURCES,
        "verbs": ["create", "delete", "get", "list", "update"]}]
    assert len(STORAGE_RESOURCES) == 10 and "*" not in STORAGE_RESOURCES
    # It creates its CRDs itself at start.
    assert dev["ClusterRole", None, "plinth:test:dex-crds"].inputs["rules"] == [{
        "apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
        "verbs": ["create", "list"]}]
    for kind, namespace, name in (("RoleBinding", "dex", "dex"), ("ClusterRoleBinding", None, "plinth:test:dex-crds")):
        assert dev[kind, namespace, name].inputs["subjects"] == [
            {"kind": "ServiceAccount", "name": "dex", "namespace": "dex"}]


def test_restricted_and_replicated_in_staging_and_prod(dev):
    values = dev["release"].inputs["values"]
    assert (values["replicaCount"], values["podDisruptionBudget"]["enabled"]) == (1, False)
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["podSecurityContext"] == {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert dev["Namespace", None, "dex"].inputs["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    prod = planned("staging")["release"].inputs["values"]
    assert (prod["replicaCount"], prod["podDisruptionBudget"]) == (2, {"enabled": True, "maxUnavailable": 1})


def test_air_gap_pulls_dex_from_the_mirror():
    found = planned(airgap={"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                                        "charts": "oci://mirror.corp.internal/charts",
                                                        "hosts": ["ad.corp.internal:636"]}})
    assert found["release"].inputs["values"]["image"] == {
        "repository": "mirror.corp.internal/mirror/dexidp/dex", "tag": "v2.44.0", "digest": ""}


def test_the_rules():
    def found(s):
        return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(s)]

    assert found(spec()) == []
    assert found(spec(oidc={"issuer": "https://login.corp.internal"})) == [
        (("identity", "oidc", "issuer"), "dex-issuer", f"Dex issues the platform's tokens as https://{HOST}, not "
         "https://login.corp.internal", f"set issuer: https://{HOST}")]
    assert found(spec(dex={"hostname": None})) == [
        (("identity", "dex", "hostname"), "dex-hostname", "Dex signs people on at its own host name on the "
         "platform Gateway, and hostname is not set", "set identity.dex.hostname (a name under "
         "network.gateway.hostname)")]
    assert found(spec(dex={"ldap": []})) == [
        (("identity", "dex", "ldap"), "dex-connector", "Dex without a connector signs nobody in",
         "add a directory under identity.dex.ldap")]
    assert found(spec(oidc={"groupsClaim": "roles"})) == [
        (("identity", "oidc", "groupsClaim"), "dex-claims", "Dex puts the groups in the claim groups",
         "remove groupsClaim (default groups)")]
    assert [v.rule for v in check_rules(spec(dex={"hostname": "login.elsewhere.internal"},
                                             oidc={"issuer": "https://login.elsewhere.internal"}))] == ["dex-hostname"]
    assert "dex-needs-gateway" in [v.rule for v in check_rules(spec(
        network={**SERVICES["network"], "cilium": {**SERVICES["network"]["cilium"], "gatewayApi": False}}))]


def test_in_an_air_gap_dex_is_inside_and_its_directory_must_be():
    airgap = {"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                          "charts": "oci://mirror.corp.internal/charts"}}
    assert [(v.loc, v.rule, v.message) for v in check_rules(spec(airgap=airgap)) if v.rule == "airgap-endpoint"] == [
        (("identity", "dex", "ldap", 0, "host"), "airgap-endpoint", "the directory 'ldaps://ad.corp.internal:636' is "
         "outside the air gap: its host is not one of the perimeter's hosts (mirror.corp.internal)")]


def test_a_dollar_in_a_connector_setting_is_refused():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="bindDn"):
        spec(dex={"ldap": [{**LDAP, "bindDn": "cn=$HOME,dc=corp"}]})
    with pytest.raises(ValidationError, match="filter"):  # the entrypoint renders the file as a template
        spec(dex={"ldap": [{**LDAP, "userSearch": {"baseDn": "dc=corp", "filter": "{{ .Env.HOME }}"}}]})


def test_each_surface_with_a_client_gets_its_redirect_uris():
    from plinth.modules.dex import static_clients

    every = spec(oidc={"clients": {"kubernetes": "k", "grafana": "g", "uiProxy": "u", "vault": "v", "harbor": "h",
                                   "argo": "a", "mlflow": "m", "jupyterhub": "j"},
                       "endpoints": {"authorization": f"https://{HOST}/auth", "token": f"https://{HOST}/token"}},
                 monitoring={"enabled": True, "grafana": {"hostname": "grafana.models.plinth.internal"}},
                 secrets={"vault": {"enabled": True, "address": "https://vault.corp.internal:8200"}},
                 registry={"harbor": {"enabled": True, "hostname": "harbor.models.plinth.internal"},
                           "mlflow": {"enabled": True, "hostname": "mlflow.models.plinth.internal"}},
                 notebooks={"jupyterhub": {"enabled": True, "hostname": "notebooks.models.plinth.internal"}},
                 storage={"objectStore": {"enabled": True}})  # MLflow's artifacts
    assert check_rules(every) == []
    assert [(c.key, c.redirects, c.secret.key if c.secret else None) for c in static_clients(every)] == [
        ("kubernetes", ("http://localhost:8000", "http://localhost:18000"), None),
        ("grafana", ("https://grafana.models.plinth.internal/login/generic_oauth",), "grafanaOidcClientSecret"),
        ("uiProxy", ("https://prometheus.models.plinth.internal/oauth2/callback",), "uiProxyClientSecret"),
        ("vault", ("https://vault.corp.internal:8200/ui/vault/auth/oidc/oidc/callback",
                   "http://localhost:8250/oidc/callback"), "vaultOidcClientSecret"),
        ("harbor", ("https://harbor.models.plinth.internal/c/oidc/callback",), "harborOidcClientSecret"),
        ("argo", ("https://argo.models.plinth.internal/oauth2/callback",), "argoOidcClientSecret"),
        ("mlflow", ("https://mlflow.models.plinth.internal/callback",), "mlflowOidcClientSecret"),
        ("jupyterhub", ("https://notebooks.models.plinth.internal/hub/oauth_callback",),
         "jupyterhubOidcClientSecret")]
    # The platform stage, where Dex runs, now needs the configure stage's client secrets too.
    assert {"vaultOidcClientSecret", "harborOidcClientSecret"} <= {s.key for s in needed_secrets(every)}
