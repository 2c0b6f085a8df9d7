"""The platform program: a validated spec in, one component per service out.

`platform/__main__.py` (the real engine) and the offline engine both call
`build_platform`, so `plinth plan` and `pulumi preview` run the same code.
"""

from __future__ import annotations

from typing import Any

import pulumi

from plinth.context import PlatformContext, StackSecrets
from plinth.modules.admission import Admission
from plinth.modules.certs import CertManager
from plinth.modules.cluster import TargetArgs, target_class
from plinth.modules.cluster.autoscaler import ClusterAutoscaler
from plinth.modules.crds import GatewayApiCrds, PrometheusOperatorCrds
from plinth.modules.featurestore import CloudNativePg, Feast, RedisOperator
from plinth.modules.governance import Ledger
from plinth.modules.gpu import GpuOperator
from plinth.modules.monitoring import Monitoring
from plinth.modules.network import Cilium, PlatformGateway
from plinth.modules.pythonindex import PythonIndex
from plinth.modules.registry import Harbor
from plinth.modules.registry.projects import HarborProjects
from plinth.modules.secrets import Vault
from plinth.modules.secrets.configure import VaultTeams
from plinth.modules.secrets.operator import VaultSecretsOperator
from plinth.modules.serving import Serving
from plinth.modules.storage import Longhorn
from plinth.modules.tenancy import Tenancy, TenancyArgs
from plinth.provenance import Provenance
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec

__all__ = ["CONFIGURATION", "SERVICES", "STAGES", "StackSecrets", "build_configuration", "build_platform"]

# The platform's services in install order, each a PlatformService: `enabled(spec)`,
# `block(spec)` (its typed slice of the spec), `(name, block, ctx, opts)`, the peers
# tenancy opens to it and what it adds to each team namespace. Each depends on every
# enabled service before it, so CRDs land before their users and the CNI before
# anything that runs pods.
SERVICES: tuple[tuple[str, type[PlatformService]], ...] = (
    ("gateway-api-crds", GatewayApiCrds),
    ("prometheus-operator-crds", PrometheusOperatorCrds),
    # Right after the CRDs: every later object, the services' included, is admitted under the platform's rules.
    ("admission", Admission),
    ("cilium", Cilium),
    # eks: node groups scale (GPU pools from zero) once the CNI runs its pods.
    ("cluster-autoscaler", ClusterAutoscaler),
    ("cert-manager", CertManager),
    ("gateway", PlatformGateway),
    ("longhorn", Longhorn),
    ("vault", Vault),
    ("secrets-operator", VaultSecretsOperator),
    ("python-index", PythonIndex),
    # Before Harbor, Feast and monitoring: their databases are its Clusters.
    ("postgres-operator", CloudNativePg),
    ("harbor", Harbor),
    ("redis-operator", RedisOperator),
    ("feast", Feast),
    ("monitoring", Monitoring),
    # After monitoring: its GPU dashboard is a ConfigMap in the monitoring namespace.
    ("gpu-operator", GpuOperator),
    # After monitoring and the GPU operator: its dashboard is a ConfigMap in the monitoring namespace, and a
    # GPU model's Deployment becomes ready only once the device plugin runs (every service waits for all
    # the objects of the services before it, so before them each would wait for the other).
    ("serving", Serving),
    # Last: it records the deployment that everything before it completed.
    ("ledger", Ledger),
)


# The configure stage (a second stack, `plinth:configures: <stack>`): what lives inside the
# services once they run — Vault's mounts, policies and team roles, Harbor's team projects.
# It needs Vault initialised and Harbor up, so it cannot be part of the same deployment.
CONFIGURATION: tuple[tuple[str, type[PlatformService]], ...] = (
    ("vault-teams", VaultTeams),
    ("harbor-projects", HarborProjects),
)


def build_platform(spec: PlatformSpec, secrets: StackSecrets, provenance: Provenance | None = None) -> None:
    # The cluster target (existing, eks, gke): the one interface every module gets through the context.
    cluster = target_class(spec.target.type)("cluster", TargetArgs.from_spec(spec))
    ctx = PlatformContext.from_spec(spec, provider=cluster.provider, secrets=secrets, provenance=provenance,
                                    api_server=cluster.api_server)
    built: list[tuple[str, Any, PlatformService]] = []
    for name, service in SERVICES:
        if service.enabled(spec):
            block = service.block(spec)
            after = pulumi.ResourceOptions(depends_on=[component for *_, component in built])
            # Services take (name, block, ctx, opts), not ComponentResource's (type, name, props, opts).
            built.append((name, block, service(name, block, ctx, after)))  # type: ignore[arg-type]
    tenancy = Tenancy(
        "tenancy",
        TenancyArgs(
            teams=spec.teams,
            platform_admin_group=spec.rbac.platform_admin_group,
            ingress_from=tuple(peer for _, block, c in built for peer in c.tenant_ingress(block, ctx)),
            egress_to=tuple(peer for _, block, c in built for peer in c.tenant_egress(block, ctx)),
        ),
        ctx,
    )
    for name, block, component in built:
        for team in spec.teams:
            component.team_objects(name, block, ctx, team, pulumi.ResourceOptions(
                parent=component, provider=ctx.provider, depends_on=[tenancy.teams[team.name]]))
    pulumi.export("platform", spec.metadata.name)
    pulumi.export("environment", spec.metadata.environment)


def build_configuration(spec: PlatformSpec, secrets: StackSecrets, provenance: Provenance | None = None) -> None:
    ctx = PlatformContext.from_spec(spec, secrets=secrets, provenance=provenance)
    for name, part in CONFIGURATION:
        if part.enabled(spec):
            part(name, part.block(spec), ctx)  # type: ignore[arg-type]  # as above
    pulumi.export("platform", spec.metadata.name)
    pulumi.export("environment", spec.metadata.environment)


STAGES = {"platform": build_platform, "configure": build_configuration}
"""The program of each stage; a stack's stage is `configure` when it names the stack it configures."""
