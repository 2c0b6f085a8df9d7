"""Cloud targets: private endpoints, encrypted and private buckets, workload identity scoped to one
service account."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterator
from typing import Any

from plinth.governance.policies.core import MANDATORY, Policy, dig
from plinth.vocabulary import AWS_PUBLIC_ENDPOINT_REASON, GCP_PUBLIC_ENDPOINT_REASON

EKS_CLUSTER = "aws:eks/cluster:Cluster"
S3_BUCKETS = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
S3_ENCRYPTION = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
                 "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
S3_PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
S3_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
GKE_CLUSTER = "gcp:container/cluster:Cluster"
GCS_BUCKET = "gcp:storage/bucket:Bucket"
IAM_ROLE = "aws:iam/role:Role"
GCP_SA_BINDINGS = ("gcp:serviceaccount/iAMBinding:IAMBinding", "gcp:serviceaccount/iAMMember:IAMMember")
WORKLOAD_IDENTITY_USER = "roles/iam.workloadIdentityUser"


def _cloud_private_and_encrypted(subjects, platform):
    """S3 encryption and public access blocks are their own resources, matched to a bucket by their `bucket`
    input against the bucket's `bucket` input: in a preview the bucket's id is unknown, so Plinth names its
    buckets explicitly (`bucket=`) and passes that name (`bucket=b.bucket`) to the configuration resources."""
    encrypted = {c.props.get("bucket") for c in subjects if c.type in S3_ENCRYPTION
                 and any(dig(rule, "applyServerSideEncryptionByDefault", "sseAlgorithm")
                         for rule in c.props.get("rules") or [])}
    blocks: dict[Any, list[dict]] = {}
    for b in subjects:
        if b.type == S3_PUBLIC_ACCESS_BLOCK:
            blocks.setdefault(b.props.get("bucket"), []).append(b.props)
    for s in subjects:
        if s.type == EKS_CLUSTER:
            # EKS's default is a public endpoint: only an explicit false makes it private.
            if dig(s.props, "vpcConfig", "endpointPublicAccess") is not False \
                    and not (s.props.get("tags") or {}).get(AWS_PUBLIC_ENDPOINT_REASON):
                yield s, (f"the API server endpoint is public (vpcConfig.endpointPublicAccess) without a "
                          f"{AWS_PUBLIC_ENDPOINT_REASON} tag")
        elif s.type in S3_BUCKETS:
            name = s.props.get("bucket")
            if not isinstance(name, str) or not name:
                yield s, "the bucket is not named explicitly (`bucket`), so its encryption and public access " \
                         "block cannot be matched to it"
                continue
            if name not in encrypted:
                yield s, f"no server-side encryption configuration for bucket {name}"
            found = blocks.get(name) or []
            if not found:
                yield s, f"no public access block for bucket {name}"
            elif not any(all(b.get(flag) is True for flag in S3_BLOCK_FLAGS) for b in found):
                off = [flag for flag in S3_BLOCK_FLAGS if found[0].get(flag) is not True]
                yield s, f"the public access block for bucket {name} leaves {', '.join(off)} off"
        elif s.type == GKE_CLUSTER:
            private = s.props.get("privateClusterConfig") or {}
            if private.get("enablePrivateNodes") is not True:
                yield s, "nodes are not private (privateClusterConfig.enablePrivateNodes)"
            if private.get("enablePrivateEndpoint") is not True \
                    and not (s.props.get("resourceLabels") or {}).get(GCP_PUBLIC_ENDPOINT_REASON):
                yield s, (f"the control-plane endpoint is public (privateClusterConfig.enablePrivateEndpoint) "
                          f"without a {GCP_PUBLIC_ENDPOINT_REASON} resource label")
        elif s.type == GCS_BUCKET:
            if s.props.get("uniformBucketLevelAccess") is not True:
                yield s, "uniform bucket-level access is off (uniformBucketLevelAccess)"
            if s.props.get("publicAccessPrevention") != "enforced":
                yield s, "public access prevention is not enforced (publicAccessPrevention)"


KSA_SUBJECT = re.compile(r"system:serviceaccount:[^:*\s]+:[^:*\s]+")
GKE_KSA_MEMBER = re.compile(r"serviceAccount:[^*\s\[\]]+\.svc\.id\.goog\[[^*\s/\[\]]+/[^*\s/\[\]]+\]")


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value] if value is not None else []


def _web_identity_trusts(policy: dict) -> Iterator[tuple[str, dict]]:
    """(OIDC provider host, the statement's Condition) for each Allow statement trusting a Federated principal
    with sts:AssumeRoleWithWebIdentity (or an action pattern covering it)."""
    for statement in _listed(policy.get("Statement")):
        if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
            continue
        if not any(fnmatch.fnmatchcase("sts:assumerolewithwebidentity", str(a).lower())
                   for a in _listed(statement.get("Action"))):
            continue
        principal = statement.get("Principal")
        for provider in _listed(principal.get("Federated") if isinstance(principal, dict) else None):
            host = str(provider).split(":oidc-provider/", 1)[-1]
            condition = statement.get("Condition")
            yield host, condition if isinstance(condition, dict) else {}


def _condition(condition: dict, operator: str, key: str) -> Any:
    """The value a condition operator gives a key (IAM condition keys are case-insensitive)."""
    clauses = condition.get(operator)
    return next((v for k, v in clauses.items() if k.lower() == key.lower()), None) \
        if isinstance(clauses, dict) else None


def _workload_identity_scoped(subjects, platform):
    for s in subjects:
        if s.type == IAM_ROLE:
            document = s.props.get("assumeRolePolicy")
            if isinstance(document, str):
                try:
                    document = json.loads(document)
                except json.JSONDecodeError:
                    continue  # unknown during preview: judged when the engine knows it
            if not isinstance(document, dict):
                continue
            for host, condition in _web_identity_trusts(document):
                key = f"{host}:sub"
                subs = _listed(_condition(condition, "StringEquals", key))
                if not subs:
                    like = any(_condition(condition, op, key) is not None for op in condition if op.endswith("Like"))
                    yield s, (f"trusts {host} with StringLike on {key}: use StringEquals naming one service account"
                              if like else f"trusts {host} without a StringEquals condition on {key}")
                elif len(subs) != 1 or not KSA_SUBJECT.fullmatch(str(subs[0])):
                    yield s, (f"{key} must be exactly one system:serviceaccount:<namespace>:<name> without `*`, "
                              f"not {', '.join(map(str, subs))}")
        elif s.type in GCP_SA_BINDINGS and s.props.get("role") == WORKLOAD_IDENTITY_USER:
            members = _listed(s.props.get("members", s.props.get("member")))
            if len(members) != 1 or not GKE_KSA_MEMBER.fullmatch(str(members[0])):
                yield s, (f"{WORKLOAD_IDENTITY_USER} must go to exactly one "
                          f"serviceAccount:<project>.svc.id.goog[<namespace>/<name>] without `*`, "
                          f"not {', '.join(map(str, members)) or 'none'}")


CLOUD_PRIVATE_AND_ENCRYPTED_POLICY = Policy(
    "cloud-private-and-encrypted", "Cloud clusters have private endpoints (EKS: unless tagged "
    f"{AWS_PUBLIC_ENDPOINT_REASON}; GKE: private nodes, and a private endpoint unless labelled "
    f"{GCP_PUBLIC_ENDPOINT_REASON}); S3 buckets are named explicitly and have server-side encryption and a "
    "full public access block (matched by the `bucket` name); GCS buckets have uniform access and enforced "
    "public access prevention.", "keep the eks/gke modules' private endpoints, bucket encryption and "
    "public access settings; a public endpoint needs the spec's override reason", MANDATORY,
    _cloud_private_and_encrypted)
WORKLOAD_IDENTITY_SCOPED_POLICY = Policy(
    "workload-identity-scoped", "Workload identity trusts exactly one Kubernetes service account: an IAM "
    "role's web-identity trust has StringEquals on <provider>:sub with one system:serviceaccount:<ns>:<sa>; "
    f"a GCP {WORKLOAD_IDENTITY_USER} grant names one <project>.svc.id.goog[<ns>/<sa>]; no `*`.",
    "bind each cloud identity to the one namespace/service account that uses it", MANDATORY,
    _workload_identity_scoped)
