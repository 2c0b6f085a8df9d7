"""Velero (spec `backups.cluster`): the Kubernetes objects of the cluster's namespaces, backed up on a schedule
into the backups bucket's `velero/` prefix.

The databases (Barman Cloud), Longhorn's volumes and Vault's snapshots have their own backups (modules/backups,
storage, secrets); Velero keeps what those do not: every namespace's objects and the cluster-scoped objects they
use, so a lost namespace or cluster can be recreated before their data is restored. Restore procedure and what
is not covered: README.md beside this file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, ImageRef
from plinth.context import PlatformContext, resource_name
from plinth.modules.backups import IDENTITY, backups_on
from plinth.modules.backups.alerts import alert_rule, velero_rules
from plinth.modules.certs import trust_bundle
from plinth.modules.helm import HelmService, image_values
from plinth.modules.objectstore import CA_SECRET, ENDPOINT, client_policy
from plinth.modules.objectstore.identities import bucket, derive
from plinth.objects import stack_secret
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.spec.models import ClusterBackups, PlatformSpec
from plinth.targets import Identity

NAMESPACE = CHARTS["velero"].namespace
SERVICE_ACCOUNT = "velero-server"
"""The server's ServiceAccount (the chart's name for release `velero`): the one its cloud identity trusts."""
CLOUD_IDENTITY = "velero"
"""eks and gke: the cloud identity of the server's pods (read and write on the backups bucket)."""
PREFIX = "velero"
"""Velero's backups live under <backups bucket>/velero/ (beside postgres/ and longhorn/)."""
LOCATION = "default"
"""The BackupStorageLocation's name: the default location, which the Schedule names."""
SCHEDULE = "plinth-cluster"
CREDENTIALS_SECRET = "velero-backup-s3"
CREDENTIALS_KEY = "cloud"
"""The chart mounts the Secret at /credentials and points AWS_SHARED_CREDENTIALS_FILE at /credentials/cloud."""
REGION = "us-east-1"
"""The on-prem store ignores the region; the S3 client needs one to sign with (SigV4)."""
UID = 65532
"""The uid the Velero and plugin images declare (distroless / scratch `nonroot`)."""
PLUGINS = {"eks": "velero-plugin-for-aws", "gke": "velero-plugin-for-gcp", "existing": "velero-plugin-for-aws"}
"""The provider plugin a target's backups go through: S3 (eks, and the on-prem object store) or GCS (gke)."""
PROVIDERS = {"velero-plugin-for-aws": "aws", "velero-plugin-for-gcp": "gcp"}
POD_LABELS = {"app.kubernetes.io/name": "velero", "app.kubernetes.io/instance": "velero"}
"""The labels the chart gives the server's pods (what the object store admits)."""
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}


@dataclass(frozen=True)
class VeleroArgs:
    """What Velero needs from the spec."""

    cluster: ClusterBackups
    """backups.cluster: schedule, retention, namespaces and the chart's values."""
    target: str
    """target.type: which plugin and bucket."""


def plugin_image(target: str) -> str:
    """The catalog's plugin image for a target."""
    name = PLUGINS[target]
    return next(ref for ref in Velero.chart().images if ImageRef.parse(ref).name == name)


def storage_location(ctx: PlatformContext) -> dict:
    """The BackupStorageLocation `default` (Plinth's own object, like the Schedule): the backups bucket's `velero/`
    prefix. eks: S3 in the target's region with the server's IAM role; gke: GCS with its workload identity (the
    plugin signs download URLs as that service account); on-prem: the object store, path-style, with the
    `backups` identity's keys (the chart's credentials Secret) and the platform CA (`caCertRef`, which the chart's
    own location cannot set: its values take the CA's text, which the platform stage never has)."""
    storage: dict[str, Any] = {"prefix": PREFIX}
    location: dict[str, Any] = {"default": True, "accessMode": "ReadWrite", "objectStorage": storage}
    target = ctx.target
    if target.type == "eks":
        storage["bucket"] = target.bucket("backups")
        return {**location, "provider": "aws", "config": {"region": target.region}}
    if target.type == "gke":
        identity = target.identity(CLOUD_IDENTITY)
        storage["bucket"] = target.bucket("backups")
        return {**location, "provider": "gcp", **({"config": {"serviceAccount": target.principal(identity)}}
                                                   if identity else {})}
    storage |= {"bucket": bucket(ctx.platform, "backups"), "caCertRef": {"name": CA_SECRET, "key": "ca.crt"}}
    return {**location, "provider": "aws",
            "config": {"region": REGION, "s3ForcePathStyle": "true", "s3Url": ENDPOINT}}


def schedule_spec(block: VeleroArgs, ctx: PlatformContext) -> dict:
    """The Schedule: every (or the listed) namespace with the cluster-scoped objects they use, into the default
    location, kept `ttl`. No volume snapshots: volume data has its own backups (Longhorn, Barman Cloud)."""
    cluster = block.cluster
    return {
        "schedule": cluster.schedule,
        "template": {
            "includedNamespaces": list(cluster.namespaces) or ["*"],
            "includeClusterResources": True,
            "storageLocation": LOCATION,
            "ttl": cluster.ttl_for(ctx.environment),
            "snapshotVolumes": False,
            "defaultVolumesToFsBackup": False,
        },
        # Backups belong to no Schedule: deleting it leaves them in the bucket until their ttl.
        "useOwnerReferencesInBackup": False,
    }


def credentials_file(seed: str, platform: str) -> str:
    """The AWS shared credentials file of the object store's `backups` identity."""
    return (f"[default]\naws_access_key_id={derive(seed, platform, IDENTITY, 'access')}\n"
            f"aws_secret_access_key={derive(seed, platform, IDENTITY, 'secret')}\n")


