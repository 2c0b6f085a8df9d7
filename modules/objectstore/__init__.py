"""On-prem S3 (storage.objectStore): SeaweedFS (master, volume and filer StatefulSets) with the filer's S3 API.

Every value the chart would generate at render time is pinned: the S3 identities come from a Secret Plinth
creates before the release, their keys derived from the stack secret plinth:objectStoreSeed
(`identities.py`). The choices, and what a real server must confirm: README.md beside this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from plinth.catalog import CHARTS, PLATFORM_NAMESPACES
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.certs import certificate, trust_bundle
from plinth.modules.helm import HelmService, image_values
from plinth.modules.objectstore.identities import buckets, s3_config_json
from plinth.objects import admit_client, stack_secret
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.service import Need, Peer
from plinth.spec.errors import Violation
from plinth.spec.models import Team
from plinth.vocabulary import OBJECT_STORE_ENDPOINT, OBJECT_STORE_HOST, OBJECT_STORE_PORT

SEED = StackSecret("objectStoreSeed", "seed of every S3 access key of the object store (storage.objectStore)")
"""The one stack secret of the object store: every identity's access and secret key is derived from it."""
CONFIG_SECRET = "object-store-s3-config"
"""filer.s3.existingConfigSecret: the filer mounts it at /etc/sw and reads key CONFIG_KEY (`-s3.config`)."""
CONFIG_KEY = "seaweedfs_s3_config"
ENDPOINT = OBJECT_STORE_ENDPOINT
"""Where in-cluster S3 clients reach the store (HTTPS on OBJECT_STORE_PORT); they trust CA_SECRET's CA."""
TLS_SECRET = "object-store-s3-tls"
"""The S3 API's certificate (cert-manager, from the platform ClusterIssuer), mounted into every filer at TLS_DIR."""
TLS_DIR = "/etc/plinth/s3-tls"
CA_SECRET = "object-store-ca"
"""Secret (key `ca.crt`) in each client's namespace: the platform CA the store's certificate comes from
(certs.trust_bundle). Clients mount it at CA_DIR and trust CA_FILE; boto3 and the aws CLI read AWS_CA_BUNDLE."""
CA_DIR = "/etc/plinth/object-store-ca"
CA_FILE = f"{CA_DIR}/ca.crt"
UID = 1000
"""The uid and gid SeaweedFS runs as. The image (a static `weed` on alpine) would run as root; it writes only to
its claims (/data, /data1) and log emptyDirs, which get this group (fsGroup)."""
REPLICATION = "001"
"""Staging and prod: each object on two volume servers of the same rack (SeaweedFS's XYZ placement)."""
COMPONENTS = ("master", "volume", "filer")


@dataclass(frozen=True)
class ObjectStoreArgs:
    """What the object store needs from the spec: its block and the platform StorageClass."""

    store: Any
    """storage.objectStore (plinth.spec.models.ObjectStore)."""
    storage_class: str
    """`storageClass`, Longhorn's `longhorn` when it is on, else "" (the cluster's default)."""
    longhorn_backups: bool = False
    """Longhorn backs its volumes up into the backups bucket (Longhorn on, backups on)."""
    workflow_teams: tuple[str, ...] = ()
    """Teams whose workflows keep artifacts in the artifacts bucket (pipelines.argo on): one identity each."""
    request_log_teams: tuple[str, ...] = ()
    """Teams with a model logging its requests (serving.models[].drift.requestLog): their identity also reads,
    writes and lists `<platform>-artifacts/requests/<team>/`."""


