"""What every module receives besides its own slice of the spec."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi

from plinth.provenance import Provenance
from plinth.targets import Identity, TargetFacts, target_facts
from plinth.vocabulary import UIS_WITHOUT_LOGIN

MANAGED_BY = "plinth"
PULL_SECRET = "mirror-pull"
"""Name of the air-gap mirror's image pull secret, in every namespace that pulls from it."""
ISSUER = "plinth-ca"
"""The platform ClusterIssuer every platform certificate comes from."""
@dataclass(frozen=True)
class StackSecret:
    """A secret of the stack's config (`pulumi config set --secret plinth:<key>`): a service declares the ones it
    reads (PlatformService.secrets), and the program hands each to it as a secret Output under `field`."""

    key: str
    description: str
    entries: Callable[[Any], tuple[str, ...]] | None = None
    """For a map (`--path 'plinth:<key>.<name>'` per entry) rather than one string: the names a spec needs."""

    @property
    def holds_map(self) -> bool:
        return self.entries is not None

    @property
    def field(self) -> str:
        """The StackSecrets attribute: the key in snake case (harborAdminPassword -> harbor_admin_password)."""
        return re.sub(r"(?<!^)(?=[A-Z])", "_", self.key).lower()


MIRROR_PASSWORD = StackSecret("mirrorPassword", "password of the air-gap mirror's robot account")
"""The one secret of the platform itself rather than of a service: the air-gap mirror's pull secret."""


class StackSecrets:
    """Secret stack config, as secret Outputs (never plain strings), by StackSecret.field: `secrets.<field>`,
    None where the stack has none. Which fields exist is the services' to declare (PlatformService.secrets)."""

    def __init__(self, **values: pulumi.Output | None):
        self._values = dict(values)

    def __getattr__(self, field: str):
        if field.startswith("_"):
            raise AttributeError(field)
        return self._values.get(field)

    def __repr__(self) -> str:
        return f"StackSecrets({', '.join(sorted(self._values))})"  # names only, never a value


