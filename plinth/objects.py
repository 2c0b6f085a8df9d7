"""What more than one module creates the same way: child options, namespaces, the mirror pull secret,
the air-gap egress policy, network policies, routes on the platform Gateway."""

from __future__ import annotations

import base64
import json

import pulumi
import pulumi_kubernetes as k8s

from plinth.context import MANAGED_BY, PlatformContext, resource_name
from plinth.service import Peer
from plinth.vocabulary import SECRET_SOURCE, gateway_parent_ref


def children(parent: pulumi.Resource, ctx: PlatformContext,
             opts: pulumi.ResourceOptions | None = None) -> pulumi.ResourceOptions:
    """Options for a component's children: its provider, and the component's own `depends_on`
    (which the engine does not pass down by itself: without it a service's objects would not
    wait for the services installed before it)."""
    after = list(opts.depends_on) if opts is not None and isinstance(opts.depends_on, list) else []
    return pulumi.ResourceOptions(parent=parent, provider=ctx.provider, depends_on=after)


def namespace(name: str, ns_name: str, component: str, ctx: PlatformContext, opts: pulumi.ResourceOptions,
              pod_security: str = "restricted", team: str | None = None,
              cost_center: str | None = None) -> k8s.core.v1.Namespace:
    """A namespace with Pod Security admission (enforce, audit, warn) pinned to the spec's Kubernetes version."""
    pss = {f"pod-security.kubernetes.io/{mode}": pod_security for mode in ("enforce", "audit", "warn")}
    pss |= {f"pod-security.kubernetes.io/{mode}-version": f"v{ctx.kubernetes_version}"
            for mode in ("enforce", "audit", "warn")}
    return k8s.core.v1.Namespace(
        resource_name(name, "namespace"),
        metadata=ctx.metadata(ns_name, component, team=team, cost_center=cost_center, labels=dict(sorted(pss.items()))),
        opts=opts,
    )


def stack_secret(name: str, metadata: dict, source: str, string_data: pulumi.Input[dict],
                 opts: pulumi.ResourceOptions, type: str = "Opaque") -> k8s.core.v1.Secret:
    """A Secret whose payload comes from stack secrets (secret Outputs, never plain strings in the program).

    Its annotation `plinth.dev/secret-source` names the source (a stack config key, or how the value is
    derived from one): the policy `secrets-from-stack-config` requires it, the compliance report lists it.
    """
    annotations = {**(metadata.get("annotations") or {}), SECRET_SOURCE: source}
    return k8s.core.v1.Secret(name, metadata={**metadata, "annotations": dict(sorted(annotations.items()))},
                              type=type, string_data=pulumi.Output.secret(string_data), opts=opts)


def pull_secret(name: str, metadata: dict, ctx: PlatformContext,
                opts: pulumi.ResourceOptions) -> k8s.core.v1.Secret | None:
    """The mirror's image pull secret (from a secret Output), when the spec asks for one."""
    if not ctx.pull_secret:
        return None
    if ctx.mirror_auth is None:
        raise ValueError("the spec asks for a mirror pull secret but no mirror password was given")
    host = ctx.mirror_registry.split("/")[0]  # type: ignore[union-attr]  # a pull secret implies a mirror
    return stack_secret(
        resource_name(name, "mirror-pull"), metadata, "plinth:mirrorPassword (with airgap.mirror.pullSecret)",
        {".dockerconfigjson": pulumi.Output.secret(ctx.mirror_auth).apply(lambda auth: _docker_config(host, auth))},
        opts, type="kubernetes.io/dockerconfigjson")


def _docker_config(registry: str, auth: str) -> str:
    user, _, password = auth.partition(":")
    token = base64.b64encode(auth.encode()).decode()
    return json.dumps({"auths": {registry: {"username": user, "password": password, "auth": token}}},
                      sort_keys=True)


APISERVER_EGRESS = Peer("apiserver", entity="kube-apiserver")
"""Under Cilium, the API server by identity: Cilium never matches cluster nodes (where the `kubernetes`
Service's backends usually are) by `ipBlock` (policy-cidr-match-mode is left empty: see modules/network)."""


def airgap_egress_policy(name: str, metadata: dict, ctx: PlatformContext, opts: pulumi.ResourceOptions,
                         peers: tuple[Peer, ...] = ()) -> None:
    """Air-gap: pods of a platform namespace reach in-cluster pods, the declared CIDRs and, under Cilium, the
    API server and the Cilium entities in `peers` (e.g. nodes Prometheus scrapes), nothing else."""
    if not ctx.mirror_registry:
        return
    to: list[dict] = [{"namespaceSelector": {}}]
    to += [{"ipBlock": {"cidr": cidr}} for cidr in ctx.egress_cidrs]
    k8s.networking.v1.NetworkPolicy(
        resource_name(name, "airgap-egress"),
        metadata=metadata,
        spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": to}]},
        opts=opts,
    )
    if not ctx.cilium:
        return  # other CNIs match node addresses by ipBlock: the API server is in airgap.mirror.cidrs
    for peer in (APISERVER_EGRESS, *peers):
        kind, policy, spec = peer_policy("Egress", peer, ctx)  # type: ignore[misc]  # Cilium: always a policy
        network_policy(kind, resource_name(name, f"airgap-{policy}"), spec,
                       {**metadata, "name": f"airgap-{policy}"}, ctx, opts)


# --- network policies -----------------------------------------------------------------------------


