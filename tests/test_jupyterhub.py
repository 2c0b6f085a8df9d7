"""JupyterHub (notebooks.jupyterhub) under Pulumi's mock runtime: the hub on the platform Gateway signing people on
through identity.oidc (GenericOAuthenticator, the teams' groups let in, the platform admins as admins), its client
secret by reference only, restricted notebook servers, none of the chart's cluster-wide or node-wide parts; its
rules."""

from __future__ import annotations

import base64
import json
import logging
import subprocess
import time
from types import SimpleNamespace

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


# --- MLflow from the notebooks ------------------------------------------------------------------------------------

MLFLOW_CLIENT = "ml-mlflow"
WITH_MLFLOW = {"registry": {"mlflow": {"enabled": True}}, "storage": {"objectStore": {"enabled": True}}}
SIGN_ON = {"clients": {"kubernetes": "ml-kubernetes", "jupyterhub": "ml-notebooks", "mlflow": MLFLOW_CLIENT}}


def test_without_mlflow_the_notebooks_have_no_way_to_it(dev):
    single = values(dev)["singleuser"]
    assert "extraEnv" not in single and "egress" not in single["networkPolicy"]
    assert "extraConfig" not in values(dev)["hub"]
    assert [key for key in dev if key[0] == "NetworkPolicy" and key[1] == "mlflow"] == []


def test_the_notebook_servers_reach_mlflows_server_port_and_mlflow_admits_them_only():
    from plinth.modules.mlflow import client_env

    objects = planned(**WITH_MLFLOW)
    single = values(objects)["singleuser"]
    # The in-cluster server, every artifact through it (no presigned URL of the bucket, which they cannot reach).
    assert single["extraEnv"] == client_env() == {
        "MLFLOW_TRACKING_URI": "http://mlflow.mlflow.svc", "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
        "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false"}
    mlflow_pods = {"app": "mlflow", "app.kubernetes.io/instance": "mlflow", "app.kubernetes.io/name": "mlflow"}
    # The chart's own policy of the notebook servers: their DNS, hub and proxy, and MLflow's server port only.
    assert single["networkPolicy"]["egress"] == [{
        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}},
                "podSelector": {"matchLabels": mlflow_pods}}],
        "ports": [{"protocol": "TCP", "port": 5000}]}]
    assert single["networkPolicy"]["egressAllowRules"]["privateIPs"] is False
    admitted = objects["NetworkPolicy", "mlflow", "allow-from-jupyterhub-notebooks"].inputs["spec"]
    assert admitted == {"podSelector": {"matchLabels": mlflow_pods}, "policyTypes": ["Ingress"], "ingress": [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "jupyterhub"}},
                  "podSelector": {"matchLabels": {"app": "jupyterhub", "component": "singleuser-server",
                                                  "release": "jupyterhub"}}}],
        "ports": [{"protocol": "TCP", "port": 5000}]}]}
    # Without MLflow's sign-on the person's tokens are not kept: nothing to pass on.
    hub = values(objects)["hub"]
    assert "extraConfig" not in hub and "enable_auth_state" not in hub["config"]["GenericOAuthenticator"]


def test_with_mlflows_sign_on_the_hub_keeps_the_persons_tokens_and_its_hook_passes_mlflows_on():
    objects = planned(oidc=SIGN_ON, **WITH_MLFLOW)
    hub = values(objects)["hub"]
    auth = hub["config"]["GenericOAuthenticator"]
    assert (auth["enable_auth_state"], auth["refresh_pre_spawn"]) == (True, True)
    # An external provider: no Dex scope (its own way gives the tokens MLflow's audience, README).
    assert auth["scope"] == ["openid", "email", "profile", "groups"]
    [config] = hub["extraConfig"].values()
    assert config.endswith("c.KubeSpawner.auth_state_hook = mlflow_token_hook('ml-mlflow')\n"
                           "c.GenericOAuthenticator.refresh_user_hook = refresh_user_hook\n")
    # The auth-state keys are the chart's (drawn once into its Secret `hub`): nothing secret or random is planned.
    rendered = json.dumps(values(objects))
    assert SECRET not in rendered
    for key in ("CryptKeeper", "JUPYTERHUB_CRYPT_KEY", "cookieSecret", "cookie_secret", "secretToken"):
        assert key not in rendered
    assert json.dumps(values(planned(oidc=SIGN_ON, **WITH_MLFLOW))) == rendered  # the same at every plan


