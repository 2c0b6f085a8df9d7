"""Across the platform services under Pulumi's mock runtime: one owner per object, and the network policies of
the platform namespaces. Each service's own decisions are in its module's test file (test_<module>.py)."""

from __future__ import annotations

from support import network_policies, platform


def test_every_object_has_one_owner():
    resources = platform("prod").values()
    keys = [(r.inputs["kind"], r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
            for r in resources if isinstance(r.inputs.get("metadata"), dict) and "kind" in r.inputs]
    assert len(keys) == len(set(keys))


def test_platform_namespaces_are_default_deny_with_only_the_allows_each_service_needs():
    resources = platform("dev", secrets={"vault": {"enabled": True}}, teams=[{"name": "fraud"}])
    policies = network_policies(resources)
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
