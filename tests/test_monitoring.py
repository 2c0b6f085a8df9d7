"""Monitoring (kube-prometheus-stack) under Pulumi's mock runtime: HA by environment, Grafana's admin secret,
drift alert routing, node-exporter's namespace."""

from __future__ import annotations

import pytest

from plinth.engine.offline import plan
from plinth.program import needed_secrets
from plinth.spec.rules import check_rules
from support import SERVICES, by_name, of_kind, platform, platform_spec, values


def test_prometheus_and_alertmanager_are_ha_in_prod_only(dev, prod):
    for resources, prometheus, alertmanager in ((dev, 1, 1), (prod, 2, 3)):
        kps = values(resources, "monitoring")
        assert kps["prometheus"]["prometheusSpec"]["replicas"] == prometheus
        assert kps["alertmanager"]["alertmanagerSpec"]["replicas"] == alertmanager
        # Every ServiceMonitor, PodMonitor, rule and probe in the cluster, not only the chart's own.
        assert kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
        assert kps["crds"] == {"enabled": False}


def test_grafana_takes_its_admin_password_from_a_stack_secret(dev):
    kps = values(dev, "monitoring")
    assert kps["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert dev["monitoring-grafana-admin"].inputs["stringData"] == "(secret)"


def test_drift_alerts_route_to_the_retraining_receiver_only():
    resources = platform("dev", monitoring={"drift": {"enabled": True, "receiver": "retrain"}, "alertmanager": {
        "receivers": [{"name": "retrain", "type": "webhook", "severities": ["critical"]},
                      {"name": "oncall", "type": "webhook", "severities": ["critical", "warning"]}]}})
    routes = values(resources, "monitoring")["alertmanager"]["config"]["route"]["routes"]
    assert routes[0] == {"receiver": "retrain", "matchers": ['alert_kind="drift"'],
                         "group_by": ["alertname", "namespace", "model"], "repeat_interval": "24h",
                         "continue": False}
    assert [r["receiver"] for r in routes[1:]] == ["retrain", "oncall"]


def test_a_receiver_without_severities_gets_no_severity_route():
    """`severity=~""` would send it every alert that has no severity label."""
    resources = platform("dev", monitoring={"drift": {"enabled": True, "receiver": "retrain"}, "alertmanager": {
        "receivers": [{"name": "retrain", "type": "webhook", "severities": []},
                      {"name": "oncall", "type": "webhook", "severities": ["critical"]}]}})
    routes = values(resources, "monitoring")["alertmanager"]["config"]["route"]["routes"]
    assert [(r["receiver"], r["matchers"]) for r in routes] == [("retrain", ['alert_kind="drift"']),
                                                                 ("oncall", ['severity=~"critical"'])]


def test_only_node_exporter_runs_in_a_privileged_namespace_of_monitoring(dev):
    levels = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for r in dev.values() if r.inputs.get("kind") == "Namespace"}
    # The rest of kube-prometheus-stack passes `restricted` (tests/charts: the real chart's pod templates).
    assert (levels["monitoring"], levels["node-exporter"]) == ("restricted", "privileged")
    assert values(dev, "monitoring")["prometheus-node-exporter"] == {"namespaceOverride": "node-exporter"}
    assert dev["monitoring-node-exporter-namespace"].urn in dev["monitoring"].dependencies


# --- Grafana on the Gateway, signed on through identity.oidc ----------------------------------------------

GATEWAY = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
           "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
GRAFANA_HOST = "grafana.models.plinth.internal"
ENDPOINTS = {"authorization": "https://login.corp.internal/realms/ml/protocol/openid-connect/auth",
             "token": "https://login.corp.internal/realms/ml/protocol/openid-connect/token"}
OIDC = {"issuer": "https://login.corp.internal/realms/ml", "endpoints": ENDPOINTS,
        "clients": {"kubernetes": "ml-kubernetes", "grafana": "ml-grafana"}}
TEAMS = {"rbac": {"platformAdminGroup": "ml-admins"},
         "teams": [{"name": "fraud", "groups": {"mlEngineer": ["fraud-eng"], "viewer": ["auditors"]}},
                   {"name": "risk", "groups": {"dataScientist": ["risk-ds"], "mlEngineer": ["o'brien"]}}]}


