"""Backups of the platform's data (spec `backups`): every CloudNativePG cluster archives its WAL and takes
scheduled base backups through the Barman Cloud plugin, into the backups bucket.

Two parts: the plugin (`BarmanCloud`, a release in the CloudNativePG operator's namespace) and, for each
Cluster, `postgres_cluster`: the Cluster with the plugin as its WAL archiver, its `ObjectStore` (where and how
long), its `ScheduledBackup`, and on-prem its S3 credentials and the object store's door for it. The services
owning a database (Harbor, monitoring, Feast) declare their Cluster through `postgres_cluster`, so none is
planned without its backup. Restore procedure and RPO: README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import ImageRef
from plinth.context import PlatformContext, resource_name
from plinth.modules.backups.alerts import alert_rule, database_rules
from plinth.modules.certs import trust_bundle
from plinth.modules.helm import HelmService
from plinth.modules.objectstore import ENDPOINT, client_policy
from plinth.modules.objectstore.identities import bucket, derive
from plinth.objects import disruption_budget, stack_secret
from plinth.service import Need
from plinth.spec.errors import Violation
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity

PLUGIN = "barman-cloud.cloudnative-pg.io"
"""The plugin's name, as a Cluster's `spec.plugins` and a ScheduledBackup's `pluginConfiguration` name it."""
API = "barmancloud.cnpg.io/v1"
PREFIX = "postgres"
"""Every cluster's backups live under s3://<backups bucket>/postgres/<namespace>/<cluster>/ (Barman's server
name is the cluster's): the layout tests/test_backup_drill.py restores from."""
IDENTITY = "backups"
"""The object store's purpose identity the databases write with (modules/objectstore/identities.py)."""
KEY_ID, SECRET_KEY = "ACCESS_KEY_ID", "ACCESS_SECRET_KEY"
COMPRESSION = "gzip"


def backups_on(spec: PlatformSpec) -> bool:
    return spec.backups.active(spec.metadata.environment)


def database_identities(spec: PlatformSpec, namespace: str, cluster: str) -> tuple[Identity, ...]:
    """eks and gke, backups on: the cloud identity a Cluster's pods archive with (read and write on the backups
    bucket), trusted by the ServiceAccount CloudNativePG names after the cluster. The service owning the Cluster
    declares it (PlatformService.identities)."""
    if backups_on(spec) and spec.target.type != "existing":
        return (Identity(cluster, namespace, cluster, "bucket-rw:backups"),)
    return ()


def base_backup_schedule(cron: str) -> str:
    """CloudNativePG's ScheduledBackup takes six fields, seconds first: the spec's 5-field cron at second 0."""
    return f"0 {cron}"


def destination(ctx: PlatformContext, namespace: str) -> str:
    """Barman's destinationPath of the clusters of one namespace (each cluster is a server below it)."""
    if ctx.target.cloud:
        return f"{ctx.target.bucket_url('backups')}/{PREFIX}/{namespace}"
    return f"s3://{bucket(ctx.platform, 'backups')}/{PREFIX}/{namespace}"


def store_name(cluster: str) -> str:
    return f"{cluster}-backup"


def credentials_secret(cluster: str) -> str:
    return f"{cluster}-backup-s3"


def ca_secret(cluster: str) -> str:
    """The object store's CA (key `ca.crt`) the cluster's Barman Cloud trusts (certs.trust_bundle)."""
    return f"{cluster}-backup-ca"