@dataclass(frozen=True)
class PlatformContext:
    """Shared, read-only facts for components: provider, labels, mirror, chart source, waits.

    Everything but `provider` and `mirror_auth` derives from the spec alone, so the
    rules pass can build one (without a provider) to compute the values a service owns.
    """

    provider: pulumi.ProviderResource | None
    """Kubernetes provider of the cluster target; every Kubernetes object uses it (None: pure contexts)."""
    platform: str
    environment: str
    cost_center: str
    kubernetes_version: str
    mirror_registry: str | None = None
    """Air-gap image mirror prefix; None when images come from their upstream registries."""
    pull_secret: bool = False
    """Namespaces that pull from the mirror get the image pull secret `mirror-pull` (spec airgap.mirror.pullSecret)."""
    mirror_auth: pulumi.Input[str] | None = None
    """`user:password` for the mirror as a secret Output (needed when `pull_secret`); never a plain string."""
    secrets: StackSecrets = StackSecrets()
    """The stack's secrets, for the services that need one."""
    teams: tuple[str, ...] = ()
    """Names of the tenant teams (also their namespaces)."""
    egress_cidrs: tuple[str, ...] = ()
    """Air-gap: the only networks outside the cluster that platform namespaces may reach."""
    chart_source: str | None = None
    """Where charts come from (oci://, https://, a directory); None: each chart's public repository."""
    files_mirror: str | None = None
    """Air-gap: HTTPS base serving manifest bundles (spec airgap.mirror.files)."""
    monitoring: bool = False
    """The Prometheus stack is on: services switch on their ServiceMonitors and rules."""
    cert_manager: bool = False
    """cert-manager and the platform ClusterIssuer are on: services take their certificates from it."""
    cilium: bool = False
    """Cilium is the CNI: network policies may name Cilium entities (the Gateway's proxies, the API server)."""
    l2_announcements: bool = False
    """Cilium assigns the Gateway's load-balancer address from the spec's ranges and announces it on L2
    (network.loadBalancer mode l2 on an existing target, with the Gateway on)."""
    delete_data_on_destroy: bool = False
    """storage.deleteDataOnDestroy: `pulumi destroy` may delete what holds data (else it is retained)."""
    skip_await: bool = False
    """Test clusters without nodes: don't wait for readiness or run Helm hooks, delete in the background."""
    await_timeout: int | None = None
    """Test clusters: seconds the engine waits for each object (and Helm for each release); None: its default."""
    provenance: Provenance | None = None
    """The files the spec came from (the ledger records them); None when the spec was not read from files."""
    target: TargetFacts = TargetFacts()
    """The cluster target's spec-derived facts: cloud identities (ServiceAccount annotations), buckets, keys."""
    api_server: tuple[pulumi.Input[str], int] | None = None
    """Where nodes reach the API server when the target creates the cluster (host, port); None: the spec's."""
    backups: Any = None
    """The spec's `backups` block when backups are on in this environment (plinth.spec.models.Backups), else
    None: every CloudNativePG cluster is backed up through it (modules/backups)."""
    ui_proxied: tuple[tuple[str, int], ...] = ()
    """(namespace, pod port) of each web UI the sign-on proxy (identity.uiProxy) reaches: its namespace admits
    the proxy there."""
    gateway_hosts: tuple[tuple[str, str, str], ...] = ()
    """(namespace, host name, listener name) of each platform host name with its own listener on the Gateway, by
    namespace (the program collects them from the services: PlatformService.gateway_hosts)."""
    team_accounts: tuple[tuple[str, str], ...] = ()
    """(team, `namespace/name`) of each platform ServiceAccount a RoleBinding in the team's namespace binds (the
    program collects them from the services: PlatformService.team_accounts)."""

    @classmethod
    def from_spec(cls, spec, provider: pulumi.ProviderResource | None = None,
                  secrets: StackSecrets | None = None, provenance: Provenance | None = None,
                  api_server: tuple[pulumi.Input[str], int] | None = None,
                  gateway_hosts: tuple[tuple[str, str, str], ...] = (),
                  identities: tuple[Identity, ...] = (),
                  team_accounts: tuple[tuple[str, str], ...] = ()) -> PlatformContext:
        mirror = spec.airgap.mirror if spec.airgap.enabled else None
        secrets = secrets or StackSecrets()
        mirror_auth = None
        if mirror and mirror.pull_secret and secrets.mirror_password is not None:
            mirror_auth = pulumi.Output.concat(mirror.pull_secret.username, ":", secrets.mirror_password)
        return cls(
            provider=provider,
            platform=spec.metadata.name,
            environment=spec.metadata.environment,
            cost_center=spec.metadata.cost_center,
            kubernetes_version=spec.kubernetes.version,
            mirror_registry=mirror.registry if mirror else None,
            pull_secret=bool(mirror and mirror.pull_secret),
            mirror_auth=mirror_auth,
            secrets=secrets,
            teams=tuple(team.name for team in spec.teams),
            egress_cidrs=mirror.cidrs if mirror else (),
            chart_source=spec.charts.source or (mirror.charts if mirror else None),
            files_mirror=mirror.files if mirror else None,
            monitoring=spec.monitoring.enabled,
            cert_manager=spec.certificates.cert_manager.enabled,
            cilium=spec.network.cilium.enabled,
            l2_announcements=(spec.target.type == "existing" and spec.network.cilium.enabled
                              and spec.network.cilium.gateway_api and spec.network.load_balancer.mode == "l2"),
            delete_data_on_destroy=spec.storage.delete_data_on_destroy,
            skip_await=spec.testing.skip_await,
            await_timeout=spec.testing.await_timeout_seconds,
            provenance=provenance,
            target=target_facts(spec, identities),
            api_server=api_server,
            gateway_hosts=gateway_hosts,
            team_accounts=team_accounts,
            ui_proxied=tuple((ui.namespace, ui.pod_port) for ui in UIS_WITHOUT_LOGIN
                             if spec.identity.ui_proxy.enabled and getattr(spec.identity.ui_proxy.hosts, ui.key)),
            backups=spec.backups if spec.backups.active(spec.metadata.environment) else None,
        )

    @property
    def image_pull_secrets(self) -> list[str]:
        """Names of the pull secrets pods of platform and team namespaces use."""
        return [PULL_SECRET] if self.pull_secret else []

    @property
    def prod_like(self) -> bool:
        """Staging runs like prod (HA), so what reaches prod was tried in that shape."""
        return self.environment != "dev"

    def replicas(self, chosen: int | None, prod_like: int = 2) -> int:
        """A replicated component's count: the spec's choice, else `prod_like` in staging and prod, 1 in dev."""
        return chosen or (prod_like if self.prod_like else 1)

    def labels(self, component: str, team: str | None = None, cost_center: str | None = None) -> dict[str, str]:
        """The labels every object carries (sorted keys keep renders byte-stable)."""
        labels = {
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": self.platform,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": MANAGED_BY,
            "plinth.dev/cost-center": cost_center or self.cost_center,
            "plinth.dev/environment": self.environment,
        }
        if team:
            labels["plinth.dev/team"] = team
        return dict(sorted(labels.items()))

    def annotations(self) -> dict[str, str] | None:
        """Engine annotations; only set for test clusters (see spec `testing`)."""
        annotations: dict[str, str] = {}
        if self.skip_await:
            annotations |= {"pulumi.com/deletionPropagationPolicy": "background", "pulumi.com/skipAwait": "true"}
        if self.await_timeout is not None:
            annotations["pulumi.com/timeoutSeconds"] = str(self.await_timeout)
        return annotations or None

    def metadata(self, name: str, component: str, namespace: str | None = None, team: str | None = None,
                 cost_center: str | None = None, labels: dict[str, str] | None = None,
                 annotations: dict[str, str] | None = None) -> dict:
        """ObjectMeta with an explicit name (no auto-naming: names are stable across runs)."""
        meta: dict = {"name": name, "labels": {**self.labels(component, team, cost_center), **(labels or {})}}
        if namespace:
            meta["namespace"] = namespace
        if self.annotations() or annotations:
            meta["annotations"] = {**(self.annotations() or {}), **(annotations or {})}
        return meta


def resource_name(*parts: str) -> str:
    """The Pulumi name of a resource, derived from spec keys only (never random)."""
    name = "-".join(p for p in parts if p)
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
