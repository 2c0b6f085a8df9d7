"""What `plinth.program` composes: a platform service, and the peers tenancy opens to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from plinth.context import PlatformContext


@dataclass(frozen=True)
class Peer:
    """A platform service a team's pods may talk to, or that may talk to them."""

    name: str
    """Short name, used in the policy name (allow-<direction>-<name>)."""
    namespace: str
    ports: tuple[int, ...] = ()
    """TCP ports; empty means all ports."""


class PlatformService(pulumi.ComponentResource):
    """One platform service: built from its typed slice of the spec and the shared context.

    The program builds every enabled service in order, then tenancy (with the peers the
    services declare), then asks each service for what it puts in every team namespace.
    """

    @classmethod
    def enabled(cls, spec) -> bool:
        raise NotImplementedError

    @classmethod
    def block(cls, spec) -> Any:
        """The service's typed slice of the spec."""
        raise NotImplementedError

    @classmethod
    def tenant_ingress(cls, block, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Platform namespaces of this service that must reach team pods (scrapes, the gateway)."""
        return ()

    @classmethod
    def tenant_egress(cls, block, ctx: PlatformContext) -> tuple[Peer, ...]:
        """Endpoints of this service team pods may reach; nothing else of the platform is reachable."""
        return ()

    def team_objects(self, name: str, block, ctx: PlatformContext, team, opts: pulumi.ResourceOptions) -> None:
        """Objects this service puts in one team's namespace (built after the namespace); default: none.

        `opts` carries the provider, this component as parent and the wait for the team's namespace.
        """
