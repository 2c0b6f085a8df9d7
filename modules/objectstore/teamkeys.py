"""Each team's object-store keys, delivered through Vault: the configure stage writes them into the team's KV
path (`teams/<team>/...`, computed from the seed there), the secrets operator copies them into a Secret of the
team's namespace. Both sides take the names from `TEAM_KEYS`, so they cannot drift apart.

| KV secret (`teams/<team>/...`) | Secret in the team namespace | identity | when |
| --- | --- | --- | --- |
| `object-store` | `object-store-credentials` | `team-<team>`: reads its prefix of the models bucket | store on |
| `workflow-artifacts` | `argo-artifacts-s3` | `workflows-<team>`: its prefix of the artifacts bucket | with Argo |
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from plinth.modules.objectstore import CA_FILE, ENDPOINT
from plinth.modules.objectstore.identities import bucket, derive

REGION = "us-east-1"
"""The region S3 clients sign with: SeaweedFS accepts any; the AWS SDKs' (and Triton's) default, said out loud."""
REFRESH = "1h"
"""How often the secrets operator re-reads a team's keys from Vault (VaultStaticSecret `refreshAfter`): a
re-keyed store (a new seed) reaches the team namespaces within this time of the configure stage's run."""


@dataclass(frozen=True)
class TeamKeys:
    """One kind of team key: its identity, where Vault keeps it and which Secret the team namespace gets."""

    identity_prefix: str
    """The object store's identity is `<identity_prefix>-<team>` (identities.py)."""
    kv_name: str
    """The KV v2 secret below the team's path: `teams/<team>/<kv_name>`."""
    secret: str
    """The Secret the secrets operator creates in the team namespace."""
    aws_names: bool
    """The fields are the AWS SDKs' environment (pods read the Secret with envFrom); else Argo's key names."""

    def identity(self, team: str) -> str:
        return f"{self.identity_prefix}-{team}"

    def path(self, team: str) -> str:
        """The secret's path below the KV mount (what the policy `team-<team>` reads, what the operator syncs)."""
        return f"{team}/{self.kv_name}"

    def data_json(self, platform: str, team: str, seed: str) -> str:
        """The fields as the KV secret's JSON, in a stable key order."""
        return json.dumps(self.fields(platform, team, seed), sort_keys=True)

    def fields(self, platform: str, team: str, seed: str) -> dict[str, str]:
        """The secret's fields, as its readers name them (every one becomes a key of the team's Secret)."""
        access, secret = (derive(seed, platform, self.identity(team), kind) for kind in ("access", "secret"))
        if not self.aws_names:  # Argo's artifact repository names these keys (modules/pipelines)
            return {"accessKey": access, "secretKey": secret}
        # Triton reads the first three; boto3 and the aws CLI the endpoint and the CA too (the pod mounts the
        # namespace's Secret CA_SECRET at CA_DIR); then where the team's models are.
        return {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
                "AWS_ENDPOINT_URL_S3": ENDPOINT, "AWS_CA_BUNDLE": CA_FILE, "S3_BUCKET": bucket(platform, "models"),
                "S3_PREFIX": f"{team}/"}


OBJECT_STORE = TeamKeys("team", "object-store", "object-store-credentials", aws_names=True)
"""The team's own identity: reads and lists `<platform>-models/<team>/`."""
WORKFLOW_ARTIFACTS = TeamKeys("workflows", "workflow-artifacts", "argo-artifacts-s3", aws_names=False)
"""With pipelines.argo: the team's workflows' identity, under `workflows/<team>/` of `<platform>-artifacts`."""
TEAM_KEYS = (OBJECT_STORE, WORKFLOW_ARTIFACTS)


def team_keys(pipelines: bool) -> tuple[TeamKeys, ...]:
    """The kinds of key every team gets: its own, and its workflows' with pipelines.argo."""
    return TEAM_KEYS if pipelines else (OBJECT_STORE,)
