"""Networking: Cilium (CNI, network policy, kube-proxy replacement, Hubble, Gateway API) and the platform Gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, PLATFORM_NAMESPACES, ImageRef
from plinth.context import MANAGED_BY, PlatformContext, resource_name
from plinth.modules.certs import certificate
from plinth.modules.cluster.differences import cilium_operator_image, cilium_values
from plinth.modules.helm import HelmService, merge_values
from plinth.objects import children, gateway_route, namespace
from plinth.service import Need, Peer, PlatformService, gateway_serves
from plinth.spec import models
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity
from plinth.vocabulary import GATEWAY_NAME, HTTP_LISTENER, SERVING_LISTENER, TEAM_LISTENER

HUBBLE_SERVER_SECRET = "hubble-server-certs"
HUBBLE_RELAY_CLIENT_SECRET = "hubble-relay-client-certs"
GATEWAY_CLASS = "cilium"
GATEWAY_TLS_SECRET = "plinth-gateway-tls"
L2_CLIENT_RATE_LIMIT = {"qps": 20, "burst": 40}
"""The agent's Kubernetes client rate limit with L2 announcements: every announced Service is a lease the agent
renews every 5 s (leaseRenewDeadline), on top of its usual traffic; twice the chart's 10/20 leaves room for
50 announced Services, as Cilium's L2 sizing guidance asks (README)."""
LB_POOL = "plinth-gateway"
"""The CiliumLoadBalancerIPPool and CiliumL2AnnouncementPolicy of the platform Gateway's Service."""
AWS_INTERNAL = {"service.beta.kubernetes.io/aws-load-balancer-internal": "true",
                "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
"""An internal load balancer on AWS: the in-tree/cloud controller's key, and the AWS Load Balancer Controller's."""
AWS_PUBLIC = {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}
GKE_INTERNAL = {"networking.gke.io/load-balancer-type": "Internal"}
PUBLIC_REASON = "plinth.dev/public-load-balancer-reason"
GATEWAY_SERVICE_LABEL = {"plinth.dev/gateway": GATEWAY_NAME}
"""Label Cilium puts on the Gateway's LoadBalancer Service (from `spec.infrastructure.labels`): the address
pool and the L2 announcement select it."""
HTTP_REDIRECT = "http-redirect"
"""The HTTPRoute on the `http` listener that answers everything but ACME challenges with a redirect to https."""


def _image(ref: str, ctx: PlatformContext) -> dict:
    """Cilium's image keys: `override` takes the whole reference (tag and digest), mirrored in air-gap."""
    from plinth.catalog import mirror_image

    return {"override": mirror_image(ref, ctx.mirror_registry)}


def _images() -> dict[str, str]:
    """The catalog's Cilium images by short name (cilium, operator-generic, hubble-relay, cilium-envoy)."""
    return {ImageRef.parse(ref).name: ref for ref in CHARTS["cilium"].images}


class Cilium(HelmService):
    """Cilium as the cluster's CNI (plinth:network:Cilium)."""

    type_token = "plinth:network:Cilium"
    chart_key = "cilium"
    spec_path = ("network", "cilium")
    pod_security = "privileged"

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        # eks: the operator manages the pods' ENIs (the nodes' role has no CNI policy).
        if spec.network.cilium.enabled and spec.target.type == "eks":
            return (Identity("cilium-operator", "kube-system", "cilium-operator", "eni"),)
        return ()

    @classmethod
    def owned_values(cls, block: models.Cilium, ctx: PlatformContext) -> dict:
        images = _images()
        monitor = {"serviceMonitor": {"enabled": ctx.monitoring, "trustCRDsExist": ctx.monitoring}}
        values: dict = {
            "image": _image(images["cilium"], ctx),
            "kubeProxyReplacement": block.kube_proxy_replacement,
            "operator": {
                "image": _image(images[cilium_operator_image(ctx.target)], ctx),
                "replicas": ctx.replicas(block.operator_replicas),
                "podDisruptionBudget": {"enabled": ctx.prod_like},
                "prometheus": {"enabled": ctx.monitoring, **monitor},
            },
            "envoy": {"enabled": True, "image": _image(images["cilium-envoy"], ctx), "prometheus": monitor},
            "l7Proxy": True,
            "prometheus": {"enabled": ctx.monitoring, **monitor},
            # "auto" asks the live cluster whether the CRDs exist; Plinth installs them first.
            "gatewayAPI": {"enabled": block.gateway_api, "gatewayClass": {"create": "true"}},
            "hubble": {
                "enabled": block.hubble,
                # Certificates come from cert-manager (plinth:network:PlatformGateway), never from
                # render-time generation: a chart-generated certificate is a new diff on every render.
                "tls": {"enabled": block.hubble, "auto": {"enabled": False},
                        "server": {"existingSecret": HUBBLE_SERVER_SECRET}},
                "relay": {
                    "enabled": block.hubble,
                    # Stateless (it fans out to every node's Hubble): a second replica and a PDB keep flows
                    # observable through a drain.
                    "replicas": 2 if ctx.prod_like else 1,
                    "podDisruptionBudget": {"enabled": ctx.prod_like},
                    "image": _image(images["hubble-relay"], ctx),
                    "tls": {"client": {"existingSecret": HUBBLE_RELAY_CLIENT_SECRET}},
                    "prometheus": {"enabled": ctx.monitoring, **monitor},
                },
                "ui": {"enabled": False},
            },
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            # The Gateway's address on an existing cluster: LB-IPAM assigns it, L2 announcements answer ARP.
            "l2announcements": {"enabled": ctx.l2_announcements},
        }
        if ctx.l2_announcements:
            values["k8sClientRateLimit"] = dict(L2_CLIENT_RATE_LIMIT)
        # A cloud target's endpoint (known once its cluster exists), else the spec's.
        api_server = ctx.api_server or (block.api_server and (block.api_server.host, block.api_server.port))
        if api_server:
            values["k8sServiceHost"], values["k8sServicePort"] = api_server
        if ctx.target.type == "existing":
            # Cluster-pool IPAM (the chart's default mode): the pool from the spec, never the chart's 10.0.0.0/8.
            values["ipam"] = {"operator": {"clusterPoolIPv4PodCIDRList": [block.pod_cidr]}}
        values = merge_values(values, cilium_values(ctx.target))
        if values.get("nodeinit", {}).get("enabled"):
            values["nodeinit"]["image"] = _image(images["startup-script"], ctx)
        return values

    @classmethod
    def images(cls, block: models.Cilium, ctx: PlatformContext) -> tuple[str, ...]:
        # One operator build (the target's IPAM); node-init only where the target needs it (GKE).
        images, operator = _images(), cilium_operator_image(ctx.target)
        skip = {name for name in images if name.startswith("operator-") and name != operator}
        if not cilium_values(ctx.target).get("nodeinit", {}).get("enabled"):
            skip.add("startup-script")
        return tuple(ref for name, ref in images.items() if name not in skip)


@dataclass(frozen=True)
class PlatformGatewayArgs:
    """What the platform Gateway needs from the spec."""

    cilium: Any
    """network.cilium (plinth.spec.models.Cilium): which of Hubble and Gateway API are on."""
    gateway: Any
    """network.gateway (plinth.spec.models.Gateway): the wildcard listener's host name."""
    serving_host: str | None = None
    """serving.hostname: the models' host, each team under /<team>/."""
    load_balancer: Any = None
    """network.loadBalancer (plinth.spec.models.LoadBalancer): the Gateway's address (ranges, internal/public)."""
    acme: bool = False
    """The platform issuer is ACME: the Gateway also listens on port 80 for its HTTP-01 challenges."""


def team_namespaces(ctx: PlatformContext) -> dict:
    """A label selector of this platform's team namespaces (tenancy's labels)."""
    return {"matchLabels": {"app.kubernetes.io/component": "tenancy", "app.kubernetes.io/instance": ctx.platform,
                            "app.kubernetes.io/managed-by": MANAGED_BY}}


def listeners(args: PlatformGatewayArgs, ctx: PlatformContext) -> list[dict]:
    """One HTTPS listener per platform host name (only its service's namespace attaches), one for the serving
    host and the wildcard one for teams' own host names (team namespaces attach). Gateway API v1 routes a
    request by its most specific listener host name, so a team route naming a platform host on the wildcard
    listener never receives that host's requests, and a team route on a platform listener is not accepted."""
    tls = {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": GATEWAY_TLS_SECRET}]}
    teams = {"namespaces": {"from": "Selector", "selector": team_namespaces(ctx)}}
    out, taken = [], set()
    for ns, host, listener in ctx.gateway_hosts:
        out.append({"name": listener, "hostname": host, "allowedRoutes": {"namespaces": {
            "from": "Selector", "selector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}})
        taken.add(host)
    if args.serving_host and args.serving_host not in taken:
        out.append({"name": SERVING_LISTENER, "hostname": args.serving_host, "allowedRoutes": teams})
        taken.add(args.serving_host)
    if args.gateway.hostname not in taken:
        out.append({"name": TEAM_LISTENER, "hostname": args.gateway.hostname, "allowedRoutes": teams})
    https = [{"name": entry["name"], "protocol": "HTTPS", "port": 443, "hostname": entry["hostname"], "tls": tls,
              "allowedRoutes": entry["allowedRoutes"]} for entry in out]
    if not args.acme:
        return https
    # HTTP-01 challenges arrive on port 80: cert-manager's solver routes (in the namespaces of this platform's
    # certificates) attach here, as the ClusterIssuer names this listener; every other request is redirected.
    platform = {"namespaces": {"from": "Selector", "selector": {"matchLabels": {
        "app.kubernetes.io/instance": ctx.platform, "app.kubernetes.io/managed-by": MANAGED_BY}}}}
    return [*https, {"name": HTTP_LISTENER, "protocol": "HTTP", "port": 80, "allowedRoutes": platform}]


def team_route_admission(args: PlatformGatewayArgs, ctx: PlatformContext) -> tuple[dict, dict]:
    """(ValidatingAdmissionPolicy spec, binding spec): the API server refuses a team HTTPRoute that names a
    platform host name, a path outside /<team>/ on the serving host, or a host name other than the team's own
    <team>.<domain> (the policy team-routes-own-paths, evaluated at admission)."""
    reserved = sorted(host for _, host, _ in ctx.gateway_hosts)
    wildcard = args.gateway.hostname
    domain = wildcard[2:] if wildcard.startswith("*.") else None
    team = "object.metadata.namespace"

    def covers(host: str, target: str) -> str:
        """CEL: the route host `host` covers `target` (both CEL expressions; see policies.host_covers)."""
        return f"({host} == {target} || ({host}.startsWith('*.') && {target}.endsWith({host}.substring(1))))"

    validations = [{
        "expression": "has(object.spec.hostnames) && size(object.spec.hostnames) > 0",
        "message": "a team route names its host names (without them it answers for every host of its listeners)",
    }]
    if reserved:
        validations.append({
            "expression": f"object.spec.hostnames.all(h, !{_cel(reserved)}.exists(p, {covers('h', 'p')}))",
            "message": f"platform host names ({', '.join(reserved)}) are reserved to platform routes"})
    allowed = [f"h == {team} + {_cel('.' + domain)}"] if domain else []
    if args.serving_host:
        on_serving = covers("h", _cel(args.serving_host))
        validations.append({
            "expression": f"!object.spec.hostnames.exists(h, {on_serving}) || object.spec.rules.all(r, "
                          f"has(r.matches) && r.matches.all(m, has(m.path) && m.path.type in ['PathPrefix', "
                          f"'Exact'] && (m.path.value == '/' + {team} || m.path.value.startsWith('/' + {team} + "
                          f"'/'))))",
            "message": f"on the serving host {args.serving_host} a team routes only paths under /<team>/"})
        allowed.append(on_serving)
    validations.append({
        "expression": f"object.spec.hostnames.all(h, {' || '.join(allowed) or 'false'})",
        "message": "a team route's host names are the serving host and the team's own "
                   f"{'<team>.' + domain if domain else 'none (no wildcard listener)'}"})
    policy = {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "namespaceSelector": team_namespaces(ctx),
            "resourceRules": [{"apiGroups": ["gateway.networking.k8s.io"], "apiVersions": ["*"],
                               "operations": ["CREATE", "UPDATE"], "resources": ["httproutes"]}],
        },
        "validations": validations,
    }
    return policy, {"validationActions": ["Deny"]}


def _cel(value: str | list[str]) -> str:
    """A CEL string (or list of strings) literal; host names hold no quote or backslash (the spec's pattern)."""
    if isinstance(value, list):
        return "[" + ", ".join(_cel(v) for v in value) + "]"
    return f"'{value}'"


class PlatformGateway(PlatformService):
    """Cilium's cert-manager-issued certificates and the ONE platform Gateway (plinth:network:PlatformGateway).

    Built after cert-manager: the Hubble certificates (secrets Cilium mounts as optional) and the
    Gateway's listener certificate, both issued by the platform ClusterIssuer.
    """

    capability = "gateway"
    capability_fix = "enable network.cilium with gatewayApi: true"

    @staticmethod
    def enabled(spec: PlatformSpec) -> bool:
        cilium = spec.network.cilium
        return cilium.enabled and (cilium.hubble or cilium.gateway_api)

    @classmethod
    def provides(cls, spec) -> bool:
        return gateway_serves(spec)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not cls.enabled(spec):
            return ()
        return (Need("cert-manager", ("network", "cilium", "enabled"), "Hubble and the platform Gateway take "
                     "their TLS certificates from cert-manager", "cilium", "set hubble and gatewayApi to false"),)

    @staticmethod
    def block(spec: PlatformSpec) -> PlatformGatewayArgs:
        certs = spec.certificates.cert_manager
        return PlatformGatewayArgs(spec.network.cilium, spec.network.gateway,
                                   spec.serving.hostname, spec.network.load_balancer,
                                   acme=certs.enabled and certs.issuer.type == "acme")

    @classmethod
    def tenant_ingress(cls, args: PlatformGatewayArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # The Gateway's proxies (Cilium's Envoy, identity `ingress`) forward to team Services behind HTTPRoutes,
        # on the model servers' HTTP ports only. (Imported here: serving builds its routes on this module.)
        from plinth.modules.serving.runtimes import RUNTIMES

        ports = tuple(sorted({runtime.http_port for runtime in RUNTIMES.values()}))
        return (Peer("gateway", ports=ports, entity="ingress"),) if args.cilium.gateway_api else ()

    def __init__(self, name: str, args: PlatformGatewayArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:network:PlatformGateway", name, None, opts)
        child = children(self, ctx, opts)
        cilium_ns = CHARTS["cilium"].namespace
        if args.cilium.hubble:
            for secret, common_name, usages in (
                (HUBBLE_SERVER_SECRET, "*.default.hubble-grpc.cilium.io", ["server auth"]),
                (HUBBLE_RELAY_CLIENT_SECRET, "*.hubble-relay.cilium.io", ["client auth"]),
            ):
                certificate(resource_name(name, secret), ctx.metadata(secret, name, namespace=cilium_ns),
                             secret, [common_name], usages, child)
        if not args.cilium.gateway_api:
            self.register_outputs({})
            return
        ns_name = PLATFORM_NAMESPACES["gateway"]
        ns = namespace(name, ns_name, name, ctx, child)
        in_ns = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[ns]))
        hostname = args.gateway.hostname
        cert = certificate(resource_name(name, "tls"), ctx.metadata(GATEWAY_TLS_SECRET, name, namespace=ns_name),
                            GATEWAY_TLS_SECRET, [hostname], ["server auth"], in_ns)
        self.gateway = k8s.apiextensions.CustomResource(
            resource_name(name, "gateway"),
            api_version="gateway.networking.k8s.io/v1",
            kind="Gateway",
            metadata=ctx.metadata(GATEWAY_NAME, name, namespace=ns_name),
            spec={"gatewayClassName": GATEWAY_CLASS, "listeners": listeners(args, ctx),
                  **infrastructure(args.load_balancer, ctx.target.type)},
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[cert])),
        )
        if ctx.l2_announcements:
            address_pool(name, args.load_balancer, ctx, in_ns)
        if args.acme:
            # The solver's exact challenge path is more specific than this prefix, so challenges still reach it.
            gateway_route(
                resource_name(name, HTTP_REDIRECT), ctx.metadata(HTTP_REDIRECT, name, namespace=ns_name),
                HTTP_LISTENER,
                [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                  "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
                pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[self.gateway])))
        # The same rule as the policy team-routes-own-paths, at admission (evaluated by the API server).
        admission = f"plinth-{ctx.platform}-team-routes"
        policy_spec, binding_spec = team_route_admission(args, ctx)
        policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            resource_name(name, "team-routes"), metadata=ctx.metadata(admission, name), spec=policy_spec,
            opts=child)
        k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            resource_name(name, "team-routes-binding"), metadata=ctx.metadata(admission, name),
            spec={"policyName": admission, **binding_spec},
            opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[policy])))
        self.register_outputs({})