def test_with_an_api_scope_for_mlflow_jupyterhub_asks_for_mlflows_access_token():
    """Entra ID, Okta: the provider issues an access token for MLflow's API (aud: MLflow's client id) when asked for
    its scope; the hook passes the access token first (test_the_hook_passes_the_token_issued_for_mlflow)."""
    scope = "api://plinth-mlflow/access_as_user"
    objects = planned(oidc={**SIGN_ON, "mlflowScope": scope}, **WITH_MLFLOW)
    assert [v for v in check_rules(spec(oidc={**SIGN_ON, "mlflowScope": scope}, **WITH_MLFLOW))
            if v.rule.startswith(("mlflow", "jupyterhub"))] == []
    assert values(objects)["hub"]["config"]["GenericOAuthenticator"]["scope"] == [
        "openid", "email", "profile", "groups", scope]


def test_an_api_scope_for_mlflow_needs_its_audience_no_dex_and_a_hub_that_asks():
    def found(s):
        return [(v.loc, v.rule, v.fix) for v in check_rules(s) if v.rule.startswith("mlflow-scope")]

    scope = {"mlflowScope": "api://plinth-mlflow/access_as_user"}
    assert found(spec(oidc=scope, **WITH_MLFLOW)) == [
        (("identity", "oidc", "mlflowScope"), "mlflow-scope-audience",
         "set identity.oidc.clients.mlflow, or remove mlflowScope")]
    assert found(spec(hub={"enabled": False}, oidc={**SIGN_ON, **scope, "clients": {
        k: v for k, v in SIGN_ON["clients"].items() if k != "jupyterhub"}}, **WITH_MLFLOW)) == [
        (("identity", "oidc", "mlflowScope"), "mlflow-scope-unused", "enable both, or remove mlflowScope")]
    dex = with_dex("mlflow.models.plinth.internal").model_dump(by_alias=True, exclude_none=True)
    dex["identity"]["oidc"] |= scope
    from plinth.spec.models import PlatformSpec

    assert found(PlatformSpec.model_validate(dex)) == [
        (("identity", "oidc", "mlflowScope"), "mlflow-scope-dex", "remove mlflowScope")]


def with_dex(mlflow_host: str | None):
    dex = "https://login.models.plinth.internal"
    return spec(oidc={"issuer": dex, "certificateAuthority": None, **SIGN_ON,
                      "endpoints": {"authorization": f"{dex}/auth", "token": f"{dex}/token"}},
                registry={"mlflow": {"enabled": True, "hostname": mlflow_host}},
                storage={"objectStore": {"enabled": True}},
                identity={"dex": {"enabled": True, "hostname": "login.models.plinth.internal", "ldap": [{
                    "name": "corp", "host": "ad.corp.internal:636", "bindDn": "cn=dex,dc=corp",
                    "userSearch": {"baseDn": "dc=corp"}, "groupSearch": {"baseDn": "dc=corp"}}]}})


