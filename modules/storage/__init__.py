"""Longhorn: replicated block storage and the default StorageClass; with backups on, a recurring backup of
every volume to the backups bucket."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, resource_name
from plinth.modules.backups.alerts import alert_rule, volume_rules
from plinth.modules.certs import trust_bundle
from plinth.modules.cluster.differences import longhorn_values
from plinth.modules.helm import HelmService, merge_values
from plinth.modules.objectstore import CA_SECRET
from plinth.modules.objectstore.identities import bucket
from plinth.modules.storage.backuptarget import CREDENTIAL_SECRET, stores_to_object_store
from plinth.service import Need, Peer
from plinth.spec import models
from plinth.targets import Identity

REPLICAS_BY_ENVIRONMENT = {"dev": 1, "staging": 2, "prod": 3}
"""Volume replicas when the spec does not say: one node's loss must not lose prod data."""


SERVICE_ACCOUNT = (CHARTS["longhorn"].namespace, "longhorn-service-account")
"""The manager's ServiceAccount (the chart's default name, kept by Plinth)."""
BACKUP_PREFIX = "longhorn"
"""On-prem, volume backups live under s3://<platform>-backups/longhorn/."""
BACKUP_REGION = "us-east-1"
"""Longhorn's S3 URL names a region (s3://<bucket>@<region>/<path>); SeaweedFS accepts any, SigV4 signs with it."""
RECURRING_JOB = "plinth-volume-backup"
ALERT_RULE = "volume-backups"
"""The PrometheusRule with the volume backups' alerts (modules/backups/alerts.py)."""
BACKUP_CONCURRENCY = 2
"""Volumes backed up at once by the recurring job: bounds the load on the nodes and the store."""


def volume_backups(ctx: PlatformContext) -> bool:
    """Whether Longhorn backs up its volumes: backups on, and a target Longhorn can write to (the object store
    on-prem, the backups bucket with the manager's IAM role on eks; on gke Longhorn has no workload identity)."""
    return ctx.backups is not None and (not ctx.target.cloud or bool(longhorn_values(ctx.target)))


def backup_target(platform: str) -> str:
    return f"s3://{bucket(platform, 'backups')}@{BACKUP_REGION}/{BACKUP_PREFIX}/"


def recurring_job_spec(ctx: PlatformContext) -> dict:
    """Every volume of the default group (each volume without a group of its own) is backed up on the spec's
    schedule; Longhorn deletes a volume's backups beyond `retain`."""
    volumes = ctx.backups.volumes
    return {"name": RECURRING_JOB, "task": "backup", "cron": volumes.schedule, "retain": volumes.retain,
            "concurrency": BACKUP_CONCURRENCY, "groups": ["default"], "labels": {}}


class Longhorn(HelmService):
    """Longhorn (plinth:storage:Longhorn)."""

    type_token = "plinth:storage:Longhorn"
    chart_key = "longhorn"
    spec_path = ("storage", "longhorn")
    pod_security = "privileged"  # the manager and CSI plugin run privileged on every node

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        # Longhorn reaches S3 with the ServiceAccount's role; GCS only through HMAC keys (README).
        if spec.storage.longhorn.enabled and spec.target.type == "eks":
            return (Identity("longhorn", *SERVICE_ACCOUNT, "bucket-rw:backups"),)
        return ()

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if stores_to_object_store(spec):
            return (Need("object-store", ("backups", "enabled"), "on an existing cluster, Longhorn backs up its "
                         "volumes to the object store's backups bucket", "longhorn-backups",
                         "set backups.enabled: false with a backups.reason"),)
        return ()

    @classmethod
    def ingress(cls, block: models.Longhorn, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (cls.webhook(9502),)  # longhorn-manager's admission webhook

    @classmethod
    def holds_data(cls, block: models.Longhorn, ctx: PlatformContext) -> bool:
        # Uninstalling Longhorn deletes every volume, retained or not.
        return not ctx.delete_data_on_destroy

    @classmethod
    def owned_values(cls, block: models.Longhorn, ctx: PlatformContext) -> dict:
        replicas = block.replica_count or REPLICAS_BY_ENVIRONMENT[ctx.environment]
        allow_uninstall = block.allow_uninstall if block.allow_uninstall is not None else ctx.delete_data_on_destroy
        ui = 2 if ctx.prod_like else 1
        values: dict = {
            "persistence": {"defaultClass": block.default_class, "defaultClassReplicaCount": replicas,
                            # Retain: a deleted claim (its namespace destroyed) leaves its volume to restore.
                            "reclaimPolicy": "Delete" if ctx.delete_data_on_destroy else "Retain"},
            "defaultSettings": {"defaultReplicaCount": replicas, "deletingConfirmationFlag": allow_uninstall},
            "longhornUI": {"replicas": ui},
            "csi": {f"{part}ReplicaCount": ui for part in ("attacher", "provisioner", "resizer", "snapshotter")},
            "metrics": {"serviceMonitor": {"enabled": ctx.monitoring}},
            "global": {"imagePullSecrets": ctx.image_pull_secrets},
        }
        if ctx.mirror_registry:
            # Every Longhorn image (engine and CSI sidecars too) is <imageRegistry>/longhornio/<name>.
            values["global"]["imageRegistry"] = ctx.mirror_registry
        annotations = ctx.target.annotations(*SERVICE_ACCOUNT)
        if annotations:
            values["serviceAccount"] = {"annotations": annotations}
        if ctx.backups is not None and not ctx.target.cloud:
            values["defaultBackupStore"] = {"backupTarget": backup_target(ctx.platform),
                                            "backupTargetCredentialSecret": CREDENTIAL_SECRET}
        return merge_values(values, longhorn_values(ctx.target))

    def prerequisites(self, name: str, block: models.Longhorn, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        if ctx.backups is None or ctx.target.cloud:
            return []
        # On-prem: the platform CA for the backup target's Secret, which the configure stage writes from it
        # (backuptarget.py: Longhorn takes the CA as text only). The object store, installed after Longhorn,
        # admits its pods (ObjectStore.ingress).
        return [trust_bundle(resource_name(name, "object-store-ca"),
                             ctx.metadata(CA_SECRET, name, namespace=self.chart().namespace), opts)]

    def objects(self, name: str, block: models.Longhorn, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if not volume_backups(ctx):
            return
        namespace = self.chart().namespace
        k8s.apiextensions.CustomResource(
            resource_name(name, "volume-backup"), api_version="longhorn.io/v1beta2", kind="RecurringJob",
            metadata=ctx.metadata(RECURRING_JOB, name, namespace=namespace),
            spec=recurring_job_spec(ctx), opts=opts)
        if ctx.monitoring:  # the chart's ServiceMonitor (owned values) scrapes the managers' metrics
            alert_rule(resource_name(name, "backup-alerts"), ctx.metadata(ALERT_RULE, name, namespace=namespace),
                       "plinth-backups-longhorn",
                       volume_rules(namespace, RECURRING_JOB, ctx.backups.volumes.schedule), opts)
