"""Longhorn's backup target credentials on-prem, from the configure stage (plinth:storage:LonghornBackupTarget).

Longhorn takes the CA of an S3 server over TLS only as the PEM text itself, in the key AWS_CERT of the backup
target's Secret; no mounted file and no system bundle reach its instance managers. The platform stage cannot
know that text: cert-manager makes the platform CA while the platform comes up. The configure stage runs once
the platform does: it reads the CA from the Secret `object-store-ca` the platform stage left in Longhorn's
namespace (certs.trust_bundle) and writes the target's Secret with the `backups` identity's keys beside it.
Until it has run, Longhorn reports its backup target unavailable and backs nothing up.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, StackSecret, resource_name
from plinth.modules.backups import IDENTITY, backups_on
from plinth.modules.cluster import kubernetes_provider
from plinth.modules.objectstore import CA_SECRET, ENDPOINT
from plinth.modules.objectstore import SEED as OBJECT_STORE_SEED
from plinth.modules.objectstore.identities import derive
from plinth.objects import stack_secret
from plinth.service import PlatformService
from plinth.spec.models import ExistingTarget, PlatformSpec

NAMESPACE = CHARTS["longhorn"].namespace
CREDENTIAL_SECRET = "longhorn-backup-s3"
"""The backup target's Secret (Longhorn's keys: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, the endpoint
AWS_ENDPOINTS and the CA AWS_CERT), named by the platform stage's `defaultBackupStore` setting."""


def credentials(seed: str, platform: str, ca: str) -> dict[str, str]:
    """The Secret's keys: the object store's `backups` identity, where it is and the CA its certificate is from."""
    return {"AWS_ACCESS_KEY_ID": derive(seed, platform, IDENTITY, "access"),
            "AWS_SECRET_ACCESS_KEY": derive(seed, platform, IDENTITY, "secret"),
            "AWS_ENDPOINTS": ENDPOINT, "AWS_CERT": ca}


def stores_to_object_store(spec: PlatformSpec) -> bool:
    """Longhorn backs its volumes up into the on-prem object store (Longhorn and backups on, existing target)."""
    return spec.storage.longhorn.enabled and backups_on(spec) and spec.target.type == "existing"


@dataclass(frozen=True)
class LonghornBackupTargetArgs:
    platform: str
    """metadata.name: the store's keys are derived from it."""
    kubeconfig: str | None
    context: str | None
    """target.kubeconfig and target.context: the cluster the configure stage reaches."""


class LonghornBackupTarget(PlatformService):
    """The backup target's Secret, with the CA Longhorn needs as text (plinth:storage:LonghornBackupTarget)."""

    secrets = (OBJECT_STORE_SEED,)

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return stores_to_object_store(spec)

    @classmethod
    def block(cls, spec: PlatformSpec) -> LonghornBackupTargetArgs:
        target = spec.target
        if not isinstance(target, ExistingTarget):  # enabled() holds only there
            raise ValueError("Longhorn's backup target in the object store is for an existing cluster only")
        return LonghornBackupTargetArgs(spec.metadata.name, target.kubeconfig, target.context)

    @classmethod
    def needed_secrets(cls, spec: PlatformSpec) -> tuple[StackSecret, ...]:
        # The keys are derived here from the seed, as the object store derives them (the configured stack's value).
        return (OBJECT_STORE_SEED,) if cls.enabled(spec) else ()

    def __init__(self, name: str, args: LonghornBackupTargetArgs, ctx: PlatformContext,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:storage:LonghornBackupTarget", name, None, opts)
        seed = ctx.secrets.object_store_seed
        if seed is None:
            raise ValueError("Longhorn's backup target needs the stack secret plinth:objectStoreSeed in the configure "
                             "stage (the same value as the configured stack's)")
        provider = kubernetes_provider(name, self, args.kubeconfig, args.context)
        child = pulumi.ResourceOptions(parent=self, provider=provider)
        # Read, never owned: the platform stage's Certificate keeps it (only its public `ca.crt` is used).
        trusted = k8s.core.v1.Secret.get(resource_name(name, CA_SECRET), f"{NAMESPACE}/{CA_SECRET}", opts=child)
        ca = trusted.data.apply(lambda data: base64.b64decode((data or {}).get("ca.crt", "")).decode())
        platform = args.platform
        keys = pulumi.Output.all(pulumi.Output.secret(seed), ca).apply(
            lambda values: credentials(values[0], platform, values[1]))
        stack_secret(resource_name(name, "backup-s3"), ctx.metadata(CREDENTIAL_SECRET, name, namespace=NAMESPACE),
                     f"derived from plinth:objectStoreSeed (the object store's `{IDENTITY}` identity) and the "
                     f"platform CA of {NAMESPACE}/{CA_SECRET}", keys, child)
        self.register_outputs({})