def object_store_spec(cluster: str, namespace: str, ctx: PlatformContext) -> dict:
    """The plugin's ObjectStore of one cluster: where (the backups bucket), with what (on-prem the `backups`
    identity's keys from a Secret; eks the pods' IAM role, gke their workload identity), compression and the
    retention (Barman's recovery window: older base backups and the WAL only they need are deleted)."""
    configuration: dict = {"destinationPath": destination(ctx, namespace)}
    if ctx.target.type == "eks":
        configuration["s3Credentials"] = {"inheritFromIAMRole": True}
    elif ctx.target.type == "gke":
        configuration["googleCredentials"] = {"gkeEnvironment": True}
    else:
        secret = credentials_secret(cluster)
        configuration["endpointURL"] = ENDPOINT
        configuration["endpointCA"] = {"name": ca_secret(cluster), "key": "ca.crt"}
        configuration["s3Credentials"] = {"accessKeyId": {"name": secret, "key": KEY_ID},
                                          "secretAccessKey": {"name": secret, "key": SECRET_KEY}}
    configuration["wal"] = {"compression": COMPRESSION}
    configuration["data"] = {"compression": COMPRESSION}
    return {"configuration": configuration, "retentionPolicy": ctx.backups.retention_for(ctx.environment)}


def plugin_entry(cluster: str) -> dict:
    """The Cluster's `spec.plugins` entry: the plugin archives its WAL into the cluster's ObjectStore."""
    return {"name": PLUGIN, "isWALArchiver": True, "parameters": {"barmanObjectName": store_name(cluster)}}


def scheduled_backup_spec(cluster: str, ctx: PlatformContext) -> dict:
    return {
        "schedule": base_backup_schedule(ctx.backups.databases.schedule),
        "cluster": {"name": cluster},
        "method": "plugin",
        "pluginConfiguration": {"name": PLUGIN},
        # A first base backup as soon as the Cluster exists: WAL alone restores nothing.
        "immediate": True,
        # Backups belong to the ScheduledBackup: deleting it (with the Cluster) leaves the bucket's data alone.
        "backupOwnerReference": "self",
    }


def postgres_cluster(resource: str, cluster: str, namespace: str, component: str, spec: dict,
                     ctx: PlatformContext, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """A CloudNativePG Cluster and, with backups on, everything that backs it up."""
    if ctx.backups is None:
        return [k8s.apiextensions.CustomResource(
            resource, api_version="postgresql.cnpg.io/v1", kind="Cluster",
            metadata=ctx.metadata(cluster, component, namespace=namespace), spec=spec, opts=opts)]
    made: list[pulumi.Resource] = []
    if not ctx.target.cloud:
        seed = ctx.secrets.object_store_seed
        if seed is None:
            raise ValueError("backups to the object store need the stack secret plinth:objectStoreSeed")
        platform = ctx.platform
        made.append(stack_secret(
            resource_name(resource, "backup-s3"), ctx.metadata(credentials_secret(cluster), component,
                                                                namespace=namespace),
            f"derived from plinth:objectStoreSeed (the object store's `{IDENTITY}` identity)",
            pulumi.Output.secret(seed).apply(lambda s: {KEY_ID: derive(s, platform, IDENTITY, "access"),
                                                        SECRET_KEY: derive(s, platform, IDENTITY, "secret")}),
            opts))
        made.append(client_policy(resource_name(resource, "backup-ingress"), cluster, namespace,
                                  {"cnpg.io/cluster": cluster}, component, ctx, opts))
        made.append(trust_bundle(resource_name(resource, "backup-ca"),
                                 ctx.metadata(ca_secret(cluster), component, namespace=namespace), opts))
    made.append(k8s.apiextensions.CustomResource(
        resource_name(resource, "backup-store"), api_version=API, kind="ObjectStore",
        metadata=ctx.metadata(store_name(cluster), component, namespace=namespace),
        spec=object_store_spec(cluster, namespace, ctx), opts=opts))
    annotations = ctx.target.annotations(namespace, cluster)  # the cloud identity of the cluster's pods, if any
    backed_up = {**spec, "plugins": [plugin_entry(cluster)],
                 **({"serviceAccountTemplate": {"metadata": {"annotations": annotations}}} if annotations else {})}
    made.append(k8s.apiextensions.CustomResource(
        resource, api_version="postgresql.cnpg.io/v1", kind="Cluster",
        metadata=ctx.metadata(cluster, component, namespace=namespace), spec=backed_up,
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=list(made)))))
    made.append(k8s.apiextensions.CustomResource(
        resource_name(resource, "scheduled-backup"), api_version="postgresql.cnpg.io/v1", kind="ScheduledBackup",
        metadata=ctx.metadata(store_name(cluster), component, namespace=namespace),
        spec=scheduled_backup_spec(cluster, ctx),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[made[-1]]))))
    return made