def grafana_spec(oidc=OIDC, hostname=GRAFANA_HOST, environment="dev"):
    return platform_spec(SERVICES, TEAMS, {"metadata": {"environment": environment}, "network": GATEWAY,
                                           "monitoring": {"grafana": {"hostname": hostname}},
                                           **({"identity": {"oidc": oidc}} if oidc else {})})


@pytest.fixture(scope="module")
def signed_on():
    return by_name(plan(grafana_spec(), "test"))


def test_grafana_signs_on_through_the_provider_with_roles_from_groups(signed_on):
    grafana = values(signed_on, "monitoring")["grafana"]
    oauth = grafana["grafana.ini"]["auth.generic_oauth"]
    assert {k: oauth[k] for k in ("enabled", "client_id", "auth_url", "token_url", "use_pkce",
                                  "role_attribute_strict", "groups_attribute_path", "login_attribute_path")} == {
        "enabled": True, "client_id": "ml-grafana", "auth_url": ENDPOINTS["authorization"],
        "token_url": ENDPOINTS["token"], "use_pkce": True, "role_attribute_strict": True,
        "groups_attribute_path": '"groups"', "login_attribute_path": '"email"'}
    assert oauth["role_attribute_path"] == (
        "(contains(\"groups\"[*], 'ml-admins')) && 'Admin' || "
        "(contains(\"groups\"[*], 'fraud-eng') || contains(\"groups\"[*], 'o\\'brien')) && 'Editor' || "
        "(contains(\"groups\"[*], 'auditors') || contains(\"groups\"[*], 'risk-ds')) && 'Viewer'")
    assert grafana["grafana.ini"]["server"] == {"domain": GRAFANA_HOST, "root_url": f"https://{GRAFANA_HOST}/"}
    # The client secret: from the stack, by env, never in values; the local admin stays (break-glass).
    assert "client_secret" not in oauth
    assert grafana["envValueFrom"] == {"GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET": {
        "secretKeyRef": {"name": "grafana-oidc", "key": "client-secret"}}}
    secret = signed_on["monitoring-grafana-oidc"]
    assert secret.inputs["stringData"] == "(secret)"
    assert secret.inputs["metadata"]["annotations"]["plinth.dev/secret-source"] == "plinth:grafanaOidcClientSecret"
    assert grafana["admin"]["existingSecret"] == "grafana-admin"
    assert "tls_client_ca" not in oauth and "extraConfigmapMounts" not in grafana


def test_a_role_path_grafana_evaluates_as_the_spec_means():
    import jmespath

    from plinth.modules.monitoring import grafana_role_path

    spec = grafana_spec()
    path = grafana_role_path("groups", "ml-admins", spec.teams)
    for groups, role in ((["ml-admins", "auditors"], "Admin"), (["o'brien"], "Editor"), (["risk-ds"], "Viewer"),
                         (["auditors", "fraud-eng"], "Editor"), (["others"], False), ([], False)):
        assert jmespath.search(path, {"groups": groups}) == role, groups


def test_grafana_routes_on_its_own_listener_and_admits_the_gateway(signed_on):
    [route] = of_kind(signed_on, "HTTPRoute", "monitoring")
    assert route.inputs["spec"]["parentRefs"][0]["sectionName"] == "monitoring"
    assert route.inputs["spec"]["hostnames"] == [GRAFANA_HOST]
    assert route.inputs["spec"]["rules"][0]["backendRefs"] == [{"name": "kube-prometheus-stack-grafana", "port": 80}]
    [allow] = [r for r in signed_on.values() if r.name == "monitoring-allow-from-gateway"]
    assert allow.inputs["spec"]["ingress"][0]["fromEntities"] == ["ingress"]
    gateway = [r for r in signed_on.values() if r.inputs.get("kind") == "Gateway"][0]
    assert {"name": "monitoring", "hostname": GRAFANA_HOST} in [
        {k: listener[k] for k in ("name", "hostname")} for listener in gateway.inputs["spec"]["listeners"]]


