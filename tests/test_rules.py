"""Cross-field rules as pure functions over a spec (no engine, no files)."""

from __future__ import annotations


from support import platform_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules


def spec(**overrides) -> PlatformSpec:
    return platform_spec(overrides)


def violations(**overrides) -> list[tuple[tuple, str]]:
    return [(v.loc, v.rule) for v in check_rules(spec(**overrides))]


MODEL = {"name": "scorer", "team": "fraud", "runtime": "bentoml", "image": "registry.example/scorer",
         "stable": {"version": "1", "replicas": 1}}


def test_minimal_spec_has_no_violations():
    assert violations() == []


def test_gpu_quota_must_fit_every_replica_including_canary():
    model = {**MODEL, "gpu": 1, "stable": {"version": "1", "replicas": 2}, "canary": {"version": "2", "replicas": 1}}
    found = violations(serving={"models": [model]}, gpu={"operator": {"enabled": True}},
                       network={"cilium": {"enabled": True}})
    assert (("teams", 0, "quota", "gpu"), "gpu-quota-fits") in found  # 3 GPUs needed, quota 2


def test_canary_needs_gateway_and_a_new_version():
    found = violations(serving={"models": [{**MODEL, "canary": {"version": "1", "weight": 20}}]})
    assert (("serving", "models", 0, "canary"), "canary-needs-gateway") in found
    assert (("serving", "models", 0, "canary", "version"), "canary-differs") in found


def test_runtime_specific_fields():
    triton = {"name": "t", "team": "fraud", "runtime": "triton", "stable": {"version": "1"}}
    bento = {**MODEL, "name": "b", "image": None}
    found = violations(serving={"models": [triton, bento]})
    assert (("serving", "models", 0, "modelRepository"), "triton-model-repository") in found
    assert (("serving", "models", 1, "image"), "bentoml-image") in found


def test_airgap_needs_a_mirror_and_mirror_only_images():
    assert (("airgap", "mirror"), "airgap-needs-mirror") in violations(airgap={"enabled": True})
    found = violations(airgap={"enabled": True, "mirror": {"registry": "harbor.corp/mirror", "charts": "oci://x"}},
                       serving={"models": [MODEL]})
    assert (("serving", "models", 0, "image"), "airgap-mirror-only") in found


def test_reserved_namespaces_and_gpu_node_pools():
    found = violations(teams=[{"name": "kube-system"}])
    assert (("teams", 1, "name"), "reserved-namespace") in found
    eks = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
           "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
           "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
    found = violations(target=eks, serving={"models": [{**MODEL, "gpu": 1}]})
    assert (("target", "nodePools"), "gpu-node-pool") in found


def test_gpu_sharing_and_drift():
    found = violations(gpu={"operator": {"sharing": {"type": "mig"}}}, monitoring={"drift": {"enabled": True}})
    assert (("gpu", "operator", "sharing", "migProfile"), "mig-profile") in found
    assert (("monitoring", "drift", "enabled"), "drift-needs-monitoring") in found


def test_test_cluster_options_are_refused_in_prod():
    found = violations(metadata={"environment": "prod"}, testing={"skipAwait": True, "awaitTimeoutSeconds": 20})
    assert (("testing", "skipAwait"), "prod-no-test-options") in found
    assert (("testing", "awaitTimeoutSeconds"), "prod-no-test-options") in found
    assert not [v for v in violations(metadata={"environment": "staging"}, testing={"awaitTimeoutSeconds": 20})
                if v[1] == "prod-no-test-options"]


def test_every_violation_names_a_fix():
    everything = spec(metadata={"environment": "prod"}, secrets={"vault": {"enabled": True, "autoUnseal": {
        "type": "awskms"}}}, testing={"skipAwait": True}, airgap={"enabled": True})
    found = check_rules(everything)
    assert {v.rule for v in found} >= {"prod-vault-ha", "prod-no-test-options", "unseal-key", "airgap-needs-mirror"}
    assert all(v.fix and v.message for v in found)


CILIUM = {"enabled": True, "kubeProxyReplacement": False, "gatewayApi": False, "hubble": False}
MIRROR = {"registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts", "cidrs": ["10.20.0.0/24", "10.10.0.10/32"]}