def peer_policy(direction: str, peer: Peer, ctx: PlatformContext) -> tuple[str, str, dict] | None:
    """(kind, name, spec) allowing traffic from (Ingress) or to (Egress) one peer; None when nothing applies."""
    ports = [{"protocol": "TCP", "port": port} for port in peer.ports]
    name = f"allow-{'from' if direction == 'Ingress' else 'to'}-{peer.name}"
    if peer.entity and ctx.cilium:
        rule: dict = {("fromEntities" if direction == "Ingress" else "toEntities"): [peer.entity]}
        if peer.ports:
            rule["toPorts"] = [{"ports": [{"port": str(port), "protocol": "TCP"} for port in peer.ports]}]
        return "CiliumNetworkPolicy", name, {"endpointSelector": {}, direction.lower(): [rule]}
    if peer.entity == "kube-apiserver":
        selector: dict = {"ipBlock": {"cidr": "0.0.0.0/0"}}
    elif peer.entity:
        return None
    elif peer.teams:
        selector = {"namespaceSelector": {"matchLabels": {
            "app.kubernetes.io/component": "tenancy", "app.kubernetes.io/instance": ctx.platform,
            "app.kubernetes.io/managed-by": MANAGED_BY}}}
    else:
        selector = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peer.namespace}}}
    rule = {("from" if direction == "Ingress" else "to"): [selector]}
    if ports:
        rule["ports"] = ports
    return "NetworkPolicy", name, {"podSelector": {}, "policyTypes": [direction], direction.lower(): [rule]}


def network_policy(kind: str, name: str, spec: dict, metadata: dict, ctx: PlatformContext,
                   opts: pulumi.ResourceOptions) -> pulumi.Resource:
    if kind == "CiliumNetworkPolicy":
        return k8s.apiextensions.CustomResource(name, api_version="cilium.io/v2", kind=kind, metadata=metadata,
                                                spec=spec, opts=opts)
    return k8s.networking.v1.NetworkPolicy(name, metadata=metadata, spec=spec, opts=opts)


def platform_ingress(name: str, ns: str, component: str, peers: tuple[Peer, ...], ctx: PlatformContext,
                     opts: pulumi.ResourceOptions, isolated: str | None = None) -> None:
    """A platform namespace is default-deny for ingress: its own pods, and only the peers given. `isolated`: a
    label whose pods the namespace's own pods do not reach that way (the service admits their clients itself)."""
    own = {"matchExpressions": [{"key": isolated, "operator": "DoesNotExist"}]} if isolated else {}
    policies: list[tuple[str, str, dict]] = [
        ("NetworkPolicy", "default-deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        ("NetworkPolicy", "allow-same-namespace",
         {"podSelector": own, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]}),
    ]
    policies += [p for p in (peer_policy("Ingress", peer, ctx) for peer in peers) if p]
    for kind, policy, spec in policies:
        network_policy(kind, resource_name(name, policy), spec, ctx.metadata(policy, component, namespace=ns),
                       ctx, opts)


def disruption_budget(resource: str, metadata: dict, selector: dict,
                      opts: pulumi.ResourceOptions) -> k8s.policy.v1.PodDisruptionBudget:
    """A PodDisruptionBudget letting a drain take one pod of a replicated workload at a time (`maxUnavailable:
    1`): for the chart workloads whose chart has no budget of its own. `selector`: the pods' matchLabels."""
    return k8s.policy.v1.PodDisruptionBudget(
        resource, metadata=metadata, spec={"maxUnavailable": 1, "selector": {"matchLabels": selector}}, opts=opts)


# --- routes on the platform Gateway -----------------------------------------------------------------


def gateway_route(name: str, metadata: dict, listener: str, rules: list[dict], opts: pulumi.ResourceOptions,
                  hostname: str | None = None) -> k8s.apiextensions.CustomResource:
    """An HTTPRoute on one listener of the platform Gateway; `hostname`: the one host name it answers
    (None: every host name of the listener)."""
    spec = {"parentRefs": [gateway_parent_ref(listener)], **({"hostnames": [hostname]} if hostname else {}),
            "rules": rules}
    return k8s.apiextensions.CustomResource(name, api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute",
                                            metadata=metadata, spec=spec, opts=opts)


def whole_host_rule(service: str, port: int, request_timeout: str) -> dict:
    """A route rule sending every path to one Service; `request_timeout`: how long the proxy waits for an
    answer (an upload can outlast its default)."""
    return {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
            "backendRefs": [{"name": service, "port": port}],
            "timeouts": {"request": request_timeout}}


def admit_client(resource: str, server: tuple[str, dict[str, str], int], client: tuple[str, str, dict[str, str]],
                 component: str, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """A platform server admits one client: `server` (its namespace, its pods' labels, its port) lets in the pods
    of `client` (a name for the policy, their namespace, their labels) on that port, nothing else of that
    namespace and nothing else of the server's (policy `allow-from-<namespace>-<name>` in the server's
    namespace). A platform service whose pods use another's opens its own way in, as tenancy lets the teams in."""
    namespace, pods, port = server
    name, client_namespace, client_pods = client
    return k8s.networking.v1.NetworkPolicy(
        resource,
        metadata=ctx.metadata(f"allow-from-{client_namespace}-{name}", component, namespace=namespace),
        spec={"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"],
              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                  "kubernetes.io/metadata.name": client_namespace}}, "podSelector": {"matchLabels": client_pods}}],
                           "ports": [{"protocol": "TCP", "port": port}]}]},
        opts=opts)