def test_a_private_ca_is_trusted_from_a_config_map():
    from test_identity import CA

    resources = by_name(plan(grafana_spec({**OIDC, "certificateAuthority": CA}), "test"))
    grafana = values(resources, "monitoring")["grafana"]
    assert grafana["grafana.ini"]["auth.generic_oauth"]["tls_client_ca"] == "/etc/grafana/oidc-ca/ca.crt"
    assert grafana["extraConfigmapMounts"] == [{"name": "oidc-ca", "configMap": "grafana-oidc-ca",
                                                "mountPath": "/etc/grafana/oidc-ca", "readOnly": True}]
    assert resources["monitoring-grafana-oidc-ca"].inputs["data"] == {"ca.crt": CA}


def test_in_prod_the_database_and_the_sign_on_share_grafana_ini_and_env(tmp_path):
    from support import PROD_BACKUPS

    spec = platform_spec(SERVICES, TEAMS, PROD_BACKUPS, {"metadata": {"environment": "prod"}, "network": GATEWAY,
                                                         "monitoring": {"grafana": {"hostname": GRAFANA_HOST}},
                                                         "identity": {"oidc": OIDC}})
    grafana = values(by_name(plan(spec, "test")), "monitoring")["grafana"]
    assert set(grafana["grafana.ini"]) == {"database", "server", "auth.generic_oauth"}
    assert set(grafana["envValueFrom"]) == {"GF_DATABASE_USER", "GF_DATABASE_PASSWORD",
                                            "GF_AUTH_GENERIC_OAUTH_CLIENT_SECRET"}


def test_the_client_secret_is_needed_only_when_grafana_signs_on():
    assert "grafanaOidcClientSecret" in [s.key for s in needed_secrets(grafana_spec())]
    assert "grafanaOidcClientSecret" not in [s.key for s in needed_secrets(grafana_spec(oidc=None))]


def test_grafana_on_the_gateway_without_sign_on_is_refused_when_there_is_a_provider():
    clients = {"kubernetes": "ml-kubernetes"}
    found = [(v.loc, v.rule, v.message, v.fix) for v in check_rules(grafana_spec({**OIDC, "clients": clients}))]
    assert found == [(("monitoring", "grafana", "hostname"), "ui-sign-on",
                      "Grafana on the platform Gateway without sign-on, while identity.oidc is set",
                      "set identity.oidc.clients.grafana (and the stack secret plinth:grafanaOidcClientSecret)")]
    # Without a provider, Grafana's own login (the local admin) is all there is: allowed outside prod.
    assert check_rules(grafana_spec(oidc=None)) == []


def test_grafana_sign_on_needs_its_host_and_the_providers_endpoints():
    no_endpoints = {k: v for k, v in OIDC.items() if k != "endpoints"}
    found = [(v.loc, v.rule, v.message, v.fix) for v in check_rules(grafana_spec(no_endpoints, hostname=None))]
    assert found == [
        (("identity", "oidc", "clients", "grafana"), "grafana-sign-on-host", "Grafana signs on through the provider "
         "at its own host name, and monitoring.grafana.hostname is not set",
         "enable monitoring and set monitoring.grafana.hostname, or remove clients.grafana"),
        (("identity", "oidc", "clients", "grafana"), "grafana-sign-on-endpoints", "Grafana reads no discovery "
         "document, and identity.oidc.endpoints is not set", "set identity.oidc.endpoints.authorization and .token "
         "as the provider's <issuer>/.well-known/openid-configuration lists them")]


def test_grafana_host_needs_the_gateway_and_a_name_its_listener_serves():
    unrouted = platform_spec(SERVICES, {"network": {"cilium": {"enabled": False}},
                                        "monitoring": {"grafana": {"hostname": GRAFANA_HOST}}})
    assert "grafana-needs-gateway" in [v.rule for v in check_rules(unrouted)]
    outside = [(v.loc, v.rule) for v in check_rules(grafana_spec(hostname="grafana.elsewhere.internal"))]
    assert outside == [(("monitoring", "grafana", "hostname"), "grafana-hostname")]


def test_an_incomplete_sign_on_is_reported_not_a_traceback():
    """Without the Gateway (or the endpoints) Grafana's sign-on values are not computed: the rules say why."""
    spec = platform_spec(SERVICES, TEAMS, {"network": {"cilium": {"enabled": False}}, "identity": {"oidc": OIDC},
                                           "monitoring": {"grafana": {"hostname": GRAFANA_HOST}}})
    assert [v.rule for v in check_rules(spec)] == ["grafana-needs-gateway"]