def test_with_dex_jupyterhub_asks_for_mlflows_audience_which_mlflows_client_trusts_it_for():
    from plinth.modules.dex import static_clients
    from plinth.modules.notebooks import JupyterHub

    dex = with_dex("mlflow.models.plinth.internal")
    assert [v.rule for v in check_rules(dex) if v.rule.split("-")[0] in ("jupyterhub", "mlflow", "dex")] == []
    clients = {c.key: c.config() for c in static_clients(dex)}
    assert clients["mlflow"]["trustedPeers"] == ["ml-notebooks"]
    assert "trustedPeers" not in clients["jupyterhub"]
    result = plan(dex, "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "jupyterhub"]
    assert release.inputs["values"]["hub"]["config"]["GenericOAuthenticator"]["scope"] == [
        "openid", "email", "profile", "groups", "audience:server:client_id:ml-mlflow"]
    # MLflow without a host name has no client at Dex to trust JupyterHub: no scope Dex would refuse.
    no_host = with_dex(None)
    assert "mlflow" not in {c.key for c in static_clients(no_host)}
    assert JupyterHub.block(no_host).cross_client is False
    assert JupyterHub.block(no_host).mlflow_audience == MLFLOW_CLIENT  # a token from another way still passes


# The hooks, run as the hub runs them: the rendered hub.extraConfig executed, then called.

def jwt(claims: dict) -> str:
    """A token shaped as a provider's (unsigned: the hooks read it, MLflow checks signatures)."""
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'RS256', 'kid': 'k'})}.{part(claims)}.c2lnbmF0dXJl"


class Config:
    """traitlets' `c`: any section, any trait."""

    def __getattr__(self, name):
        setattr(self, name, SimpleNamespace())
        return getattr(self, name)


@pytest.fixture(scope="module")
def hooks():
    [config] = values(planned(oidc=SIGN_ON, **WITH_MLFLOW))["hub"]["extraConfig"].values()
    c = Config()
    exec(compile(config, "plinth-mlflow-token", "exec"), {"c": c})  # as the chart's jupyterhub_config.py does
    return c.KubeSpawner.auth_state_hook, c.GenericOAuthenticator.refresh_user_hook


def spawner():
    return SimpleNamespace(environment={"MLFLOW_TRACKING_TOKEN": "left from an earlier start"},
                           user=SimpleNamespace(name="ana@corp.internal"), log=logging.getLogger("test-hub"))


def test_the_hook_passes_the_token_issued_for_mlflow(hooks):
    auth_state_hook, _ = hooks
    later = time.time() + 600
    mine = {"aud": "ml-notebooks", "exp": later}
    # Dex, cross-client: both tokens carry MLflow's audience beside JupyterHub's; the access token goes first.
    dex = {"access_token": jwt({"aud": [MLFLOW_CLIENT, "ml-notebooks"], "exp": later}),
           "id_token": jwt({"aud": [MLFLOW_CLIENT, "ml-notebooks"], "exp": later})}
    # An audience mapper (Keycloak) or an API scope: the access token is MLflow's, the ID token JupyterHub's.
    mapped = {"access_token": jwt({"aud": MLFLOW_CLIENT, "exp": later}), "id_token": jwt(mine)}
    # An opaque access token, the ID token with MLflow's audience.
    opaque = {"access_token": "opaque-token", "id_token": jwt({"aud": [MLFLOW_CLIENT], "exp": later})}
    for auth_state, key in ((dex, "access_token"), (mapped, "access_token"), (opaque, "id_token")):
        server = spawner()
        auth_state_hook(server, auth_state)
        assert server.environment["MLFLOW_TRACKING_TOKEN"] == auth_state[key]


def test_without_a_token_for_mlflow_the_server_gets_none_and_the_hub_says_so(hooks, caplog):
    auth_state_hook, _ = hooks
    later = time.time() + 600
    theirs = jwt({"aud": "ml-notebooks", "exp": later})
    cases = ({"access_token": theirs, "id_token": theirs},  # the provider gave JupyterHub's audience only
             {"access_token": jwt({"aud": MLFLOW_CLIENT, "exp": time.time() - 1}), "id_token": theirs},  # expired
             None)  # no auth state (signed on before it was kept)
    for auth_state in cases:
        server = spawner()
        with caplog.at_level(logging.WARNING, logger="test-hub"):
            auth_state_hook(server, auth_state)
        assert "MLFLOW_TRACKING_TOKEN" not in server.environment  # not an older start's either
    assert [r.getMessage() for r in caplog.records] == [
        "No token of ana@corp.internal has MLflow's audience 'ml-mlflow': their server signs on to MLflow with "
        "nothing (see notebooks' README, MLflow)"] * 3
    assert theirs not in caplog.text


