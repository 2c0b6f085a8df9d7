"""Vault's raft snapshots (spec `backups.vault`): with backups on and Vault on raft (`secrets.vault.ha`), a
CronJob in Vault's namespace logs in with Kubernetes auth as the snapshot-only role (made by the configure
stage, configure.py) and saves `vault operator raft snapshot save` onto a volume of its own, keeping the newest
`backups.vault.retain`. The volume is a Longhorn volume of the default group, so Longhorn's recurring backup
(modules/storage) copies it to the backups bucket; no catalog image holds an S3 client for a direct upload."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS, ImageRef
from plinth.context import PlatformContext, resource_name
from plinth.securitycontext import restricted_container, restricted_pod

NAME = "vault-snapshot"
"""The CronJob, its ServiceAccount, the Vault role and policy (one name for the one purpose)."""
VOLUME = "vault-snapshots"
VOLUME_SIZE = "5Gi"
"""The snapshot volume: a raft snapshot is about the size of Vault's data (usually megabytes), kept `retain`
times."""
POLICY_HCL = 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'
"""The snapshot-only role's one capability: reading a raft snapshot."""
TOKEN_PATH = "/var/run/secrets/vault"
"""Where the job's ServiceAccount token (audience `vault`, what the role expects) is projected."""
MOUNT = "/snapshots"
UID = 10100
"""The job's own uid: high, unlike Vault's 100 (it reads only its projected token and the CA, and writes its
volume, which gets Vault's group through fsGroup)."""


def snapshots_on(ctx_backups, vault) -> bool:
    """Backups on (ctx.backups, or the spec's block when active) and Vault on raft."""
    return ctx_backups is not None and vault.enabled and vault.ha


def script(auth_mount: str) -> str:
    """Log in, save the snapshot under a temporary name (a failed save leaves no snapshot-looking file), keep the
    newest $RETAIN."""
    return (
        "set -eu\n"
        f'VAULT_TOKEN="$(vault write -field=token auth/{auth_mount}/login role={NAME} jwt=@{TOKEN_PATH}/token)"\n'
        "export VAULT_TOKEN\n"
        f'file="{MOUNT}/vault-$(date -u +%Y%m%dT%H%M%SZ).snap"\n'
        'vault operator raft snapshot save "$file.partial"\n'
        'mv "$file.partial" "$file"\n'
        f"ls -1t {MOUNT}/vault-*.snap | tail -n +$((RETAIN + 1)) | xargs -r rm -f --\n"
        f"ls -l {MOUNT}\n")


def cronjob_spec(ctx: PlatformContext, image: str, tls_secret: str, gid: int, api_port: int,
                 auth_mount: str, audience: str) -> dict:
    vault = CHARTS["vault"]
    pod = {
        "serviceAccountName": NAME,
        "automountServiceAccountToken": False,  # only the projected token, for Vault's audience
        "restartPolicy": "OnFailure",
        "securityContext": restricted_pod(UID, gid, gid),
        "imagePullSecrets": [{"name": s} for s in ctx.image_pull_secrets],
        "containers": [{
            "name": "snapshot",
            "image": image,
            "imagePullPolicy": "Always",  # the tag is pinned; Always re-checks it against the registry
            "command": ["/bin/sh", "-c", script(auth_mount)],
            "env": [
                # The active server: a snapshot is the leader's.
                {"name": "VAULT_ADDR", "value": f"https://{vault.name}-active.{vault.namespace}.svc:{api_port}"},
                {"name": "VAULT_CACERT", "value": "/vault/tls/ca.crt"},
                {"name": "HOME", "value": "/tmp"},
                {"name": "RETAIN", "value": str(ctx.backups.vault.retain)},  # snapshots kept (the report reads it)
            ],
            "securityContext": restricted_container(read_only_root=True),
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
            "volumeMounts": [{"name": "snapshots", "mountPath": MOUNT}, {"name": "token", "mountPath": TOKEN_PATH,
                                                                        "readOnly": True},
                             {"name": "ca", "mountPath": "/vault/tls", "readOnly": True},
                             {"name": "tmp", "mountPath": "/tmp"}],
        }],
        "volumes": [
            {"name": "snapshots", "persistentVolumeClaim": {"claimName": VOLUME}},
            {"name": "token", "projected": {"sources": [{"serviceAccountToken": {
                "audience": audience, "expirationSeconds": 600, "path": "token"}}]}},
            # The platform CA only, not the listener's key.
            {"name": "ca", "secret": {"secretName": tls_secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    return {
        "schedule": ctx.backups.vault.schedule,
        "timeZone": "Etc/UTC",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 3600,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"spec": {"backoffLimit": 2, "activeDeadlineSeconds": 1800,
                                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": NAME}},
                                              "spec": pod}}},
    }


def snapshot_objects(name: str, ctx: PlatformContext, server_image: str, tls_secret: str, gid: int,
                     api_port: int, auth_mount: str, audience: str,
                     opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
    """The ServiceAccount, the snapshot volume and the CronJob, in Vault's namespace."""
    ns = CHARTS["vault"].namespace
    image = ImageRef.parse(server_image).mirrored(ctx.mirror_registry)
    account = k8s.core.v1.ServiceAccount(resource_name(name, "snapshot-sa"),
                                         metadata=ctx.metadata(NAME, name, namespace=ns),
                                         automount_service_account_token=False, opts=opts)
    claim = k8s.core.v1.PersistentVolumeClaim(
        resource_name(name, "snapshot-volume"), metadata=ctx.metadata(VOLUME, name, namespace=ns),
        # No storageClassName: the cluster's default (Longhorn's, whose recurring backup copies it off-site).
        spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": VOLUME_SIZE}}}, opts=opts)
    job = k8s.batch.v1.CronJob(
        resource_name(name, "snapshot"), metadata=ctx.metadata(NAME, name, namespace=ns),
        spec=cronjob_spec(ctx, str(image), tls_secret, gid, api_port, auth_mount, audience),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[account, claim])))
    return [account, claim, job]
