"""The platform program: a validated spec in, one component per service out.

`platform/__main__.py` (the real engine) and the offline engine both call
`build_platform`, so `plinth plan` and `pulumi preview` run the same code.
"""

from __future__ import annotations

from typing import Any

import pulumi

from plinth.context import MIRROR_PASSWORD, PlatformContext, StackSecret, StackSecrets
from plinth.modules.admission import Admission
from plinth.modules.backups import BarmanCloud
from plinth.modules.backups.velero import Velero
from plinth.modules.certs import CertManager
from plinth.modules.cluster import TARGET_IDENTITIES, TargetArgs, target_class
from plinth.modules.cluster.autoscaler import ClusterAutoscaler
from plinth.modules.crds import GatewayApiCrds, PrometheusOperatorCrds
from plinth.modules.dex import Dex
from plinth.modules.featurestore import CloudNativePg, Feast, RedisOperator
from plinth.modules.governance import Ledger
from plinth.modules.gpu import GpuOperator
from plinth.modules.mlflow import Mlflow
from plinth.modules.monitoring import Monitoring
from plinth.modules.network import Cilium, PlatformGateway
from plinth.modules.notebooks import JupyterHub
from plinth.modules.objectstore import ObjectStore
from plinth.modules.pipelines import ArgoWorkflows
from plinth.modules.pipelines.events import ArgoEvents
from plinth.modules.pythonindex import PythonIndex
from plinth.modules.registry import Harbor
from plinth.modules.registry.projects import HarborProjects
from plinth.modules.secrets import Vault
from plinth.modules.secrets.configure import VaultTeams
from plinth.modules.secrets.operator import VaultSecretsOperator
from plinth.modules.serving import Serving
from plinth.modules.signon import UiProxy
from plinth.modules.storage import Longhorn
from plinth.modules.storage.backuptarget import LonghornBackupTarget
from plinth.modules.tenancy import Tenancy, TenancyArgs
from plinth.provenance import Provenance
from plinth.service import PlatformService
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity

__all__ = ["CONFIGURATION", "SERVICES", "STAGES", "StackSecrets", "build_configuration", "build_platform",
           "cloud_identities", "needed_secrets", "platform_context", "stack_secrets"]

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
    # Right after its StorageClass: later services may keep their data (backups, artifacts) in its buckets.
    ("object-store", ObjectStore),
    ("vault", Vault),
    ("secrets-operator", VaultSecretsOperator),
    ("python-index", PythonIndex),
    # Before Harbor, MLflow, Feast and monitoring: their databases are its Clusters.
    ("postgres-operator", CloudNativePg),
    # Right after the operator, in its namespace: every Cluster after it archives its WAL through it.
    ("barman-cloud", BarmanCloud),
    # After the object store (its backups bucket admits Velero's pods): the namespaces' objects on a schedule.
    ("velero", Velero),
    ("harbor", Harbor),
    # After its operator (its database is a Cluster) and the object store (its artifacts bucket).
    ("mlflow", Mlflow),
    ("redis-operator", RedisOperator),
    ("feast", Feast),
    ("monitoring", Monitoring),
    # After monitoring: its GPU dashboard is a ConfigMap in the monitoring namespace.
    ("gpu-operator", GpuOperator),
    # After monitoring and the GPU operator: its dashboard is a ConfigMap in the monitoring namespace, and a
    # GPU model's Deployment becomes ready only once the device plugin runs (every service waits for all
    # the objects of the services before it, so before them each would wait for the other).
    ("serving", Serving),
    # After the UIs it fronts (monitoring, Cilium's Hubble UI, Longhorn): one oauth2-proxy per UI.
    ("ui-proxy", UiProxy),
    # After the services its workflows use (MLflow, the object store, the feature store); nothing waits for it.
    ("argo-workflows", ArgoWorkflows),
    # After Argo Workflows: its Sensors create Workflows in the team namespaces.
    ("argo-events", ArgoEvents),
    # After the services its notebooks use; nothing waits for it.
    ("jupyterhub", JupyterHub),
    # The platform's own identity provider (on the Gateway); its clients' surfaces do not wait for it.
    ("dex", Dex),
    # Last: it records the deployment that everything before it completed.
    ("ledger", Ledger),
)


