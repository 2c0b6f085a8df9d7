"""The sign-on proxy (modules/signon) under Pulumi's mock runtime: one oauth2-proxy per web UI, each on its own
listener of the Gateway, only the platform admin group, secrets from the stack; its rules. The real oauth2-proxy
runs this configuration in tests/e2e/test_ui_proxy.py."""

from __future__ import annotations

import tomllib

import pytest

from plinth.engine.offline import plan
from plinth.program import needed_secrets
from plinth.spec.rules import check_rules
from support import SERVICES, by_name, of_kind, platform_spec, values
from test_identity import CA

GATEWAY = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
           "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
OIDC = {"issuer": "https://login.corp.internal/realms/ml", "clients": {"kubernetes": "ml-kubernetes",
                                                                       "uiProxy": "ml-uis"}}
HOSTS = {"prometheus": "prometheus.models.plinth.internal", "longhorn": "longhorn.models.plinth.internal"}


def spec(oidc=OIDC, hosts=HOSTS, environment="dev", **overrides):
    return platform_spec(SERVICES, {"metadata": {"environment": environment}, "network": GATEWAY,
                                    "rbac": {"platformAdminGroup": "ml-admins"},
                                    "identity": {**({"oidc": oidc} if oidc else {}),
                                                 "uiProxy": {"enabled": True, "hosts": hosts}}}, overrides)


@pytest.fixture(scope="module")
def proxied():
    return by_name(plan(spec(), "test"))


def test_one_proxy_per_ui_with_only_the_platform_admins(proxied):
    config = tomllib.loads(values(proxied, "ui-proxy-prometheus")["config"]["configFile"])
    assert config == {
        "provider": "oidc", "oidc_issuer_url": OIDC["issuer"], "scope": "openid email profile groups",
        "code_challenge_method": "S256", "oidc_email_claim": "email", "oidc_groups_claim": "groups",
        "email_domains": ["*"], "allowed_groups": ["ml-admins"],
        "upstreams": ["http://kube-prometheus-stack-prometheus.monitoring.svc:9090/"],
        "redirect_url": "https://prometheus.models.plinth.internal/oauth2/callback", "reverse_proxy": True,
        "skip_provider_button": True, "pass_user_headers": True, "cookie_name": "_plinth_prometheus",
        "cookie_secure": True, "cookie_expire": "8h", "silence_ping_logging": True}
    longhorn = tomllib.loads(values(proxied, "ui-proxy-longhorn")["config"]["configFile"])
    assert longhorn["upstreams"] == ["http://longhorn-frontend.longhorn-system.svc:80/"]
    assert "ui-proxy-alertmanager" not in proxied and "ui-proxy-hubble" not in proxied
    release = values(proxied, "ui-proxy-prometheus")
    assert release["fullnameOverride"] == "prometheus-sign-on"
    assert release["image"] == {"registry": "quay.io", "repository": "oauth2-proxy/oauth2-proxy", "tag": "v7.15.6"}
    assert (release["replicaCount"], release["podDisruptionBudget"]) == (1, {"enabled": False})


def test_the_secrets_come_from_the_stack_never_the_plan(proxied):
    secret = proxied["ui-proxy-secret"]
    assert secret.inputs["metadata"]["name"] == "ui-proxy" and secret.inputs["stringData"] == "(secret)"
    assert values(proxied, "ui-proxy-prometheus")["config"]["existingSecret"] == "ui-proxy"
    assert {s.key for s in needed_secrets(spec())} >= {"uiProxyClientSecret", "uiProxyCookieSecret"}


def test_each_ui_gets_its_own_listener_route_and_door(proxied):
    [gateway] = [r for r in proxied.values() if r.inputs.get("kind") == "Gateway"]
    listeners = {listener["name"]: listener["hostname"] for listener in gateway.inputs["spec"]["listeners"]}
    assert {k: v for k, v in listeners.items() if k.startswith("sign-on")} == {
        "sign-on-prometheus": HOSTS["prometheus"], "sign-on-longhorn": HOSTS["longhorn"]}
    routes = {r.inputs["spec"]["hostnames"][0]: r.inputs["spec"] for r in of_kind(proxied, "HTTPRoute", "sign-on")}
    assert routes[HOSTS["prometheus"]]["parentRefs"][0]["sectionName"] == "sign-on-prometheus"
    assert routes[HOSTS["prometheus"]]["rules"][0]["backendRefs"] == [{"name": "prometheus-sign-on", "port": 80}]
    # The UIs' namespaces admit the proxy on the UI's port only; the proxy's, the Gateway on 4180.
    [monitoring] = [r for r in of_kind(proxied, "NetworkPolicy", "monitoring") if r.name.endswith("from-sign-on")]
    assert monitoring.inputs["spec"]["ingress"][0]["ports"] == [{"port": 9090, "protocol": "TCP"}]
    [longhorn] = [r for r in of_kind(proxied, "NetworkPolicy", "longhorn-system") if r.name.endswith("from-sign-on")]
    assert longhorn.inputs["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert proxied["ui-proxy-allow-from-gateway"].inputs["spec"]["ingress"][0]["fromEntities"] == ["ingress"]


def test_a_private_ca_is_mounted_and_named_in_the_configuration():
    found = by_name(plan(spec({**OIDC, "certificateAuthority": CA}), "test"))
    release = values(found, "ui-proxy-prometheus")
    assert tomllib.loads(release["config"]["configFile"])["provider_ca_files"] == ["/etc/oauth2-proxy/oidc-ca/ca.crt"]
    assert release["extraVolumes"] == [{"name": "oidc-ca", "configMap": {"name": "ui-proxy-oidc-ca"}}]
    assert found["ui-proxy-oidc-ca"].inputs["data"] == {"ca.crt": CA}


def test_the_proxy_needs_the_provider_its_client_and_the_uis():
    def found(s):
        return [(v.loc, v.rule, v.message) for v in check_rules(s)]

    assert found(spec(oidc=None)) == [(("identity", "uiProxy", "enabled"), "ui-proxy-oidc",
                                       "the sign-on proxy signs people on through identity.oidc, which is not set")]
    assert found(spec({**OIDC, "clients": {"kubernetes": "ml-kubernetes"}})) == [
        (("identity", "uiProxy", "enabled"), "ui-proxy-oidc", "the sign-on proxy needs its client at the provider, "
         "and identity.oidc.clients.uiProxy is not set")]
    assert found(spec(hosts={"hubble": "hubble.models.plinth.internal"},
                      network={"cilium": {"hubble": False}})) == [
        (("identity", "uiProxy", "hosts", "hubble"), "ui-proxy-ui", "Hubble UI is not on")]
    assert [v.rule for v in check_rules(spec(hosts={"prometheus": "prometheus.elsewhere.internal"}))] == [
        "ui-proxy-hostname"]
    assert "ui-proxy-needs-gateway" in [v.rule for v in check_rules(spec(network={"cilium": {"gatewayApi": False}}))]


def test_the_proxied_routes_pass_the_ui_sign_on_policy(proxied):
    from plinth.governance.check import subjects
    from test_governance import violations

    assert violations(subjects(plan(spec(), "test")), "ui-sign-on") == []
