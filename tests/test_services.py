"""The platform services under Pulumi's mock runtime: the decisions each one makes, and their order."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from support import MINIMAL, ROOT
from plinth.engine.offline import plan
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.spec.yamltree import merge

SERVICES = {
    "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}}},
    "certificates": {"certManager": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}},
    "monitoring": {"enabled": True},
}


def platform(environment: str = "dev", **overrides):
    doc = merge(YAML(typ="safe").load(MINIMAL), {**SERVICES, "metadata": {"environment": environment}})
    result = plan(PlatformSpec.model_validate(merge(doc, overrides)), "test")
    # By name; where a service's component and its release share one, the release.
    return {r.name: r for r in sorted(result.resources, key=lambda r: r.custom)}


def values(resources, release: str) -> dict:
    return resources[release].inputs["values"]


@pytest.fixture(scope="module")
def dev():
    return platform("dev")


@pytest.fixture(scope="module")
def prod():
    return platform("prod")


def test_prometheus_and_alertmanager_are_ha_in_prod_only(dev, prod):
    for resources, prometheus, alertmanager in ((dev, 1, 1), (prod, 2, 3)):
        kps = values(resources, "monitoring")
        assert kps["prometheus"]["prometheusSpec"]["replicas"] == prometheus
        assert kps["alertmanager"]["alertmanagerSpec"]["replicas"] == alertmanager
        # Every ServiceMonitor, PodMonitor, rule and probe in the cluster, not only the chart's own.
        assert kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is False
        assert kps["crds"] == {"enabled": False}


def test_longhorn_replicas_follow_the_environment_unless_the_spec_says(dev, prod):
    assert values(dev, "longhorn")["persistence"]["defaultClassReplicaCount"] == 1
    assert values(prod, "longhorn")["defaultSettings"]["defaultReplicaCount"] == 3
    explicit = platform("prod", storage={"longhorn": {"replicaCount": 2}})
    assert values(explicit, "longhorn")["persistence"]["defaultClassReplicaCount"] == 2
    # Teardown: allowed outside prod; a prod uninstall is refused by Longhorn's hook until the spec says so.
    assert values(dev, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is True
    assert values(prod, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is False


def test_cilium_replaces_kube_proxy_with_gateway_api_and_cert_manager_tls(dev):
    cilium = values(dev, "cilium")
    assert cilium["kubeProxyReplacement"] is True and cilium["k8sServiceHost"] == "api.k8s.internal"
    assert cilium["gatewayAPI"] == {"enabled": True, "gatewayClass": {"create": "true"}}
    # No certificate generated at render time: the secrets come from cert-manager Certificates.
    assert cilium["hubble"]["tls"]["auto"] == {"enabled": False}
    certificates = [r for r in dev.values() if r.inputs.get("kind") == "Certificate"]
    assert {c.inputs["spec"]["secretName"] for c in certificates} >= {"hubble-server-certs",
                                                                     "hubble-relay-client-certs"}
    assert all(c.inputs["spec"]["issuerRef"]["name"] == "plinth-ca" for c in certificates
               if not c.inputs["spec"].get("isCA"))


def test_crds_are_installed_before_anything_that_uses_them(dev):
    crds = {dev["gateway-api-crds-v1-6-1"].urn, dev["prometheus-operator-crds"].urn}
    for release in ("cilium", "cert-manager", "longhorn", "monitoring"):
        assert crds <= set(dev[release].dependencies), release
    # The CNI before anything that runs pods; cert-manager before the certificates it issues.
    assert dev["cilium"].urn in dev["cert-manager"].dependencies
    assert dev["cert-manager"].urn in dev["gateway-gateway"].dependencies


def test_one_platform_gateway_with_a_cert_manager_certificate(dev):
    gateway = dev["gateway-gateway"].inputs
    assert gateway["metadata"]["namespace"] == "plinth-gateway"
    listener = gateway["spec"]["listeners"][0]
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "plinth-gateway-tls"}]


def test_grafana_takes_its_admin_password_from_a_stack_secret(dev):
    kps = values(dev, "monitoring")
    assert kps["grafana"]["admin"]["existingSecret"] == "grafana-admin"
    assert dev["monitoring-grafana-admin"].inputs["stringData"] == "(secret)"


def test_every_object_has_one_owner():
    resources = platform("prod").values()
    keys = [(r.inputs["kind"], r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
            for r in resources if isinstance(r.inputs.get("metadata"), dict) and "kind" in r.inputs]
    assert len(keys) == len(set(keys))


def test_a_user_value_for_an_owned_key_is_an_error_at_its_line(write):
    path = write("platform.yaml", MINIMAL + """\
