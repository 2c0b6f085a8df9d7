"""Networking: Cilium (CNI, network policy, kube-proxy replacement, Hubble, Gateway API) and the platform Gateway."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, PLATFORM_NAMESPACES
from plinth.context import PlatformContext, resource_name
from plinth.modules.certs import certificate
from plinth.modules.cluster.differences import cilium_operator_image, cilium_values
from plinth.modules.helm import HelmService, merge_values
from plinth.objects import children, namespace
from plinth.service import PlatformService, Peer

HUBBLE_SERVER_SECRET = "hubble-server-certs"
HUBBLE_RELAY_CLIENT_SECRET = "hubble-relay-client-certs"
GATEWAY = "plinth"
GATEWAY_CLASS = "cilium"
GATEWAY_TLS_SECRET = "plinth-gateway-tls"


def _image(ref: str, ctx: PlatformContext) -> dict:
    """Cilium's image keys: `override` takes the whole reference (tag and digest), mirrored in air-gap."""
    from plinth.catalog import mirror_image

    return {"override": mirror_image(ref, ctx.mirror_registry)}


def _images() -> dict[str, str]:
    """The catalog's Cilium images by short name (cilium, operator-generic, hubble-relay, cilium-envoy)."""
    return {ref.split("@")[0].rsplit(":", 1)[0].rsplit("/", 1)[1]: ref for ref in CHARTS["cilium"].images}


class Cilium(HelmService):
    """Cilium as the cluster's CNI (plinth:network:Cilium)."""

    type_token = "plinth:network:Cilium"
    chart_key = "cilium"
    spec_path = ("network", "cilium")
    pod_security = "privileged"

    @classmethod
    def owned_values(cls, block, ctx: PlatformContext) -> dict:
        images = _images()
        monitor = {"serviceMonitor": {"enabled": ctx.monitoring, "trustCRDsExist": ctx.monitoring}}
        values: dict = {
            "image": _image(images["cilium"], ctx),
            "kubeProxyReplacement": block.kube_proxy_replacement,
            "operator": {
                "image": _image(images[cilium_operator_image(ctx.target)], ctx),
                "replicas": block.operator_replicas or (2 if ctx.prod_like else 1),
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
        }
        # A cloud target's endpoint (known once its cluster exists), else the spec's.
        api_server = ctx.api_server or (block.api_server and (block.api_server.host, block.api_server.port))
        if api_server:
            values["k8sServiceHost"], values["k8sServicePort"] = api_server
        values = merge_values(values, cilium_values(ctx.target))
        if values.get("nodeinit", {}).get("enabled"):
            values["nodeinit"]["image"] = _image(images["startup-script"], ctx)
        return values

    @classmethod
    def images(cls, block, ctx: PlatformContext) -> tuple[str, ...]:
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
    """network.gateway (plinth.spec.models.Gateway): the listener host name."""


class PlatformGateway(PlatformService):
    """Cilium's cert-manager-issued certificates and the ONE platform Gateway (plinth:network:PlatformGateway).

    Built after cert-manager: the Hubble certificates (secrets Cilium mounts as optional) and the
    Gateway's listener certificate, both issued by the platform ClusterIssuer.
    """

    @staticmethod
    def enabled(spec) -> bool:
        cilium = spec.network.cilium
        return cilium.enabled and (cilium.hubble or cilium.gateway_api)

    @staticmethod
    def block(spec) -> PlatformGatewayArgs:
        return PlatformGatewayArgs(spec.network.cilium, spec.network.gateway)

    @classmethod
    def tenant_ingress(cls, args: PlatformGatewayArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # The Gateway's proxies (Cilium's Envoy, identity `ingress`) forward to team Services behind HTTPRoutes.
        return (Peer("gateway", entity="ingress"),) if args.cilium.gateway_api else ()

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
            metadata=ctx.metadata(GATEWAY, name, namespace=ns_name),
            spec={
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [{
                    "name": "https",
                    "protocol": "HTTPS",
                    "port": 443,
                    "hostname": hostname,
                    "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": GATEWAY_TLS_SECRET}]},
                    # Routes attach from this platform's namespaces only (teams, and services it exposes).
                    "allowedRoutes": {"namespaces": {"from": "Selector", "selector": {"matchLabels": {
                        "app.kubernetes.io/instance": ctx.platform, "app.kubernetes.io/managed-by": "plinth"}}}},
                }],
            },
            opts=pulumi.ResourceOptions.merge(in_ns, pulumi.ResourceOptions(depends_on=[cert])),
        )
        self.register_outputs({})