def test_cilium_pod_pool_overlapping_a_declared_network_is_refused():
    triton = {"name": "t", "team": "fraud", "runtime": "triton", "modelRepository": "s3://models/t",
              "repositoryCidrs": ["192.168.4.0/24"], "stable": {"version": "1"}}
    # The chart's own default pool (10.0.0.0/8) holds the mirror and the API server.
    found = [(v.loc, v.rule, v.message) for v in check_rules(spec(
        network={"cilium": {**CILIUM, "podCidr": "10.0.0.0/8",
                            "apiServer": {"host": "10.10.0.10"}}},
        airgap={"enabled": True, "mirror": MIRROR}))]
    assert found == [
        (("airgap", "mirror", "cidrs", 0), "cilium-pod-cidr-overlap", "the mirror network 10.20.0.0/24 overlaps "
         "Cilium's pod address pool network.cilium.podCidr 10.0.0.0/8: its traffic would stay inside the cluster"),
        (("airgap", "mirror", "cidrs", 1), "cilium-pod-cidr-overlap", "the mirror network 10.10.0.10/32 overlaps "
         "Cilium's pod address pool network.cilium.podCidr 10.0.0.0/8: its traffic would stay inside the cluster"),
        (("network", "cilium", "apiServer", "host"), "cilium-pod-cidr-overlap", "the API server 10.10.0.10 overlaps "
         "Cilium's pod address pool network.cilium.podCidr 10.0.0.0/8: its traffic would stay inside the cluster"),
    ]
    found = violations(network={"cilium": {**CILIUM, "podCidr": "192.168.0.0/16"}},
                       monitoring={"enabled": True}, serving={"models": [triton]})
    assert found == [(("serving", "models", 0, "repositoryCidrs", 0), "cilium-pod-cidr-overlap")]
    # The default pool stays clear of the private ranges company networks use.
    assert violations(network={"cilium": CILIUM}, airgap={"enabled": True, "mirror": MIRROR}) == []
    assert violations(network={"cilium": {**CILIUM, "podCidr": "100.64.0.0/24"}}) == [
        (("network", "cilium", "podCidr"), "cidr-valid")]


def test_cilium_pod_pool_is_the_targets_on_the_clouds():
    eks = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
           "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/a",
           "nodePools": [{"name": "cpu", "instanceType": "m7i.2xlarge"}]}
    assert (("network", "cilium", "podCidr"), "cilium-pod-cidr-by-target") in violations(
        target=eks, network={"cilium": {**CILIUM, "podCidr": "172.20.0.0/16"}})
    assert not [v for v in violations(target=eks, network={"cilium": CILIUM}) if "pod-cidr" in v[1]]


def test_each_gateway_host_name_has_one_owner():
    found = violations(network={"cilium": {**CILIUM, "gatewayApi": True, "kubeProxyReplacement": True,
                                           "apiServer": {"host": "api.k8s.internal"}},
                                "loadBalancer": {"mode": "external"}},
                       certificates={"certManager": {"enabled": True}},
                       registry={"pythonIndex": {"enabled": True, "hostname": "pypi.models.plinth.internal"}},
                       serving={"hostname": "pypi.models.plinth.internal"})
    assert found == [(("serving", "hostname"), "gateway-host-unique")]


# --- the air gap's perimeter: exact hosts, narrow networks -----------------------------------------

AIRGAP = {"enabled": True, "mirror": {"registry": "myco.azurecr.io/mirror", "charts": "oci://myco.azurecr.io/charts"}}


def messages(**overrides) -> list[tuple[tuple, str, str]]:
    return [(v.loc, v.rule, v.message) for v in check_rules(spec(**overrides))
            if v.rule in ("airgap-chart-source", "airgap-acme", "airgap-endpoint", "cidr-too-wide",
                          "prod-endpoint-networks")]


def test_a_public_oci_chart_source_escapes_the_air_gap():
    assert messages(airgap=AIRGAP, charts={"source": "oci://ghcr.io/charts"}) == [
        (("charts", "source"), "airgap-chart-source", "the chart source 'oci://ghcr.io/charts' is outside the air "
         "gap: its host is not one of the perimeter's hosts (myco.azurecr.io)")]