class Velero(HelmService):
    """Velero (plinth:backups:Velero): scheduled backups of the namespaces' objects."""

    type_token = "plinth:backups:Velero"
    chart_key = "velero"
    spec_path = ("backups", "cluster")
    # The server and its plugin init container run as uid 65532 without privilege, capabilities or a writable
    # root filesystem; no node agent (it would mount the nodes' pod volumes).
    pod_security = "restricted"

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        # On an existing cluster the backups bucket is the object store's: without it there is nowhere to write.
        return backups_on(spec) and (spec.target.type != "existing" or spec.storage.object_store.enabled)

    @classmethod
    def block(cls, spec: PlatformSpec) -> VeleroArgs:
        return VeleroArgs(spec.backups.cluster, spec.target.type)

    @classmethod
    def user_values(cls, block: VeleroArgs) -> dict:
        return dict(block.cluster.values)

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        if backups_on(spec) and spec.target.type != "existing":
            return (Identity(CLOUD_IDENTITY, NAMESPACE, SERVICE_ACCOUNT, "bucket-rw:backups"),)
        return ()

    @classmethod
    def images(cls, block: VeleroArgs, ctx: PlatformContext) -> tuple[str, ...]:
        server = cls.chart().images[0]
        return (server, plugin_image(block.target))

    @classmethod
    def owned_values(cls, block: VeleroArgs, ctx: PlatformContext) -> dict:
        plugin = ImageRef.parse(plugin_image(block.target))
        on_prem = not ctx.target.cloud
        annotations = ctx.target.annotations(NAMESPACE, SERVICE_ACCOUNT)
        return {
            "image": {**image_values(cls.chart().images[0], ctx), "imagePullSecrets": list(ctx.image_pull_secrets)},
            "initContainers": [{
                "name": plugin.name, "image": str(plugin.mirrored(ctx.mirror_registry)),
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"mountPath": "/target", "name": "plugins"}],
                "securityContext": restricted_container(read_only_root=True),
                "resources": RESOURCES,
            }],
            "podSecurityContext": restricted_pod(UID, UID, UID),
            # A read-only root: the chart then mounts an emptyDir at /tmp (plugins and scratch are emptyDirs too).
            "containerSecurityContext": restricted_container(read_only_root=True),
            "resources": RESOURCES,
            "upgradeJobResources": RESOURCES,
            # The chart's pre-install/pre-upgrade Job applies the CRDs of this Velero (Helm never upgrades crds/).
            "upgradeCRDs": True,
            "cleanUpCRDs": False,
            "credentials": ({"useSecret": True, "existingSecret": CREDENTIALS_SECRET} if on_prem
                            else {"useSecret": False}),
            "serviceAccount": {"server": {"create": True, "name": SERVICE_ACCOUNT,
                                          **({"annotations": annotations} if annotations else {})}},
            # Backing up and restoring any object needs every permission: the chart binds cluster-admin.
            "rbac": {"create": True, "clusterAdministrator": True},
            "backupsEnabled": True,
            "snapshotsEnabled": False,
            "deployNodeAgent": False,
            # The location is Plinth's own object (objects), as the Schedule.
            "configuration": {"backupStorageLocation": [], "volumeSnapshotLocation": []},
            # The Schedule is Plinth's own object (objects), visible to policies and the report.
            "schedules": {},
            "metrics": {"enabled": True,
                        "serviceMonitor": {"enabled": ctx.monitoring, "autodetect": False},
                        "nodeAgentPodMonitor": {"enabled": False},
                        "prometheusRule": {"enabled": False}},
        }

    def prerequisites(self, name: str, block: VeleroArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        if ctx.target.cloud:
            return []
        seed = ctx.secrets.object_store_seed
        if seed is None:
            raise ValueError("backups to the object store need the stack secret plinth:objectStoreSeed")
        platform = ctx.platform
        return [
            stack_secret(resource_name(name, "backup-s3"), ctx.metadata(CREDENTIALS_SECRET, name, namespace=NAMESPACE),
                         f"derived from plinth:objectStoreSeed (the object store's `{IDENTITY}` identity)",
                         pulumi.Output.secret(seed).apply(lambda s: {CREDENTIALS_KEY: credentials_file(s, platform)}),
                         opts),
            client_policy(resource_name(name, "backup-ingress"), "velero", NAMESPACE, POD_LABELS, name, ctx, opts),
            trust_bundle(resource_name(name, "object-store-ca"), ctx.metadata(CA_SECRET, name, namespace=NAMESPACE),
                         opts),
        ]

    def objects(self, name: str, block: VeleroArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        k8s.apiextensions.CustomResource(
            resource_name(name, "location"), api_version="velero.io/v1", kind="BackupStorageLocation",
            metadata=ctx.metadata(LOCATION, name, namespace=NAMESPACE), spec=storage_location(ctx), opts=opts)
        k8s.apiextensions.CustomResource(
            resource_name(name, "schedule"), api_version="velero.io/v1", kind="Schedule",
            metadata=ctx.metadata(SCHEDULE, name, namespace=NAMESPACE), spec=schedule_spec(block, ctx), opts=opts)
        if ctx.monitoring:
            alert_rule(resource_name(name, "alerts"), ctx.metadata(f"{SCHEDULE}-backups", name, namespace=NAMESPACE),
                       "plinth-backups-velero", velero_rules(SCHEDULE, block.cluster.schedule), opts)


__all__ = ["Velero"]
