"""The platform program: a validated spec in, one component per service out.

`platform/__main__.py` (the real engine) and the offline engine both call
`build_platform`, so `plinth plan` and `pulumi preview` run the same code.
"""

from __future__ import annotations

import pulumi

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext, StackSecrets
from plinth.modules.certs import CertManager
from plinth.modules.cluster import ExistingCluster, ExistingClusterArgs
from plinth.modules.crds import GatewayApiCrds, PrometheusOperatorCrds
from plinth.modules.monitoring import Monitoring
from plinth.modules.network import Cilium, PlatformGateway
from plinth.modules.secrets import Vault
from plinth.modules.storage import Longhorn
from plinth.modules.tenancy import Peer, Tenancy, TenancyArgs
from plinth.spec.models import PlatformSpec

__all__ = ["SERVICES", "StackSecrets", "build_platform"]

# The platform's services in install order. Each is a component class with
# `enabled(spec)`, `block(spec)` (its typed slice of the spec) and
# `(name, block, ctx, opts)`; each depends on every enabled service before it,
# so CRDs land before their users and the CNI before anything that runs pods.
SERVICES: tuple[tuple[str, type], ...] = (
    ("gateway-api-crds", GatewayApiCrds),
    ("prometheus-operator-crds", PrometheusOperatorCrds),
    ("cilium", Cilium),
    ("cert-manager", CertManager),
    ("gateway", PlatformGateway),
    ("longhorn", Longhorn),
    ("vault", Vault),
    ("monitoring", Monitoring),
)


def build_platform(spec: PlatformSpec, secrets: StackSecrets) -> None:
    cluster = ExistingCluster(
        "cluster", ExistingClusterArgs(kubeconfig=spec.target.kubeconfig, context=spec.target.context)
    )
    ctx = PlatformContext.from_spec(spec, provider=cluster.provider, secrets=secrets)
    built: list[pulumi.Resource] = []
    for name, service in SERVICES:
        if service.enabled(spec):
            built.append(service(name, service.block(spec), ctx, pulumi.ResourceOptions(depends_on=list(built))))
    Tenancy(
        "tenancy",
        TenancyArgs(
            teams=spec.teams,
            platform_admin_group=spec.rbac.platform_admin_group,
            ingress_from=tenant_ingress(spec),
            egress_to=tenant_egress(spec),
        ),
        ctx,
    )
    pulumi.export("platform", spec.metadata.name)
    pulumi.export("environment", spec.metadata.environment)


def tenant_ingress(spec: PlatformSpec) -> tuple[Peer, ...]:
    """Platform namespaces that must reach team pods, given which services are on."""
    peers = []
    if spec.monitoring.enabled:
        peers.append(Peer("monitoring", PLATFORM_NAMESPACES["monitoring"]))
    if spec.network.cilium.enabled and spec.network.cilium.gateway_api:
        peers.append(Peer("gateway", PLATFORM_NAMESPACES["gateway"]))
    return tuple(peers)


def tenant_egress(spec: PlatformSpec) -> tuple[Peer, ...]:
    """Platform services team pods may call, given which services are on."""
    peers = []
    if spec.secrets.vault.enabled:
        peers.append(Peer("vault", PLATFORM_NAMESPACES["vault"], (8200,)))
    if spec.feature_store.feast.enabled:
        peers.append(Peer("feast", PLATFORM_NAMESPACES["feast"], (6566,)))
    return tuple(peers)