def test_the_refresh_hook_asks_for_a_new_sign_on_once_a_token_has_expired(hooks):
    _, refresh_user_hook = hooks
    later, earlier = time.time() + 600, time.time() - 1
    user = SimpleNamespace(name="ana@corp.internal")
    valid = {"access_token": jwt({"aud": MLFLOW_CLIENT, "exp": later}), "id_token": jwt({"exp": later})}
    assert refresh_user_hook(None, user, valid) is True
    assert refresh_user_hook(None, user, {**valid, "id_token": jwt({"exp": earlier})}) is False
    assert refresh_user_hook(None, user, {**valid, "access_token": jwt({"exp": earlier})}) is False
    assert refresh_user_hook(None, user, {"access_token": "opaque", "id_token": jwt({"exp": later})}) is True
    assert refresh_user_hook(None, user, None) is False


ACCEPT = r"""
import json, os, sys, time
os.environ.update({"OIDC_AUDIENCE": sys.argv[1], "OIDC_ISSUER": sys.argv[2]})
from authlib.jose import JsonWebKey, jwt
from mlflow_oidc_auth import auth

key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
auth._get_oidc_jwks = lambda force_refresh=False: {"keys": [dict(key.as_dict(is_private=False), kid="k")]}
found = {}
for name, aud in json.loads(sys.argv[3]).items():
    claims = {"iss": sys.argv[2], "aud": aud, "exp": int(time.time()) + 600, "email": "ana@corp.internal"}
    token = jwt.encode({"alg": "RS256", "kid": "k"}, claims, key).decode()
    try:
        found[name] = [token, auth.validate_token(token)["email"]]
    except Exception as e:
        found[name] = [token, type(e).__name__]
print(json.dumps(found))
"""


def test_mlflows_plugin_accepts_the_token_the_hook_passes_and_refuses_jupyterhubs_own(hooks, tmp_path):
    """The image's plugin (mlflow-oidc-auth, its token check as MLflow runs it: aud = MLflow's client id, iss the
    issuer, signature by the provider's keys) on the tokens a provider issues to JupyterHub."""
    from support import external_tool

    python = external_tool("PLINTH_MLFLOW_PYTHON", "no MLflow environment with its sign-on plugin: set "
                           "PLINTH_MLFLOW_PYTHON (see .ci/run)")
    audiences = {"cross-client": [MLFLOW_CLIENT, "ml-notebooks"], "jupyterhub": "ml-notebooks"}
    run = subprocess.run([python, "-c", ACCEPT, MLFLOW_CLIENT, ISSUER, json.dumps(audiences)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    if "No module named 'mlflow_oidc_auth'" in run.stderr:
        pytest.skip("no mlflow-oidc-auth in $PLINTH_MLFLOW_PYTHON's environment (.ci/run installs it)")
    assert run.returncode == 0, run.stderr[-2000:]
    found = json.loads(run.stdout.splitlines()[-1])
    assert (found["cross-client"][1], found["jupyterhub"][1]) == ("ana@corp.internal", "InvalidClaimError")
    auth_state_hook, _ = hooks
    server = spawner()
    auth_state_hook(server, {"access_token": found["jupyterhub"][0], "id_token": found["cross-client"][0]})
    assert server.environment["MLFLOW_TRACKING_TOKEN"] == found["cross-client"][0]
    server = spawner()
    auth_state_hook(server, {"access_token": found["jupyterhub"][0], "id_token": found["jupyterhub"][0]})
    assert "MLFLOW_TRACKING_TOKEN" not in server.environment
