"""JupyterHub (notebooks.jupyterhub) under Pulumi's mock runtime: the hub on the platform Gateway signing people on
through identity.oidc (GenericOAuthenticator, the teams' groups let in, the platform admins as admins), its client
secret by reference only, restricted notebook servers, none of the chart's cluster-wide or node-wide parts; its
rules."""

from __future__ import annotations

import json

import pytest
from support import SERVICES, by_key, platform_spec
from test_identity import CA

from plinth.engine.offline import plan
from plinth.plan import SECRET
from plinth.program import needed_secrets
from plinth.spec.rules import check_rules

HOST = "notebooks.models.plinth.internal"
ISSUER = "https://login.corp.internal"
ENDPOINTS = {"authorization": f"{ISSUER}/auth", "token": f"{ISSUER}/token"}
TEAMS = [{"name": "fraud", "groups": {"mlEngineer": ["fraud-engineers"], "dataScientist": ["fraud-scientists"],
                                      "viewer": ["auditors"]}},
         {"name": "credit", "groups": {"dataScientist": ["credit-scientists"], "viewer": ["auditors"]}}]


def spec(environment: str = "dev", hub: dict | None = None, oidc: dict | None = None, **overrides):
    return platform_spec(SERVICES, {
        "metadata": {"environment": environment},
        "network": {**SERVICES["network"], "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "rbac": {"platformAdminGroup": "ml-admins"},
        "teams": TEAMS,
        "identity": {"oidc": {"issuer": ISSUER, "certificateAuthority": CA, "endpoints": ENDPOINTS,
                              "clients": {"kubernetes": "ml-kubernetes", "jupyterhub": "ml-notebooks"},
                              **(oidc or {})}},
        "notebooks": {"jupyterhub": {"enabled": True, "hostname": HOST, **(hub or {})}}}, overrides)


def planned(environment: str = "dev", **kwargs) -> dict:
    result = plan(spec(environment, **kwargs), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "jupyterhub"]
    return {**by_key(result), "release": release}


@pytest.fixture(scope="module")
def dev():
    return planned()


def values(objects) -> dict:
    return objects["release"].inputs["values"]


def test_off_by_default():
    plain = platform_spec({})
    assert plain.notebooks.jupyterhub.enabled is False
    assert [r for r in plan(plain, "test").resources if r.name.startswith("jupyterhub")] == []


def test_people_sign_on_through_the_provider_and_only_the_teams_and_admins_get_in(dev):
    config = values(dev)["hub"]["config"]
    # Admins do not open people's servers (JupyterHub's default; the chart's is on).
    assert config["JupyterHub"] == {"authenticator_class": "generic-oauth", "admin_access": False}
    assert config["GenericOAuthenticator"] == {
        "client_id": "ml-notebooks",
        "oauth_callback_url": f"https://{HOST}/hub/oauth_callback",
        "authorize_url": f"{ISSUER}/auth", "token_url": f"{ISSUER}/token",
        "userdata_from_id_token": True, "username_claim": "email",
        "scope": ["openid", "email", "profile", "groups"], "enable_pkce": True, "validate_server_cert": True,
        "login_service": "Single sign-on", "manage_groups": True, "auth_state_groups_key": "oauth_user.groups",
        "allowed_groups": ["auditors", "credit-scientists", "fraud-engineers", "fraud-scientists", "ml-admins"],
        "admin_groups": ["ml-admins"],
        "http_request_kwargs": {"ca_certs": "/etc/jupyterhub/oidc-ca/ca.crt"}}
    assert dev["ConfigMap", "jupyterhub", "jupyterhub-oidc-ca"].inputs["data"] == {"ca.crt": CA}
    hub = values(dev)["hub"]
    assert hub["extraVolumeMounts"] == [{"name": "oidc-ca", "mountPath": "/etc/jupyterhub/oidc-ca", "readOnly": True}]


def test_the_groups_claim_is_the_specs():
    config = values(planned(oidc={"groupsClaim": "roles"}))["hub"]["config"]["GenericOAuthenticator"]
    assert config["auth_state_groups_key"] == "oauth_user.roles"


def test_no_secret_is_in_the_values_or_the_plan(dev):
    secret = dev["Secret", "jupyterhub", "jupyterhub-oidc"].inputs
    assert secret["stringData"] == SECRET  # the whole payload is a secret Output
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"] == "plinth:jupyterhubOidcClientSecret"
    hub = values(dev)["hub"]
    assert hub["extraEnv"] == {"OAUTH_CLIENT_SECRET": {"valueFrom": {"secretKeyRef": {
        "name": "jupyterhub-oidc", "key": "client-secret"}}}}
    rendered = json.dumps(values(dev))
    assert SECRET not in rendered
    # The proxy token, cookie secret and auth-state keys are the chart's own Secret's (kept by Helm's lookup).
    for key in ("secretToken", "cookieSecret", "cookie_secret", "auth_token", "CryptKeeper"):
        assert key not in rendered
    assert "jupyterhubOidcClientSecret" in [s.key for s in needed_secrets(spec())]
    assert "jupyterhubOidcClientSecret" not in [s.key for s in needed_secrets(platform_spec({}))]


def test_restricted_notebook_servers_and_none_of_the_charts_node_or_cluster_wide_parts(dev):
    found = values(dev)
    assert dev["Namespace", None, "jupyterhub"].inputs["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    spawner = found["hub"]["config"]["KubeSpawner"]
    assert spawner["pod_security_context"] == {"runAsNonRoot": True, "fsGroup": 100,
                                               "seccompProfile": {"type": "RuntimeDefault"}}
    assert spawner["container_security_context"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"}}
    single = found["singleuser"]
    assert (single["uid"], single["fsGid"], single["allowPrivilegeEscalation"]) == (1000, 100, False)
    assert single["cloudMetadata"]["blockWithIptables"] is False  # a privileged init container otherwise
    assert single["networkPolicy"] == {"enabled": True, "egressAllowRules": {
        "cloudMetadataServer": False, "dnsPortsCloudMetadataServer": False, "dnsPortsKubeSystemNamespace": True,
        "dnsPortsPrivateIPs": True, "nonPrivateIPs": True, "privateIPs": False}}
    assert single["cpu"] == {"limit": 2.0, "guarantee": 0.2}
    assert single["memory"] == {"limit": 4 * 2**30, "guarantee": 4 * 2**30}
    assert single["storage"] == {"type": "dynamic", "capacity": "10Gi", "dynamic": {"storageClass": "longhorn"}}
    assert found["scheduling"] == {"userScheduler": {"enabled": False}, "userPlaceholder": {"enabled": False},
                                   "podPriority": {"enabled": False}}
    assert found["prePuller"] == {"hook": {"enabled": False}, "continuous": {"enabled": False}}
    assert found["proxy"]["service"] == {"type": "ClusterIP"}
    assert (found["ingress"], found["httpRoute"]) == ({"enabled": False}, {"enabled": False})
    assert found["hub"]["resources"]["limits"] and found["proxy"]["chp"]["resources"]["limits"]
    assert found["cull"] == {"enabled": True, "timeout": 3600, "every": 300}


def test_on_the_gateway_at_its_host_name_with_the_gateway_let_in(dev):
    route = dev["HTTPRoute", "jupyterhub", "jupyterhub"].inputs["spec"]
    assert route["hostnames"] == [HOST] and route["parentRefs"][0]["sectionName"] == "jupyterhub"
    assert route["rules"][0]["backendRefs"] == [{"name": "proxy-public", "port": 80}]
    assert route["rules"][0]["timeouts"] == {"request": "0s"}  # the kernels' WebSocket lives for hours
    gateway = dev["CiliumNetworkPolicy", "jupyterhub", "allow-from-gateway"].inputs["spec"]
    assert gateway["ingress"] == [{"fromEntities": ["ingress"], "toPorts": [{"ports": [
        {"port": "8000", "protocol": "TCP"}]}]}]


def test_settings_reach_the_values():
    found = values(planned(hub={"cpu": "500m", "memory": "1Gi", "storage": "20Gi", "storageClass": "fast",
                                "idleTimeoutMinutes": 30}))
    assert found["singleuser"]["cpu"] == {"limit": 0.5, "guarantee": 0.05}
    assert found["singleuser"]["memory"] == {"limit": 2**30, "guarantee": 2**30}
    assert found["singleuser"]["storage"]["capacity"] == "20Gi"
    assert found["hub"]["db"] == {"type": "sqlite-pvc", "pvc": {"storage": "1Gi", "storageClassName": "fast"}}
    assert found["cull"]["timeout"] == 1800


def test_air_gap_pulls_from_the_mirror_and_notebooks_reach_nothing_outside():
    found = values(planned(airgap={"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                                               "charts": "oci://mirror.corp.internal/charts",
                                                               "hosts": ["login.corp.internal"]}}))
    assert found["hub"]["image"] == {"name": "mirror.corp.internal/mirror/jupyterhub/k8s-hub", "tag": "4.4.0"}
    assert found["proxy"]["chp"]["image"] == {
        "name": "mirror.corp.internal/mirror/jupyterhub/configurable-http-proxy", "tag": "5.2.0"}
    assert found["singleuser"]["image"] == {
        "name": "mirror.corp.internal/mirror/jupyterhub/k8s-singleuser-sample", "tag": "4.4.0"}
    assert found["singleuser"]["networkPolicy"]["egressAllowRules"]["nonPrivateIPs"] is False


def test_dex_registers_its_client():
    from plinth.modules.dex import static_clients

    dex = "https://login.models.plinth.internal"
    with_dex = spec(oidc={"issuer": dex, "certificateAuthority": None,
                          "endpoints": {"authorization": f"{dex}/auth", "token": f"{dex}/token"}},
                    identity={"dex": {"enabled": True, "hostname": "login.models.plinth.internal", "ldap": [{
                        "name": "corp", "host": "ad.corp.internal:636", "bindDn": "cn=dex,dc=corp",
                        "userSearch": {"baseDn": "dc=corp"}, "groupSearch": {"baseDn": "dc=corp"}}]}})
    assert check_rules(with_dex) == []
    [client] = [c for c in static_clients(with_dex) if c.key == "jupyterhub"]
    assert (client.client_id, client.redirects, client.secret.key) == (
        "ml-notebooks", (f"https://{HOST}/hub/oauth_callback",), "jupyterhubOidcClientSecret")
    assert "jupyterhubOidcClientSecret" in [s.key for s in needed_secrets(with_dex)]


def test_the_rules():
    def found(s):
        return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(s)]

    assert found(spec()) == []
    assert found(spec(hub={"hostname": None})) == [
        (("notebooks", "jupyterhub", "hostname"), "jupyterhub-hostname", "people reach JupyterHub and come back "
         "from signing on at its host name on the platform Gateway, and hostname is not set",
         "set notebooks.jupyterhub.hostname (a name under network.gateway.hostname)")]
    assert found(spec(hub={"hostname": "notebooks.elsewhere.internal"})) == [
        (("notebooks", "jupyterhub", "hostname"), "jupyterhub-hostname", "'notebooks.elsewhere.internal' is not a "
         "name the Gateway listener '*.models.plinth.internal' and its certificate serve",
         "use one name under models.plinth.internal")]
    assert found(spec(oidc={"clients": {"kubernetes": "ml-kubernetes"}})) == [
        (("notebooks", "jupyterhub", "enabled"), "jupyterhub-sign-on", "JupyterHub signs people on through "
         "identity.oidc only, and identity.oidc.clients.jupyterhub is not set", "set identity.oidc.clients.jupyterhub "
         "(and the stack secret plinth:jupyterhubOidcClientSecret)")]
    assert found(spec(oidc={"endpoints": None})) == [
        (("identity", "oidc", "clients", "jupyterhub"), "jupyterhub-sign-on-endpoints", "JupyterHub reads no "
         "discovery document, and identity.oidc.endpoints is not set", "set identity.oidc.endpoints.authorization "
         "and .token as the provider's <issuer>/.well-known/openid-configuration lists them")]
    assert found(spec(hub={"enabled": False})) == [
        (("identity", "oidc", "clients", "jupyterhub"), "jupyterhub-sign-on-unused", "a client for JupyterHub, and "
         "notebooks.jupyterhub is off", "enable notebooks.jupyterhub, or remove clients.jupyterhub")]
    no_oidc = platform_spec({"rbac": {"platformAdminGroup": "ml-admins"},
                             "notebooks": {"jupyterhub": {"enabled": True, "hostname": HOST}}})
    assert [(v.rule, v.fix) for v in check_rules(no_oidc) if v.rule.startswith("jupyterhub")] == [
        ("jupyterhub-needs-gateway", "enable network.cilium with gatewayApi: true, or turn JupyterHub off"),
        ("jupyterhub-sign-on", "set identity.oidc with clients.jupyterhub (and the stack secret "
         "plinth:jupyterhubOidcClientSecret)")]
    # Incomplete, it is not built (the rules say why).
    assert [r for r in plan(no_oidc, "test").resources if r.name.startswith("jupyterhub")] == []