def infrastructure(lb, target: str) -> dict:
    """The Gateway's `spec.infrastructure`: annotations Cilium copies onto the Gateway's LoadBalancer Service.
    On a cloud the load balancer is internal unless the spec makes it public (with its reason)."""
    infra: dict = {"labels": dict(GATEWAY_SERVICE_LABEL)}
    if target != "existing":
        if lb.public:
            annotations = {**(AWS_PUBLIC if target == "eks" else {}), PUBLIC_REASON: lb.public_reason}
        else:
            annotations = AWS_INTERNAL if target == "eks" else GKE_INTERNAL
        infra["annotations"] = dict(sorted(annotations.items()))
    return {"infrastructure": infra}


def address_pool(name: str, lb, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
    """Cilium LB-IPAM's pool of the spec's ranges and the L2 announcement of its addresses, both only for the
    platform Gateway's Service (by the label its `spec.infrastructure` gives it); control-plane nodes do not
    announce."""
    gateway_services = {"matchLabels": dict(GATEWAY_SERVICE_LABEL)}
    blocks = [dict(zip(("start", "stop"), r.split("-", 1))) if "-" in r else {"cidr": r} for r in lb.ranges]
    k8s.apiextensions.CustomResource(
        resource_name(name, "address-pool"), api_version="cilium.io/v2", kind="CiliumLoadBalancerIPPool",
        metadata=ctx.metadata(LB_POOL, name),
        spec={"blocks": blocks, "serviceSelector": gateway_services}, opts=opts)
    k8s.apiextensions.CustomResource(
        resource_name(name, "l2-announcement"), api_version="cilium.io/v2alpha1", kind="CiliumL2AnnouncementPolicy",
        metadata=ctx.metadata(LB_POOL, name),
        spec={"serviceSelector": gateway_services, "loadBalancerIPs": True,
              "nodeSelector": {"matchExpressions": [
                  {"key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist"}]},
              **({"interfaces": list(lb.interfaces)} if lb.interfaces else {})},
        opts=opts)