class ObjectStore(HelmService):
    """SeaweedFS with its S3 API (plinth:storage:ObjectStore)."""

    type_token = "plinth:storage:ObjectStore"
    chart_key = "seaweedfs"
    spec_path = ("storage", "objectStore")
    # Every container (the bucket Job's too) runs as uid 1000 with no privilege escalation, all capabilities
    # dropped and the RuntimeDefault seccomp profile, on PVC, emptyDir, secret and configMap volumes only.
    pod_security = "restricted"
    secrets = (SEED,)
    capability = "object-store"
    capability_fix = "enable storage.objectStore"

    @classmethod
    def enabled(cls, spec) -> bool:
        return spec.storage.object_store.enabled

    @classmethod
    def rules(cls, spec) -> Iterator[Violation]:
        if spec.storage.object_store.enabled and spec.target.type != "existing":
            yield Violation(("storage", "objectStore", "enabled"), f"the object store runs on an existing "
                            f"(on-prem) cluster only; a {spec.target.type} platform keeps its cloud's object "
                            "storage", "object-store-existing-only",
                            f"set storage.objectStore.enabled: false and use {spec.target.type}'s buckets")

    @classmethod
    def needs(cls, spec) -> tuple[Need, ...]:
        if not cls.enabled(spec):
            return ()
        tls = Need("cert-manager", ("storage", "objectStore", "enabled"), "the S3 API's certificate, and the CA its "
                   "clients trust, come from the platform CA of cert-manager", "object-store")
        # The teams' keys are never in the plan: Vault holds them (teamkeys.py), its operator brings them.
        if not spec.teams:
            return (tls,)
        return (tls, Need("secrets-operator", ("storage", "objectStore", "enabled"), "each team's keys to the object "
                          "store reach its namespace from Vault through the Vault Secrets Operator", "object-store"))

    @classmethod
    def block(cls, spec) -> ObjectStoreArgs:
        store = spec.storage.object_store
        longhorn = spec.storage.longhorn.enabled
        logging = {model.team for model in spec.serving.models if model.request_log}
        return ObjectStoreArgs(store, spec.storage.volume_class(store.storage_class),
                               longhorn and spec.backups.active(spec.metadata.environment),
                               tuple(team.name for team in spec.teams) if spec.pipelines.argo.enabled else (),
                               tuple(team.name for team in spec.teams if team.name in logging))

    @classmethod
    def ingress(cls, block: ObjectStoreArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Longhorn is installed before the store (the store's volumes are Longhorn's): the store opens the way
        # for its backups (the manager lists the target, the instance managers write the blocks). Services
        # installed after the store open their own (client_policy).
        return (Peer("longhorn", CHARTS["longhorn"].namespace, (OBJECT_STORE_PORT,)),) if block.longhorn_backups else ()

    @classmethod
    def user_values(cls, block: ObjectStoreArgs) -> dict:
        return dict(block.store.values)

    @classmethod
    def replicas(cls, ctx: PlatformContext) -> dict[str, int]:
        """Staging and prod: 3 masters (raft quorum), 3 volume servers (replication 001 keeps writing with one
        down: new volumes need two live servers), 2 filers (S3 on each). Dev: one of each."""
        return {"master": 3, "volume": 3, "filer": 2} if ctx.prod_like else dict.fromkeys(COMPONENTS, 1)

    @classmethod
    def owned_values(cls, block: ObjectStoreArgs, ctx: PlatformContext) -> dict:
        [image] = cls.chart().images
        replicas, sc, store = cls.replicas(ctx), block.storage_class, block.store
        secure = {"podSecurityContext": {"enabled": True, **restricted_pod(UID, UID, UID,
                                                                           fs_group_on_root_mismatch=True)},
                  "containerSecurityContext": {"enabled": True, **restricted_container()}}
        # Logs to an emptyDir: the chart's default hostPath is refused by Pod Security (host access).
        logs = {"logs": {"type": "emptyDir"}}

        def claim(size: str) -> dict:
            return {"type": "persistentVolumeClaim", "size": size, "storageClass": sc}

        return {
            "global": {
                "imagePullSecrets": ctx.image_pull_secrets,
                # No ClusterRole (it lets the pods create and delete any pod, for a filer-store migration Plinth
                # does not run) and no API token in the pods: SeaweedFS itself never calls the API server.
                "seaweedfs": {"createClusterRole": False, "automountServiceAccountToken": False,
                              "enableReplication": ctx.prod_like, "replicationPlacement": REPLICATION,
                              "monitoring": {"enabled": ctx.monitoring}},
            },
            # One image for every component: `image.repository` replaces the name, registry "" keeps it whole.
            "image": {"registry": "", **image_values(image, ctx)},
            "master": {"replicas": replicas["master"], "data": claim(store.master_size), **logs, **secure},
            "volume": {
                "replicas": replicas["volume"],
                "dataDirs": [{"name": "data1", **claim(store.volume_size), "maxVolumes": 0}],
                # Its Job (alpine/k8s) patches claims found through `lookup`: not run, so neither rendered nor mirrored.
                "resizeHook": {"enabled": False},
                **secure,
            },
            "filer": {
                "replicas": replicas["filer"], "data": claim(store.filer_size), **logs, **secure,
                "s3": {"enabled": True, "port": OBJECT_STORE_PORT, "enableAuth": True,
                       "existingConfigSecret": CONFIG_SECRET,
                       "createBuckets": [{"name": name} for name in buckets(ctx.platform)]},
                # With a certificate and no `-s3.port.https`, SeaweedFS serves S3 over HTTPS on `-s3.port` and
                # nothing in plain HTTP; it reloads the files when cert-manager renews them. (The chart's own
                # https values need `enableSecurity` and its own CA: its JWT keys and mTLS, not set here.)
                "extraArgs": tls_args(),
                "extraVolumes": yaml_text([{"name": "s3-tls", "secret": {
                    "secretName": TLS_SECRET, "defaultMode": 0o440,
                    "items": [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]}}]),
                "extraVolumeMounts": yaml_text([{"name": "s3-tls", "mountPath": TLS_DIR, "readOnly": True}]),
            },
        }

    @classmethod
    def tenant_egress(cls, block: ObjectStoreArgs, ctx: PlatformContext) -> tuple[Peer, ...]:
        # Teams reach the S3 API only (the `seaweedfs-filer` Service's swfs-s3 port), never the filer, master or
        # volume servers.
        return (Peer("object-store", cls.chart().namespace, (OBJECT_STORE_PORT,)),)

    @classmethod
    def pod_labels(cls, component: str) -> dict[str, str]:
        """The labels the chart puts on a component's pods (what a PodDisruptionBudget selects)."""
        name = cls.chart().name
        return {"app.kubernetes.io/component": component, "app.kubernetes.io/instance": name,
                "app.kubernetes.io/name": name}

    # --- objects --------------------------------------------------------------------------------------

    def prerequisites(self, name: str, block: ObjectStoreArgs, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        seed = ctx.secrets.object_store_seed
        if seed is None:
            raise ValueError("storage.objectStore needs the stack secret plinth:objectStoreSeed")
        platform, teams, workflows, logs = ctx.platform, ctx.teams, block.workflow_teams, block.request_log_teams
        config = pulumi.Output.secret(seed).apply(lambda s: s3_config_json(platform, teams, s, workflows, logs))
        namespace = self.chart().namespace
        return [stack_secret(resource_name(name, "s3-config"), ctx.metadata(CONFIG_SECRET, name, namespace=namespace),
                             "derived from plinth:objectStoreSeed (HMAC-SHA512 per identity and key)",
                             {CONFIG_KEY: pulumi.Output.secret(config)}, opts),
                # Every name a client may use for the Service: the short ones through the namespace's search path.
                certificate(resource_name(name, "s3-tls"), ctx.metadata(TLS_SECRET, name, namespace=namespace),
                            TLS_SECRET, [OBJECT_STORE_HOST, f"{OBJECT_STORE_HOST}.cluster.local",
                                         f"seaweedfs-s3.{namespace}", "seaweedfs-s3"], ["server auth"], opts)]

    def team_objects(self, name: str, block: ObjectStoreArgs, ctx: PlatformContext, team: Team,
                     opts: pulumi.ResourceOptions) -> None:
        # What a team's S3 clients (its workloads, Triton, its workflows' artifact steps) trust the store with.
        trust_bundle(resource_name(name, team.name, CA_SECRET),
                     ctx.metadata(CA_SECRET, name, namespace=team.name, team=team.name, cost_center=team.cost_center),
                     opts)

    def objects(self, name: str, block: ObjectStoreArgs, ctx: PlatformContext, opts: pulumi.ResourceOptions) -> None:
        # The chart has no PodDisruptionBudgets: Plinth's keep a drain from taking a master quorum, both copies
        # of a volume or every S3 endpoint at once.
        if not ctx.prod_like:
            return
        for component in COMPONENTS:
            k8s.policy.v1.PodDisruptionBudget(
                resource_name(name, component),
                metadata=ctx.metadata(f"{self.chart().name}-{component}", name, namespace=self.chart().namespace),
                spec={"maxUnavailable": 1, "selector": {"matchLabels": self.pod_labels(component)}},
                opts=opts,
            )


def tls_args(directory: str = TLS_DIR) -> list[str]:
    """The filer's arguments for its S3 API's certificate and key (the Secret TLS_SECRET at `directory`)."""
    return [f"-s3.cert.file={directory}/tls.crt", f"-s3.key.file={directory}/tls.key"]


def yaml_text(items: list[dict]) -> str:
    """A list of volumes or mounts as the chart's `extraVolumes`/`extraVolumeMounts` take them: block YAML text
    that the chart passes through `tpl` and indents into the pod's own list (nothing in it is a template)."""
    return yaml.safe_dump(items, default_flow_style=False, sort_keys=True)


def ca_volume(secret: str = CA_SECRET) -> dict:
    """The pod volume of the platform CA's `ca.crt` (from `secret`, in the pod's namespace)."""
    return {"name": CA_SECRET, "secret": {"secretName": secret, "defaultMode": 0o444,
                                          "items": [{"key": "ca.crt", "path": "ca.crt"}]}}


CA_MOUNT = {"name": CA_SECRET, "mountPath": CA_DIR, "readOnly": True}
"""The container mount of ca_volume(): CA_FILE is the CA."""


def client_policy(resource: str, client: str, namespace: str, pods: dict[str, str], component: str,
                  ctx: PlatformContext, opts: pulumi.ResourceOptions) -> k8s.networking.v1.NetworkPolicy:
    """The object store admits the pods of `namespace` matching the labels `pods` (the client: a server, a
    database) on its S3 port: a platform service that keeps data in a purpose bucket opens its own way in."""
    return admit_client(resource, (PLATFORM_NAMESPACES["object-store"], ObjectStore.pod_labels("filer"),
                                   OBJECT_STORE_PORT), (client, namespace, pods), component, ctx, opts)