def test_a_sibling_host_of_the_mirrors_domain_is_outside_the_perimeter():
    acme = {"certManager": {"enabled": True, "issuer": {"type": "acme", "acme": {
        "server": "https://attacker.azurecr.io/directory", "email": "ops@myco.example"}}}}
    found = messages(airgap=AIRGAP, charts={"source": "https://attacker.azurecr.io/charts"}, certificates=acme)
    assert found == [
        (("charts", "source"), "airgap-chart-source", "the chart source 'https://attacker.azurecr.io/charts' is "
         "outside the air gap: its host is not one of the perimeter's hosts (myco.azurecr.io)"),
        (("certificates", "certManager", "issuer", "acme", "server"), "airgap-acme", "the ACME server "
         "'https://attacker.azurecr.io/directory' is outside the air gap: its host is not one of the perimeter's "
         "hosts (myco.azurecr.io)")]
    # User info and a different port do not make a host the mirror's.
    assert [m[0] for m in messages(airgap=AIRGAP, charts={"source": "https://myco.azurecr.io@evil.example/c"})] \
        == [("charts", "source")]
    assert [m[0] for m in messages(airgap=AIRGAP, charts={"source": "oci://myco.azurecr.io:8443/c"})] \
        == [("charts", "source")]


def test_the_mirrors_own_chart_source_is_held_to_the_perimeter_too():
    mirror = {**AIRGAP["mirror"], "charts": "oci://registry-1.docker.io/bitnamicharts"}
    assert messages(airgap={**AIRGAP, "mirror": mirror}) == [
        (("airgap", "mirror", "charts"), "airgap-chart-source", "the mirror's chart source "
         "'oci://registry-1.docker.io/bitnamicharts' is outside the air gap: its host is not one of the perimeter's "
         "hosts (myco.azurecr.io)")]


def test_hosts_listed_exactly_are_inside_the_perimeter():
    acme = {"certManager": {"enabled": True, "issuer": {"type": "acme", "acme": {
        "server": "https://acme.corp.internal:8443/directory", "email": "ops@myco.example"}}}}
    mirror = {**AIRGAP["mirror"], "files": "https://files.corp.internal/plinth", "hosts": ["acme.corp.internal:8443"]}
    assert messages(airgap={**AIRGAP, "mirror": mirror}, certificates=acme,
                    charts={"source": "https://files.corp.internal/charts"}) == []
    assert messages(airgap=AIRGAP, charts={"source": "/srv/charts"}) == []  # a directory is local
    found = messages(airgap={**AIRGAP, "mirror": {**mirror, "hosts": ["acme.corp.internal"]}}, certificates=acme)
    assert [m[1] for m in found] == ["airgap-acme"]  # the port is part of the host


def test_unsealing_vault_and_python_index_are_endpoints_inside_the_perimeter():
    found = messages(airgap=AIRGAP, secrets={"vault": {"enabled": True, "autoUnseal": {
        "type": "transit", "key": "k", "address": "https://vault.example.com"}}},
        registry={"pythonIndex": {"url": "https://pypi.example.org/simple/"}})
    assert [(m[0], m[1]) for m in found] == [(("secrets", "vault", "autoUnseal", "address"), "airgap-endpoint"),
                                           (("registry", "pythonIndex", "url"), "airgap-endpoint")]


def test_the_whole_internet_is_refused_as_an_egress_network():
    model = {"name": "t", "team": "fraud", "runtime": "triton", "modelRepository": "s3://models/t",
             "stable": {"version": "1"}, "repositoryCidrs": ["0.0.0.0/0", "10.0.0.0/8"]}
    found = messages(airgap={**AIRGAP, "mirror": {**AIRGAP["mirror"], "cidrs": ["::/0", "10.20.0.0/24", "4.0.0.0/6"]}},
                     serving={"models": [model]})
    assert found == [
        (("airgap", "mirror", "cidrs", 0), "cidr-too-wide", "::/0 is wider than a /32: egress there would reach the "
         "internet"),
        (("airgap", "mirror", "cidrs", 2), "cidr-too-wide", "4.0.0.0/6 is wider than a /8: egress there would reach "
         "the internet"),
        (("serving", "models", 0, "repositoryCidrs", 0), "cidr-too-wide", "0.0.0.0/0 is wider than a /8: egress "
         "there would reach the internet")]


def test_a_prod_public_endpoint_open_to_the_internet_is_refused():
    eks = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
           "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
           "private": False, "publicEndpointReason": "CI runners outside the VPC", "authorizedNetworks": ["0.0.0.0/0"],
           "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
    found = messages(target=eks, metadata={"name": "demo", "environment": "prod", "costCenter": "ml"})
    assert found == [(("target", "authorizedNetworks", 0), "prod-endpoint-networks",
                      "0.0.0.0/0 opens the prod API endpoint to more than a /8")]
    assert messages(target={**eks, "authorizedNetworks": ["203.0.113.0/24"]},
                    metadata={"name": "demo", "environment": "prod", "costCenter": "ml"}) == []