# The configure stage (a second stack, `plinth:configures: <stack>`): what lives inside the
# services once they run — Vault's mounts, policies and team roles, Harbor's team projects.
# It needs Vault initialised and Harbor up, so it cannot be part of the same deployment.
CONFIGURATION: tuple[tuple[str, type[PlatformService]], ...] = (
    ("vault-teams", VaultTeams),
    ("harbor-projects", HarborProjects),
    # Longhorn's backup target takes the platform CA as text, which exists only once the platform runs.
    ("longhorn-backup-target", LonghornBackupTarget),
)


def build_platform(spec: PlatformSpec, secrets: StackSecrets, provenance: Provenance | None = None) -> None:
    # The cluster target (existing, eks, gke): the one interface every module gets through the context.
    cluster = target_class(spec.target.type)("cluster", TargetArgs.from_spec(spec, cloud_identities(spec)))
    ctx = platform_context(spec, provider=cluster.provider, secrets=secrets, provenance=provenance,
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
            identity=spec.identity,
        ),
        ctx,
    )
    endpoints = {name: component.endpoints(block, ctx) for name, block, component in built}
    pulumi.export("endpoints", {name: found for name, found in endpoints.items() if found})
    if cluster.kubeconfig is not None:
        pulumi.export("kubeconfig", cluster.kubeconfig)
    for name, block, component in built:
        for team in spec.teams:
            component.team_objects(name, block, ctx, team, pulumi.ResourceOptions(
                parent=component, provider=ctx.provider, depends_on=[tenancy.teams[team.name]]))
    pulumi.export("platform", spec.metadata.name)
    pulumi.export("environment", spec.metadata.environment)


def build_configuration(spec: PlatformSpec, secrets: StackSecrets, provenance: Provenance | None = None) -> None:
    ctx = platform_context(spec, secrets=secrets, provenance=provenance)
    for name, part in CONFIGURATION:
        if part.enabled(spec):
            part(name, part.block(spec), ctx)  # type: ignore[arg-type]  # as above
    pulumi.export("platform", spec.metadata.name)
    pulumi.export("environment", spec.metadata.environment)


def platform_context(spec: PlatformSpec, **resources: Any) -> PlatformContext:
    """The context every service is built with: what the services declare of themselves (their cloud
    identities, their hosts on the Gateway) and the deployment's `resources` (provider, secrets, provenance,
    api_server; none for a render or a check)."""
    return PlatformContext.from_spec(spec, identities=cloud_identities(spec), gateway_hosts=gateway_hosts(spec),
                                     team_accounts=team_accounts(spec), **resources)


def cloud_identities(spec: PlatformSpec) -> tuple[Identity, ...]:
    """Every cloud identity the spec needs (eks/gke create them): the target's add-ons', then each service's."""
    if spec.target.type == "existing":
        return ()
    found = list(TARGET_IDENTITIES.get(spec.target.type, ()))
    for _, service in SERVICES:
        found += service.identities(spec)
    return tuple(found)


def gateway_hosts(spec: PlatformSpec) -> tuple[tuple[str, str, str], ...]:
    """(namespace, host name, listener) of every enabled service's own hosts on the platform Gateway, by
    namespace."""
    return tuple(sorted((host.namespace, host.host, host.listener_name) for _, service in SERVICES
                        if service.enabled(spec) for host in service.gateway_hosts(spec)))


def team_accounts(spec: PlatformSpec) -> tuple[tuple[str, str], ...]:
    """(team, `namespace/name`) of every platform ServiceAccount the enabled services bind in a team's namespace."""
    return tuple(sorted({account for _, service in SERVICES if service.enabled(spec)
                         for account in service.team_accounts(spec)}))


def stack_secrets() -> dict[str, StackSecret]:
    """Every secret a stack may hold, by config key: the mirror's, then each service's and configure part's."""
    found = {MIRROR_PASSWORD.key: MIRROR_PASSWORD}
    for _, service in (*SERVICES, *CONFIGURATION):
        for secret in service.secrets:
            found.setdefault(secret.key, secret)
    return found


def needed_secrets(spec: PlatformSpec, stage: str = "platform") -> tuple[StackSecret, ...]:
    """The stack secrets a deployment of one stage of `spec` cannot start without."""
    mirror = spec.airgap.mirror if spec.airgap.enabled else None
    needed = [MIRROR_PASSWORD] if stage == "platform" and mirror and mirror.pull_secret else []
    for _, service in (SERVICES if stage == "platform" else CONFIGURATION):
        needed += [secret for secret in service.needed_secrets(spec) if secret not in needed]
    return tuple(needed)


STAGES = {"platform": build_platform, "configure": build_configuration}
"""The program of each stage; a stack's stage is `configure` when it names the stack it configures."""
