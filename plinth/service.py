"""What `plinth.program` composes: a platform service, and the peers tenancy opens to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi

from plinth.catalog import PLATFORM_NAMESPACES
from plinth.context import PlatformContext, StackSecret
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec, Team
from plinth.targets import Identity
from plinth.vocabulary import SIGN_ON_NAMESPACE, platform_listener


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


@dataclass(frozen=True)
class Need:
    """Something a service needs that another service provides (a capability: `cert-manager`, `gateway`,
    `monitoring`). One rule (plinth.spec.rules.service_needs) checks every need of every enabled service."""

    capability: str
    loc: tuple
    """Where the finding points (YAML keys into the spec)."""
    why: str
    """What the service takes from it, ending in the capability's name: the message is `<why>, which is off`."""
    rule_prefix: str
    """The rule is `<rule_prefix>-needs-<capability>`."""
    otherwise: str = ""
    """The other way out, appended to the provider's fix as `, or <otherwise>`."""


@dataclass(frozen=True)
class GatewayHost:
    """A platform service's own host name on the platform Gateway: a listener only its namespace attaches to."""

    namespace: str
    host: str
    loc: tuple
    """The spec field that sets it (YAML keys)."""
    listener: str | None = None
    """The listener's name, where the namespace has several host names. Default: the namespace's name."""

    @property
    def listener_name(self) -> str:
        return self.listener or platform_listener(self.namespace)


class PlatformService(pulumi.ComponentResource):
    """One platform service: built from its typed slice of the spec and the shared context.

    The program builds every enabled service in order, then tenancy (with the peers the
    services declare), then asks each service for what it puts in every team namespace.
    """

    capability: ClassVar[str | None] = None
    """What this service provides to others' `needs` (when `provides` says so)."""
    capability_fix: ClassVar[str] = ""
    """How to turn the capability on: the fix of a need nothing provides."""
    secrets: ClassVar[tuple[StackSecret, ...]] = ()
    """Every stack secret this service may read (`needed_secrets` says which a spec needs)."""

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        raise NotImplementedError

    @classmethod
    def provides(cls, spec) -> bool:
        """Whether this spec turns `capability` on. Default: the service is enabled."""
        return cls.enabled(spec)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        """What this service (enabled in `spec`) needs of others. Default: nothing."""
        return ()

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        """The service's own cross-field rules, over the whole spec (enabled or not: a setting of a disabled
        service can be an error too). Default: none."""
        return iter(())

    @classmethod
    def gateway_host(cls, spec) -> GatewayHost | None:
        """This service's own host name on the platform Gateway, when the spec gives it one. Default: none."""
        return None

    @classmethod
    def gateway_hosts(cls, spec) -> tuple[GatewayHost, ...]:
        """Every host name of this service on the platform Gateway. Default: `gateway_host`'s, if any."""
        own = cls.gateway_host(spec)
        return (own,) if own else ()

    @classmethod
    def endpoints(cls, block: Any, ctx: PlatformContext) -> dict[str, str]:
        """Where people and tools reach this service (URLs, addresses): the component registers them and the
        stack exports them under `endpoints.<service>` (`plinth verify --stack` reads them). Default: none."""
        return {}

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        """The cloud identities this service's pods use in `spec` (eks/gke: the target creates them, each trusted
        by one of the service's ServiceAccounts). Default: none."""
        return ()

    @classmethod
    def team_accounts(cls, spec) -> tuple[tuple[str, str], ...]:
        """(team, `namespace/name`) of each ServiceAccount of this service, in a namespace of its own, that one of
        its RoleBindings in that team's namespace binds: the admission policy plinth-team-rolebindings admits
        exactly these besides the team's groups and the namespace's own accounts. Default: none."""
        return ()

    @classmethod
    def needed_secrets(cls, spec) -> tuple[StackSecret, ...]:
        """The stack secrets a deployment of `spec` cannot start without. Default: every one of `secrets`
        when the service is enabled."""
        return cls.secrets if cls.enabled(spec) else ()

    @classmethod
    def images(cls, block, ctx: PlatformContext) -> tuple[str, ...]:
        """Every image this service runs (`plinth images` mirrors them). Default: none."""
        return ()

    @classmethod
    def bundles(cls, block, ctx: PlatformContext) -> tuple[Any, ...]:
        """Plain manifest bundles this service applies (plinth.catalog.CrdBundle; `plinth images` mirrors
        them). Default: none."""
        return ()

    @classmethod
    def block(cls, spec) -> Any:
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
        proxied = tuple(sorted(port for ui_namespace, port in ctx.ui_proxied if ui_namespace == namespace))
        if proxied:  # the sign-on proxy in front of this namespace's web UIs
            peers.append(Peer("sign-on", SIGN_ON_NAMESPACE, proxied))
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


def gateway_serves(spec) -> bool:
    """The platform Gateway is on: Cilium with its Gateway API."""
    return spec.network.cilium.enabled and spec.network.cilium.gateway_api


def gateway_hostname_rules(spec, at: tuple, hostname: str, rule_prefix: str) -> Iterator[Violation]:
    """A service's `hostname` on the platform Gateway (on: the service `needs` it) is a name its listener and
    certificate serve: `<rule_prefix>-hostname`."""
    listener = spec.network.gateway.hostname
    if gateway_serves(spec) and not listener_serves(listener, hostname):
        yield Violation((*at, "hostname"), f"{hostname!r} is not a name the Gateway listener {listener!r} "
                        "and its certificate serve", f"{rule_prefix}-hostname",
                        f"use one name under {listener.removeprefix('*.')}" if listener.startswith("*.")
                        else f"use {listener}, or change network.gateway.hostname")


def listener_serves(listener: str, host: str) -> bool:
    """A wildcard listener (and its certificate) covers exactly one more label; a plain one, only itself."""
    if listener.startswith("*."):
        label, _, rest = host.partition(".")
        return bool(label) and rest == listener[2:]
    return host == listener