def test_a_host_is_host_and_port_in_lower_case():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="expected host\\[:port\\] in lower case"):
        spec(airgap={**AIRGAP, "mirror": {**AIRGAP["mirror"], "hosts": ["https://acme.corp"]}})


GATEWAY_CILIUM = {"enabled": True, "apiServer": {"host": "10.10.0.10"}}
EKS_TARGET = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
       "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}


def lb_messages(**overrides) -> list[tuple[tuple, str, str]]:
    return [(v.loc, v.rule, v.message) for v in check_rules(spec(**overrides))
            if v.rule.startswith(("load-balancer", "public-load-balancer"))]


def test_an_existing_cluster_gateway_needs_load_balancer_addresses():
    assert lb_messages(network={"cilium": GATEWAY_CILIUM}) == [(
        ("network", "loadBalancer", "ranges"), "load-balancer-ranges",
        "the platform Gateway is a LoadBalancer Service: on an existing cluster it gets no address without ranges")]
    assert lb_messages(network={"cilium": GATEWAY_CILIUM, "loadBalancer": {"ranges": ["10.30.0.240/29"]}}) == []
    # the explicit opt-out: something else assigns addresses
    assert lb_messages(network={"cilium": GATEWAY_CILIUM, "loadBalancer": {"mode": "external"}}) == []
    assert lb_messages(network={"cilium": {**GATEWAY_CILIUM, "gatewayApi": False}}) == []
    assert lb_messages(network={"cilium": GATEWAY_CILIUM, "loadBalancer": {"mode": "external", "interfaces": ["^eth0$"],
                                                                 "public": True}}) == [
        (("network", "loadBalancer", "interfaces"), "load-balancer-mode",
         "interfaces are for mode l2; with external, something else assigns and announces the addresses"),
        (("network", "loadBalancer", "public"), "load-balancer-public",
         "public and publicReason are for eks and gke: on an existing cluster the ranges decide who reaches the "
         "Gateway")]


def test_load_balancer_ranges_do_not_overlap_each_other_or_declared_networks():
    found = lb_messages(
        network={"cilium": GATEWAY_CILIUM, "loadBalancer": {"ranges": [
            "10.30.0.240/29", "10.30.0.244-10.30.0.250", "10.20.0.8/29", "10.10.0.8-10.10.0.12"]}},
        airgap={"enabled": True, "mirror": {"registry": "harbor.corp/mirror", "charts": "oci://harbor.corp/charts",
                                            "cidrs": ["10.20.0.0/24"]}})
    assert found == [
        (("network", "loadBalancer", "ranges", 1), "load-balancer-ranges-overlap",
         "10.30.0.244-10.30.0.250 overlaps 10.30.0.240/29"),
        (("network", "loadBalancer", "ranges", 2), "load-balancer-ranges-overlap",
         "10.20.0.8/29 overlaps 10.20.0.0/24 (airgap.mirror.cidrs[0])"),
        (("network", "loadBalancer", "ranges", 3), "load-balancer-ranges-overlap",
         "10.10.0.8-10.10.0.12 overlaps 10.10.0.10 (network.cilium.apiServer.host)"),
    ]


def test_cloud_gateways_are_internal_unless_public_with_a_reason():
    cloud = {"cilium": {"enabled": True}}
    assert lb_messages(target=EKS_TARGET, network=cloud) == []
    assert lb_messages(target=EKS_TARGET, network={**cloud, "loadBalancer": {"ranges": ["10.30.0.240/29"], "public": True}}) == [
        (("network", "loadBalancer", "ranges"), "load-balancer-by-target",
         "on eks the cloud's load balancer gives the Gateway its address"),
        (("network", "loadBalancer", "publicReason"), "public-load-balancer-reason",
         "a public Gateway needs a reason: the platform is private by default")]
    assert lb_messages(target={**EKS_TARGET, "egress": "none"}, network={**cloud, "loadBalancer": {
        "public": True, "publicReason": "partner scoring API"}}) == [
        (("network", "loadBalancer", "public"), "public-load-balancer-subnets",
         "an internet-facing load balancer needs public subnets, and egress none has none")]
    assert lb_messages(target=EKS_TARGET, network={**cloud, "loadBalancer": {"publicReason": "partner scoring API"}}) == [
        (("network", "loadBalancer", "publicReason"), "public-load-balancer-reason",
         "a reason for a public Gateway, but the Gateway is internal")]
