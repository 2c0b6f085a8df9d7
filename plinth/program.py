"""The platform program: a validated spec in, one component per service out.

`platform/__main__.py` (the real engine) and the offline engine both call
`build_platform`, so `plinth plan` and `pulumi preview` run the same code.
"""

from __future__ import annotations

from typing import Any

import pulumi

from plinth.context import PlatformContext, StackSecrets
from plinth.modules.certs import CertManager
from plinth.modules.cluster import ExistingCluster, ExistingClusterArgs
from plinth.modules.crds import GatewayApiCrds, PrometheusOperatorCrds
from plinth.modules.monitoring import Monitoring
from plinth.modules.network import Cilium, PlatformGateway
from plinth.modules.secrets import Vault
from plinth.modules.storage import Longhorn
from plinth.modules.tenancy import Tenancy, TenancyArgs
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec

__all__ = ["SERVICES", "StackSecrets", "build_platform"]

# The platform's services in install order, each a PlatformService: `enabled(spec)`,
# `block(spec)` (its typed slice of the spec), `(name, block, ctx, opts)`, the peers
# tenancy opens to it and what it adds to each team namespace. Each depends on every
# enabled service before it, so CRDs land before their users and the CNI before
# anything that runs pods.
SERVICES: tuple[tuple[str, type[PlatformService]], ...] = (
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
    built: list[tuple[str, Any, PlatformService]] = []
    for name, service in SERVICES:
        if service.enabled(spec):
            block = service.block(spec)
            after = pulumi.ResourceOptions(depends_on=[component for *_, component in built])
            built.append((name, block, service(name, block, ctx, after)))
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
