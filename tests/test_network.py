"""The network (Cilium, the platform Gateway) under Pulumi's mock runtime: Cilium's values, the Gateway's
listeners, certificate and address, team routes checked at admission, air-gapped egress by Cilium identity."""

from __future__ import annotations

import pytest

from support import ROOT, SERVICES, by_name, network_policies, platform, spec_document, values
from plinth.engine.offline import plan
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules


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


def test_one_platform_gateway_with_a_cert_manager_certificate(dev):
    gateway = dev["gateway-gateway"].inputs
    assert gateway["metadata"]["namespace"] == "plinth-gateway"
    listener = gateway["spec"]["listeners"][0]
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "plinth-gateway-tls"}]


AIRGAP = {"enabled": True, "mirror": {"registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts",
                                      "cidrs": ["10.20.0.0/24", "10.10.0.10/32"]}}


def test_airgapped_platform_namespaces_reach_the_api_server_by_cilium_identity():
    # Cilium never matches cluster nodes by ipBlock (policy-cidr-match-mode empty), and the `kubernetes`
    # Service's backends are usually node addresses: the ipBlocks of airgap.mirror.cidrs alone cut every
    # operator off from the API server.
    resources = platform("dev", secrets={"vault": {"enabled": True}}, airgap=AIRGAP)
    policies = network_policies(resources)
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
    owned = spec_document({**SERVICES, "network": {"loadBalancer": {"mode": "external"}, "cilium": {
        **SERVICES["network"]["cilium"], "values": {"ipam": {"operator": {"clusterPoolIPv4PodCIDRList": ["10.0.0.0/8"]}}}}}})
    assert [(v.loc, v.rule) for v in check_rules(PlatformSpec.model_validate(owned))] == [
        (("network", "cilium", "values", "ipam", "operator", "clusterPoolIPv4PodCIDRList"), "values-owned-key")]


@pytest.fixture(scope="module")
def regulated():
    return by_name(plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))


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
        "jupyterhub": ("notebooks.models.corp.internal", {"from": "Selector", "selector": {
            "matchLabels": {"kubernetes.io/metadata.name": "jupyterhub"}}}),
        "mlflow": ("mlflow.models.corp.internal", {"from": "Selector", "selector": {
            "matchLabels": {"kubernetes.io/metadata.name": "mlflow"}}}),
        "monitoring": ("grafana.models.corp.internal", {"from": "Selector", "selector": {
            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}),
        **{f"sign-on-{ui}": (f"{ui}.models.corp.internal", {"from": "Selector", "selector": {
            "matchLabels": {"kubernetes.io/metadata.name": "sign-on"}}})
           for ui in ("prometheus", "alertmanager", "hubble", "longhorn")},
        "serving": ("serving.models.corp.internal", teams),
        "https": ("*.models.corp.internal", teams),
    }
    sections = {(r.inputs["metadata"]["namespace"], r.inputs["spec"]["parentRefs"][0]["sectionName"])
                for r in regulated.values() if r.inputs.get("kind") == "HTTPRoute"}
    assert sections == {("harbor", "harbor"), ("python-index", "python-index"), ("mlflow", "mlflow"),
                        ("jupyterhub", "jupyterhub"),
                        ("monitoring", "monitoring"), ("fraud", "serving"), ("credit", "serving"),
                        *{("sign-on", f"sign-on-{ui}") for ui in ("prometheus", "alertmanager", "hubble", "longhorn")}}


def test_the_gateway_reaches_team_pods_on_the_model_ports_only(regulated):
    policies = network_policies(regulated)
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
        "platform host names (alertmanager.models.corp.internal, grafana.models.corp.internal, "
        "hubble.models.corp.internal, longhorn.models.corp.internal, mlflow.models.corp.internal, "
        "notebooks.models.corp.internal, prometheus.models.corp.internal, pypi.models.corp.internal, "
        "registry.models.corp.internal) are reserved to platform routes",
        "on the serving host serving.models.corp.internal a team routes only paths under /<team>/",
        "a team route's host names are the serving host and the team's own <team>.models.corp.internal",
    ]
    bindings = [r for r in regulated.values() if r.inputs.get("kind") == "ValidatingAdmissionPolicyBinding"
                and r.inputs["spec"]["policyName"].endswith("-team-routes")]
    assert [b.inputs["spec"] for b in bindings] == [
        {"policyName": "plinth-regulated-team-routes", "validationActions": ["Deny"]}]


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


def test_a_public_cloud_gateway_says_why():
    from plinth.modules.network import infrastructure
    from plinth.spec.models import LoadBalancer

    public = LoadBalancer(public=True, public_reason="partner scoring API")
    assert infrastructure(public, "eks")["infrastructure"]["annotations"] == {
        "plinth.dev/public-load-balancer-reason": "partner scoring API",
        "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}
    assert infrastructure(public, "gke")["infrastructure"]["annotations"] == {
        "plinth.dev/public-load-balancer-reason": "partner scoring API"}