def instance_monitor(resource: str, cluster: str, namespace: str, component: str, ctx: PlatformContext,
                     opts: pulumi.ResourceOptions) -> pulumi.Resource:
    """The PodMonitor of a Cluster's instances (their `metrics` port): the operator's default queries (WAL
    archiving among them) and the Barman Cloud plugin's backup timestamps, which the backup alerts read. The
    service owning the Cluster plans it with monitoring on, after its release."""
    return k8s.apiextensions.CustomResource(
        resource, api_version="monitoring.coreos.com/v1", kind="PodMonitor",
        metadata=ctx.metadata(cluster, component, namespace=namespace),
        spec={"selector": {"matchLabels": {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"}},
              "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}]},
        opts=opts)


class BarmanCloud(HelmService):
    """CloudNativePG's Barman Cloud plugin (plinth:backups:BarmanCloud): WAL archiving and base backups of every
    Cluster into object storage."""

    type_token = "plinth:backups:BarmanCloud"
    chart_key = "plugin-barman-cloud"
    spec_path = ("backups",)
    shares_namespace = True  # the CloudNativePG operator's (its service comes first)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        # Imported here: the operator's module declares its Clusters through this one.
        from plinth.modules.featurestore import CloudNativePg

        return backups_on(spec) and CloudNativePg.enabled(spec)

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not cls.enabled(spec):
            return ()
        needs = [Need("cert-manager", ("backups", "enabled"), "the Barman Cloud plugin's TLS (the operator talks to "
                      "it over mutual TLS) comes from cert-manager", "backups")]
        if spec.target.type == "existing":
            needs.append(Need("object-store", ("backups", "enabled"), "on an existing cluster, backups go to the "
                              "object store's backups bucket", "backups",
                              "set backups.enabled: false with a backups.reason"))
        return tuple(needs)

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        backups = spec.backups
        if spec.metadata.environment == "prod" and backups.enabled is False and not backups.reason:
            yield Violation(("backups", "enabled"), "prod keeps backups on: backups.enabled is false without a "
                            "backups.reason", "prod-backups", "remove backups.enabled: false, or say why in "
                            "backups.reason")

    @classmethod
    def owned_values(cls, block, ctx: PlatformContext) -> dict:
        plugin, sidecar = (ImageRef.parse(ref).mirrored(ctx.mirror_registry) for ref in cls.chart().images)
        return {
            # registry and repository apart: the chart joins them (and the sidecar's into SIDECAR_IMAGE).
            "image": {"registry": plugin.registry, "repository": plugin.repository, "tag": plugin.tag},
            "sidecarImage": {"registry": sidecar.registry, "repository": sidecar.repository, "tag": sidecar.tag},
            "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
            # The operator calls the plugin for every WAL segment and backup: a second replica keeps archiving
            # through a node's loss (the chart's leader election keeps one reconciler).
            "replicaCount": 2 if ctx.prod_like else 1,
            "crds": {"create": True},
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        }

    def objects(self, name: str, block, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        if ctx.monitoring:  # every cluster's, from the instances the database's PodMonitor scrapes
            alert_rule(resource_name(name, "alerts"), ctx.metadata("postgres-backups", name,
                                                                   namespace=self.chart().namespace),
                       "plinth-backups-postgres", database_rules(ctx.backups.databases.schedule), opts)
        if ctx.prod_like:  # the chart has no budget of its own
            chart = self.chart()
            disruption_budget(resource_name(name, "pdb"), ctx.metadata(chart.name, name, namespace=chart.namespace),
                              {"app.kubernetes.io/name": chart.name, "app.kubernetes.io/instance": chart.name}, opts)


__all__ = ["API", "PLUGIN", "BarmanCloud", "instance_monitor", "postgres_cluster"]
