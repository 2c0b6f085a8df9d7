"""Longhorn: replicated block storage and the default StorageClass."""

from __future__ import annotations

from plinth.catalog import CHARTS
from plinth.context import PlatformContext
from plinth.modules.cluster.differences import longhorn_values
from plinth.modules.helm import HelmService, merge_values
from plinth.service import Peer
from plinth.spec import models
from plinth.targets import Identity

REPLICAS_BY_ENVIRONMENT = {"dev": 1, "staging": 2, "prod": 3}
"""Volume replicas when the spec does not say: one node's loss must not lose prod data."""


SERVICE_ACCOUNT = (CHARTS["longhorn"].namespace, "longhorn-service-account")
"""The manager's ServiceAccount (the chart's default name, kept by Plinth)."""


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
    def ingress(cls, block: models.Longhorn, ctx: PlatformContext) -> tuple[Peer, ...]:
        return (cls.webhook(9502),)  # longhorn-manager's admission webhook

    @classmethod
    def owned_values(cls, block: models.Longhorn, ctx: PlatformContext) -> dict:
        replicas = block.replica_count or REPLICAS_BY_ENVIRONMENT[ctx.environment]
        allow_uninstall = block.allow_uninstall if block.allow_uninstall is not None else ctx.environment != "prod"
        ui = 2 if ctx.prod_like else 1
        values: dict = {
            "persistence": {"defaultClass": block.default_class, "defaultClassReplicaCount": replicas},
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
        return merge_values(values, longhorn_values(ctx.target))
