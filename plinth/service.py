"""What `plinth.program` composes: a platform service, and the peers tenancy opens to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext
from plinth.spec.models import PlatformSpec, Team


@dataclass(frozen=True)
class Peer:
    """The other side of an allowed connection: a namespace, every team namespace, or a Cilium entity."""

    name: str
    """Short name, used in the policy name (allow-<direction>-<name>)."""
    namespace: str | None = None
    """Pods of this namespace."""
    ports: tuple[int, ...] = ()
    """TCP ports; empty means all ports."""
    teams: bool = False
    """Pods of every team namespace of this platform."""
    entity: str | None = None
    """A Cilium entity: `ingress` (the Gateway's proxies) or `kube-apiserver` (admission webhooks). Without
    Cilium, an apiserver peer falls back to any source on the given ports (the API server's address is the
    cluster's, not a pod's), and an ingress peer has nothing to allow (the Gateway needs Cilium)."""


class PlatformService(pulumi.ComponentResource):
    """One platform service: built from its typed slice of the spec and the shared context.

    The program builds every enabled service in order, then tenancy (with the peers the
    services declare), then asks each service for what it puts in every team namespace.
    """

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        raise NotImplementedError

    @classmethod
    def block(cls, spec: PlatformSpec) -> Any:
        """The service's typed slice of the spec."""
        raise NotImplementedError

    @classmethod
    def ingress(cls, block: Any, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Who may reach this service's namespace besides its own pods, Prometheus and the teams it serves
        (`tenant_egress`); its namespace is default-deny for ingress otherwise. Default: nobody."""
        return ()

    @classmethod
    def namespace_peers(cls, block: Any, ctx: PlatformContext, namespace: str) -> tuple[Peer, ...]:
        """Every peer the service's namespace admits: `ingress`, Prometheus, and the teams it serves."""
        peers = list(cls.ingress(block, ctx))
        if ctx.monitoring and namespace != PLATFORM_NAMESPACES["monitoring"]:
            peers.append(Peer("monitoring", PLATFORM_NAMESPACES["monitoring"]))
        ports = tuple(sorted({port for peer in cls.tenant_egress(block, ctx) for port in peer.ports}))
        if ports:
            peers.append(Peer("teams", ports=ports, teams=True))
        return tuple(peers)

    @classmethod
    def tenant_ingress(cls, block: Any, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Platform namespaces of this service that must reach team pods (scrapes, the gateway)."""
        return ()

    @classmethod
    def tenant_egress(cls, block: Any, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Endpoints of this service team pods may reach; nothing else of the platform is reachable."""
        return ()

    def team_objects(self, name: str, block: Any, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        """Objects this service puts in one team's namespace (built after the namespace); default: none.

        `opts` carries the provider, this component as parent and the wait for the team's namespace.
        """
