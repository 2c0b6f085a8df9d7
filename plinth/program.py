"""The platform program: a validated spec in, one component per service out.

`platform/__main__.py` (the real engine) and the offline engine both call
`build_platform`, so `plinth plan` and `pulumi preview` run the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext
from plinth.modules.cluster import ExistingCluster, ExistingClusterArgs
from plinth.modules.tenancy import Peer, Tenancy, TenancyArgs
from plinth.spec.models import PlatformSpec


@dataclass(frozen=True)
class StackSecrets:
    """Secret stack config, as secret Outputs (never plain strings)."""

    mirror_password: pulumi.Output[str] | None = None


def build_platform(spec: PlatformSpec, secrets: StackSecrets) -> None:
    cluster = ExistingCluster(
        "cluster", ExistingClusterArgs(kubeconfig=spec.target.kubeconfig, context=spec.target.context)
    )
    mirror = spec.airgap.mirror if spec.airgap.enabled else None
    ctx = PlatformContext(
        provider=cluster.provider,
        platform=spec.metadata.name,
        environment=spec.metadata.environment,
        cost_center=spec.metadata.cost_center,
        kubernetes_version=spec.kubernetes.version,
        mirror_registry=mirror.registry if mirror else None,
        skip_await=spec.testing.skip_await,
    )
    mirror_auth = None
    if mirror and mirror.pull_secret and secrets.mirror_password is not None:
        mirror_auth = pulumi.Output.concat(mirror.pull_secret.username, ":", secrets.mirror_password)
    Tenancy(
        "tenancy",
        TenancyArgs(
            teams=spec.teams,
            platform_admin_group=spec.rbac.platform_admin_group,
            ingress_from=tenant_ingress(spec),
            egress_to=tenant_egress(spec),
            mirror_registry=mirror.registry.split("/")[0] if mirror else None,
            mirror_auth=mirror_auth,
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