network:
  cilium:
    enabled: true
    apiServer: {host: api.k8s.internal}
    values:
      kubeProxyReplacement: false
      bandwidthManager: {enabled: true}
  loadBalancer: {ranges: [172.31.255.240/29]}
certificates:
  certManager: {enabled: true}
""")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(path)
    assert [str(e) for e in caught.value.errors] == [
        "platform.yaml:22:7: network.cilium.values.kubeProxyReplacement: kubeProxyReplacement is set by Plinth "
        "(kubeProxyReplacement); a value here would be overridden [rule values-owned-key; fix: remove it; the "
        "spec field or module README says how Plinth sets kubeProxyReplacement]"]


def test_user_values_that_plinth_does_not_own_reach_the_release():
    resources = platform(network={"cilium": {"values": {"bandwidthManager": {"enabled": True}}}})
    assert values(resources, "cilium")["bandwidthManager"] == {"enabled": True}


def test_vault_is_raft_ha_with_tls_in_prod_and_never_awaited():
    spec = {"secrets": {"vault": {"enabled": True, "ha": True, "replicas": 3}}}
    prod = platform("prod", **spec)
    vault = values(prod, "vault")
    assert vault["server"]["ha"]["replicas"] == 3 and vault["server"]["ha"]["raft"]["enabled"] is True
    config = vault["server"]["ha"]["raft"]["config"]
    assert config.count("retry_join") == 3 and 'storage "raft"' in config and "tls_disable" not in config
    assert vault["global"]["tlsDisable"] is False
    assert prod["vault-tls"].inputs["spec"]["secretName"] == "vault-server-tls"
    assert prod["vault-tls"].dependencies and prod["vault-tls"].urn in prod["vault"].dependencies
    # A sealed Vault never becomes ready: the release does not wait for it.
    assert prod["vault"].inputs["skipAwait"] is True
    dev = values(platform("dev", secrets={"vault": {"enabled": True}}), "vault")
    assert dev["server"]["standalone"]["enabled"] is True and dev["server"]["ha"] == {"enabled": False}


def test_vault_auto_unseal_stanzas():
    unseal = {"type": "gcpckms", "key": "projects/p1/locations/europe-west4/keyRings/r/cryptoKeys/vault"}
    vault = values(platform("dev", secrets={"vault": {"enabled": True, "autoUnseal": unseal}}), "vault")
    config = vault["server"]["standalone"]["config"]
    assert 'seal "gcpckms"' in config and 'project = "p1"' in config and 'crypto_key = "vault"' in config


def test_platform_namespaces_are_default_deny_with_only_the_allows_each_service_needs():
    resources = platform("dev", secrets={"vault": {"enabled": True}}, teams=[{"name": "fraud"}])
    policies: dict[str, dict[str, tuple[str, dict]]] = {}
    for r in resources.values():
        if r.type.endswith((":NetworkPolicy", ":CiliumNetworkPolicy")):
            meta = r.inputs["metadata"]
            policies.setdefault(meta["namespace"], {})[meta["name"]] = (r.type.rsplit(":", 1)[-1], r.inputs["spec"])
    for ns in ("cert-manager", "longhorn-system", "vault", "vault-secrets-operator", "monitoring"):
        assert policies[ns]["default-deny-ingress"] == ("NetworkPolicy", {"podSelector": {},
                                                                          "policyTypes": ["Ingress"]}), ns
    # Cilium is the CNI here: the API server reaches webhooks as the kube-apiserver entity, on that port only.
    assert policies["cert-manager"]["allow-from-apiserver"] == ("CiliumNetworkPolicy", {
        "endpointSelector": {}, "ingress": [{"fromEntities": ["kube-apiserver"],
                                              "toPorts": [{"ports": [{"port": "10250", "protocol": "TCP"}]}]}]})
    # Vault: teams and the secrets operator on 8200, Prometheus everywhere, nothing else.
    assert set(policies["vault"]) == {"default-deny-ingress", "allow-same-namespace", "allow-from-apiserver",
                                      "allow-from-secrets-operator", "allow-from-monitoring", "allow-from-teams"}
    kind, teams = policies["vault"]["allow-from-teams"]
    assert teams["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8200}]
    assert teams["ingress"][0]["from"][0]["namespaceSelector"]["matchLabels"]["app.kubernetes.io/component"] \
        == "tenancy"
    assert "allow-from-monitoring" not in policies["monitoring"]  # its own pods: allow-same-namespace
    # The team side: the Gateway's proxies by Cilium identity, Vault by namespace and port.
    assert policies["fraud"]["allow-from-gateway"][0] == "CiliumNetworkPolicy"
    assert "allow-to-vault" in policies["fraud"]


def test_drift_alerts_route_to_the_retraining_receiver_only():
    resources = platform("dev", monitoring={"drift": {"enabled": True, "receiver": "retrain"}, "alertmanager": {
        "receivers": [{"name": "retrain", "type": "webhook", "severities": ["critical"]},
                      {"name": "oncall", "type": "webhook", "severities": ["critical", "warning"]}]}})
    routes = values(resources, "monitoring")["alertmanager"]["config"]["route"]["routes"]
    assert routes[0] == {"receiver": "retrain", "matchers": ['alert_kind="drift"'],
                         "group_by": ["alertname", "namespace", "model"], "repeat_interval": "24h",
                         "continue": False}
    assert [r["receiver"] for r in routes[1:]] == ["retrain", "oncall"]


def _policies(resources) -> dict[str, dict[str, tuple[str, dict]]]:
    """Network policies by namespace and name: (kind, spec)."""
    found: dict[str, dict[str, tuple[str, dict]]] = {}
    for r in resources.values():
        if r.type.endswith((":NetworkPolicy", ":CiliumNetworkPolicy")):
            meta = r.inputs["metadata"]
            found.setdefault(meta["namespace"], {})[meta["name"]] = (r.type.rsplit(":", 1)[-1], r.inputs["spec"])
    return found


AIRGAP = {"enabled": True, "mirror": {"registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts",
                                      "cidrs": ["10.20.0.0/24", "10.10.0.10/32"]}}


def test_airgapped_platform_namespaces_reach_the_api_server_by_cilium_identity():
    # Cilium never matches cluster nodes by ipBlock (policy-cidr-match-mode empty), and the `kubernetes`
    # Service's backends are usually node addresses: the ipBlocks of airgap.mirror.cidrs alone cut every
    # operator off from the API server.
    resources = platform("dev", secrets={"vault": {"enabled": True}}, airgap=AIRGAP)
    policies = _policies(resources)
    airgapped = sorted(ns for ns, named in policies.items() if "airgap-egress" in named)
    assert airgapped == ["cert-manager", "longhorn-system", "monitoring", "vault", "vault-secrets-operator"]
    for ns in airgapped:
        assert policies[ns]["airgap-allow-to-apiserver"] == ("CiliumNetworkPolicy", {
            "endpointSelector": {}, "egress": [{"toEntities": ["kube-apiserver"]}]}), ns
    # Prometheus scrapes kubelets, node-exporter, the control plane and Cilium on the nodes' own addresses.
    ports = [{"port": str(p), "protocol": "TCP"} for p in (2381, 9100, 9962, 9963, 9964, 10250, 10257, 10259)]
    for entity in ("host", "remote-node"):
        assert policies["monitoring"][f"airgap-allow-to-{entity}"] == ("CiliumNetworkPolicy", {
            "endpointSelector": {}, "egress": [{"toEntities": [entity], "toPorts": [{"ports": ports}]}]})
        assert f"airgap-allow-to-{entity}" not in policies["vault"]
    # The policy-cidr-match-mode stays the chart's (empty): team ipBlocks never open node addresses.
    assert "policyCIDRMatchMode" not in values(resources, "cilium")


def test_cilium_pod_pool_comes_from_the_spec():
    assert values(platform("dev"), "cilium")["ipam"] == {
        "operator": {"clusterPoolIPv4PodCIDRList": ["100.64.0.0/14"]}}
    chosen = platform("dev", network={"cilium": {"podCidr": "172.20.0.0/16"}})
    assert values(chosen, "cilium")["ipam"]["operator"]["clusterPoolIPv4PodCIDRList"] == ["172.20.0.0/16"]
    # The pool is an owned value: the chart's key in `values` is refused, never silently overridden.
    owned = merge(YAML(typ="safe").load(MINIMAL), {**SERVICES, "network": {"loadBalancer": {"mode": "external"}, "cilium": {
        **SERVICES["network"]["cilium"], "values": {"ipam": {"operator": {"clusterPoolIPv4PodCIDRList": ["10.0.0.0/8"]}}}}}})
    assert [(v.loc, v.rule) for v in check_rules(PlatformSpec.model_validate(owned))] == [
        (("network", "cilium", "values", "ipam", "operator", "clusterPoolIPv4PodCIDRList"), "values-owned-key")]


@pytest.fixture(scope="module")
def regulated():
    result = plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test")
    return {r.name: r for r in sorted(result.resources, key=lambda r: r.custom)}


def test_platform_host_names_have_listeners_only_their_service_attaches_to(regulated):
    teams = {"from": "Selector", "selector": {"matchLabels": {"app.kubernetes.io/component": "tenancy",
                                                              "app.kubernetes.io/instance": "regulated",
                                                              "app.kubernetes.io/managed-by": "plinth"}}}
    listeners = {entry["name"]: (entry["hostname"], entry["allowedRoutes"]["namespaces"])
                 for entry in regulated["gateway-gateway"].inputs["spec"]["listeners"]}
    assert listeners == {
        "harbor": ("registry.models.corp.internal",
                   {"from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": "harbor"}}}),
        "python-index": ("pypi.models.corp.internal", {"from": "Selector", "selector": {
            "matchLabels": {"kubernetes.io/metadata.name": "python-index"}}}),
        "serving": ("serving.models.corp.internal", teams),
        "https": ("*.models.corp.internal", teams),
    }
    sections = {(r.inputs["metadata"]["namespace"], r.inputs["spec"]["parentRefs"][0]["sectionName"])
                for r in regulated.values() if r.inputs.get("kind") == "HTTPRoute"}
    assert sections == {("harbor", "harbor"), ("python-index", "python-index"), ("fraud", "serving"),
                        ("credit", "serving")}


def test_the_gateway_reaches_team_pods_on_the_model_ports_only(regulated):
    policies = _policies(regulated)
    for team in ("fraud", "credit"):
        assert policies[team]["allow-from-gateway"] == ("CiliumNetworkPolicy", {"endpointSelector": {}, "ingress": [
            {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": "3000", "protocol": "TCP"},
                                                                 {"port": "8000", "protocol": "TCP"}]}]}]})


def test_team_routes_are_checked_at_admission(regulated):
    policy = regulated["gateway-team-routes"].inputs
    assert policy["metadata"]["name"] == "plinth-regulated-team-routes"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["namespaceSelector"]["matchLabels"]["app.kubernetes.io/component"] == "tenancy"
    assert spec["matchConstraints"]["resourceRules"] == [{
        "apiGroups": ["gateway.networking.k8s.io"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
        "resources": ["httproutes"]}]
    assert [v["message"] for v in spec["validations"]] == [
        "a team route names its host names (without them it answers for every host of its listeners)",
        "platform host names (pypi.models.corp.internal, registry.models.corp.internal) are reserved to platform "
        "routes",
        "on the serving host serving.models.corp.internal a team routes only paths under /<team>/",
        "a team route's host names are the serving host and the team's own <team>.models.corp.internal",
    ]
    bindings = [r for r in regulated.values() if r.inputs.get("kind") == "ValidatingAdmissionPolicyBinding"
                and r.inputs["spec"]["policyName"].endswith("-team-routes")]
    assert [b.inputs["spec"] for b in bindings] == [
        {"policyName": "plinth-regulated-team-routes", "validationActions": ["Deny"]}]


def test_vault_metrics_reach_prometheus_only():
    resources = platform("dev", secrets={"vault": {"enabled": True}}, teams=[{"name": "fraud"}])
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
    policies = _policies(resources)["vault"]
    assert policies["allow-from-teams"][1]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8200}]
    assert "ports" not in policies["allow-from-monitoring"][1]["ingress"][0]


def test_only_node_exporter_runs_in_a_privileged_namespace_of_monitoring(dev):
    levels = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"]
              for r in dev.values() if r.inputs.get("kind") == "Namespace"}
    # The rest of kube-prometheus-stack passes `restricted` (tests/charts: the real chart's pod templates).
    assert (levels["monitoring"], levels["node-exporter"]) == ("restricted", "privileged")
    assert values(dev, "monitoring")["prometheus-node-exporter"] == {"namespaceOverride": "node-exporter"}
    assert dev["monitoring-node-exporter-namespace"].urn in dev["monitoring"].dependencies


def test_the_gateway_address_on_an_existing_cluster_comes_from_the_spec_ranges():
    resources = platform(network={"loadBalancer": {"ranges": ["172.31.255.240/29", "172.31.255.250-172.31.255.252"],
                                                   "interfaces": ["^bond0$"]}})
    gateway_service = {"matchLabels": {"plinth.dev/gateway": "plinth"}}
    pool = resources["gateway-address-pool"].inputs
    assert (pool["apiVersion"], pool["kind"]) == ("cilium.io/v2", "CiliumLoadBalancerIPPool")
    assert pool["spec"] == {"blocks": [{"cidr": "172.31.255.240/29"},
                                       {"start": "172.31.255.250", "stop": "172.31.255.252"}],
                            "serviceSelector": gateway_service}
    l2 = resources["gateway-l2-announcement"].inputs
    assert (l2["apiVersion"], l2["kind"]) == ("cilium.io/v2alpha1", "CiliumL2AnnouncementPolicy")
    assert l2["spec"] == {"serviceSelector": gateway_service, "loadBalancerIPs": True, "interfaces": ["^bond0$"],
                          "nodeSelector": {"matchExpressions": [
                              {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]}}
    # Cilium copies the Gateway's infrastructure labels onto its LoadBalancer Service: the pool selects that.
    assert resources["gateway-gateway"].inputs["spec"]["infrastructure"] == {"labels": {"plinth.dev/gateway": "plinth"}}
    cilium = values(resources, "cilium")
    assert cilium["l2announcements"] == {"enabled": True}
    assert cilium["k8sClientRateLimit"] == {"qps": 20, "burst": 40}
    # The opt-out: something else gives the address; Plinth announces nothing.
    external = platform(network={"loadBalancer": {"mode": "external"}})
    assert "gateway-address-pool" not in external and "gateway-l2-announcement" not in external
    assert values(external, "cilium")["l2announcements"] == {"enabled": False}
    assert "k8sClientRateLimit" not in values(external, "cilium")


def test_an_acme_issuer_gets_the_gateways_http_listener_and_a_redirect_to_https(dev):
    from plinth.vocabulary import HTTP_LISTENER, TEAM_LISTENER as HTTPS_LISTENER

    acme = platform(certificates={"certManager": {"enabled": True, "issuer": {"type": "acme", "acme": {
        "server": "https://acme.corp.example/directory", "email": "platform@corp.example"}}}})
    listeners = acme["gateway-gateway"].inputs["spec"]["listeners"]
    assert [(lst["name"], lst["protocol"], lst["port"]) for lst in listeners] == [
        (HTTPS_LISTENER, "HTTPS", 443), (HTTP_LISTENER, "HTTP", 80)]
    [solver] = acme["cert-manager-issuer"].inputs["spec"]["acme"]["solvers"]
    assert solver["http01"]["gatewayHTTPRoute"]["parentRefs"] == [{
        "group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "plinth", "namespace": "plinth-gateway",
        "sectionName": HTTP_LISTENER}]
    redirect = acme["gateway-http-redirect"].inputs["spec"]
    assert redirect["parentRefs"] == solver["http01"]["gatewayHTTPRoute"]["parentRefs"]
    assert redirect["rules"] == [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "filters": [
        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}]
    # Without ACME, nothing listens on port 80.
    assert [lst["name"] for lst in dev["gateway-gateway"].inputs["spec"]["listeners"]] == [HTTPS_LISTENER]
    assert "gateway-http-redirect" not in dev
