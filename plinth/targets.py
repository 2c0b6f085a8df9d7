"""What a cloud target gives the Kubernetes layer, derived from the spec alone.

The identities (who may use which cloud resource), the bucket names and the Vault
unseal key are all named from the spec, so the Kubernetes objects that refer to
them (a ServiceAccount's annotation, Vault's seal stanza, Longhorn's backup
target) are the same in a plan, a render and a deployment: no value waits for a
cloud ID. Each service declares the identities its pods use (PlatformService.identities),
the target modules (eks.py, gke.py) create exactly these, and the services read them
through `PlatformContext.target`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from plinth.spec.models import PlatformSpec

WORKLOAD_SERVICE_ACCOUNT = "workloads"
"""Every team's ServiceAccount for its workloads (tenancy): the model servers run as it."""

AWS_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
GCP_SA_ANNOTATION = "iam.gke.io/gcp-service-account"

BUCKET_PURPOSES = ("models", "artifacts", "features", "backups")
"""models: Triton model repositories, a prefix per team; artifacts: MLflow's run and model artifacts;
features: the feature store's offline data; backups: volume backups (Longhorn)."""


@dataclass(frozen=True)
class Identity:
    """One cloud identity, trusted by exactly one Kubernetes ServiceAccount."""

    name: str
    """Short name, unique in the platform (vault, feast, longhorn, models-<team>, cilium-operator, ebs-csi)."""
    namespace: str
    service_account: str
    access: str
    """What it may do: unseal (the Vault key), bucket-rw:<purpose>[/<prefix>], bucket-read:<purpose>/<prefix>, eni,
    ebs, autoscale (the cluster's own node groups)."""


@dataclass(frozen=True)
class TargetFacts:
    """The target's spec-derived facts; `existing` has none of the cloud ones."""

    type: str = "existing"
    region: str | None = None
    project: str | None = None
    """gke: the project; eks: the account ID."""
    prefix: str = ""
    """Names of cloud resources start with it: <metadata.name>-<metadata.environment>."""
    bucket_prefix: str = ""
    native_cidr: str | None = None
    """The network pods get addresses from: the VPC (eks, ENI IPAM) or the pods' secondary range (gke)."""
    identities: tuple[Identity, ...] = field(default_factory=tuple)

    @property
    def cloud(self) -> bool:
        return self.type != "existing"

    @property
    def object_store(self) -> str | None:
        """The cloud's object store URL scheme: s3 (eks), gs (gke); None on an existing cluster."""
        return {"eks": "s3", "gke": "gs"}.get(self.type)

    def in_object_store(self, repository: str | None) -> bool:
        """A model repository in the target's object store (None: the default, the models bucket)."""
        return bool(self.object_store) and (repository is None or repository.startswith(f"{self.object_store}://"))

    def bucket(self, purpose: str) -> str | None:
        """A bucket's name (None on an existing cluster)."""
        return f"{self.bucket_prefix}-{purpose}" if self.cloud else None

    def bucket_url(self, purpose: str) -> str | None:
        name = self.bucket(purpose)
        return name and f"{self.object_store}://{name}"

    @property
    def unseal_key(self) -> str | None:
        """The Vault unseal key Plinth creates: a KMS alias (eks) or Cloud KMS key name (gke)."""
        if self.type == "eks":
            return f"alias/{self.prefix}-vault-unseal"
        if self.type == "gke":
            return (f"projects/{self.project}/locations/{self.region}/keyRings/{self.prefix}/cryptoKeys/"
                    "vault-unseal")
        return None

    def identity(self, name: str) -> Identity | None:
        return next((i for i in self.identities if i.name == name), None)

    def principal(self, identity: Identity) -> str:
        """The cloud principal a ServiceAccount's pods act as: an IAM role ARN or a service account e-mail."""
        if self.type == "eks":
            region: str = self.region  # type: ignore[assignment]  # an eks target always has its region
            partition = "aws-cn" if region.startswith("cn-") else \
                "aws-us-gov" if region.startswith("us-gov-") else "aws"
            return f"arn:{partition}:iam::{self.project}:role/{self.role_name(identity)}"
        return f"{self.account_id(identity)}@{self.project}.iam.gserviceaccount.com"

    def role_name(self, identity: Identity) -> str:
        """eks: the IAM role (at most 64 characters)."""
        return bounded_name(f"{self.prefix}-{identity.name}", 64)

    def account_id(self, identity: Identity) -> str:
        """gke: the service account ID (6 to 30 characters)."""
        return bounded_name(f"{self.prefix}-{identity.name}", 30)

    def annotations(self, namespace: str, service_account: str) -> dict[str, str]:
        """The annotation that binds a ServiceAccount to its cloud identity ({} when it has none)."""
        for identity in self.identities:
            if (identity.namespace, identity.service_account) == (namespace, service_account):
                key = AWS_ROLE_ANNOTATION if self.type == "eks" else GCP_SA_ANNOTATION
                return {key: self.principal(identity)}
        return {}


def bounded_name(name: str, limit: int) -> str:
    """A name within a cloud's length limit: shortened with a stable hash of the whole (never random)."""
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - 7].rstrip('-')}-{digest}"


def target_facts(spec: PlatformSpec, identities: tuple[Identity, ...] = ()) -> TargetFacts:
    """The target's facts; `identities` are those its services declare (plinth.program.cloud_identities)."""
    target = spec.target
    if target.type == "existing":
        return TargetFacts()
    prefix = f"{spec.metadata.name}-{spec.metadata.environment}"
    return TargetFacts(
        type=target.type,
        region=target.region,
        project=target.account_id if target.type == "eks" else target.project,
        prefix=prefix,
        bucket_prefix=target.bucket_prefix or prefix,
        native_cidr=target.vpc_cidr if target.type == "eks" else target.pods_cidr,
        identities=identities,
    )


def vault_uses_target_key(spec: PlatformSpec) -> bool:
    """Vault auto-unseals with the key the target creates: its KMS type on its cloud, no key of its own."""
    vault, kms = spec.secrets.vault, {"eks": "awskms", "gke": "gcpckms"}.get(spec.target.type)
    return vault.enabled and kms is not None and vault.auto_unseal.type == kms and not vault.auto_unseal.key

