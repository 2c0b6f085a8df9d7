"""The object store's S3 identities: one per purpose bucket (read and write on it), one per team (read only
under its prefix of the models bucket) and, with pipelines.argo, one per team for its workflows (read and write
under its prefix of the artifacts bucket), every key derived from the stack secret plinth:objectStoreSeed.

`s3_config` is pure: the same seed, platform and teams give the same JSON (no diff between previews).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import string

PURPOSES = ("models", "artifacts", "features", "backups")
"""One bucket and one identity each: `<platform>-<purpose>`."""
PURPOSE_ACTIONS = ("Read", "Write", "List", "Tagging")
"""SeaweedFS's action names an identity may hold on its own bucket (`<action>:<bucket>`)."""
ACCESS_KEY_LENGTH = 20
SECRET_KEY_LENGTH = 40
_ACCESS_ALPHABET = string.digits + string.ascii_uppercase
_SECRET_ALPHABET = string.digits + string.ascii_letters


def bucket(platform: str, purpose: str) -> str:
    return f"{platform}-{purpose}"


def buckets(platform: str) -> tuple[str, ...]:
    return tuple(bucket(platform, purpose) for purpose in PURPOSES)


def derive(seed: str, platform: str, identity: str, kind: str) -> str:
    """One key of one identity: HMAC-SHA256(seed, "<platform>/object-store/<identity>/<kind>") in the key's
    alphabet (access keys: digits and capitals, as S3's; secret keys: alphanumerics). Independent per identity
    and kind; none reveals the seed or another key."""
    alphabet, length = ((_ACCESS_ALPHABET, ACCESS_KEY_LENGTH) if kind == "access" else
                        (_SECRET_ALPHABET, SECRET_KEY_LENGTH))
    digest = hmac.new(seed.encode(), f"{platform}/object-store/{identity}/{kind}".encode(), hashlib.sha512).digest()
    number, chars = int.from_bytes(digest, "big"), []
    for _ in range(length):
        number, index = divmod(number, len(alphabet))
        chars.append(alphabet[index])
    return "".join(chars)


WORKFLOWS_PREFIX = "workflows"
"""Where a team's workflows keep their artifacts: `<platform>-artifacts/workflows/<team>/` (MLflow's own keys
in that bucket are experiment ids, never this word)."""


REQUESTS_PREFIX = "requests"
"""Where served models' sampled requests are logged (serving.models[].drift.requestLog):
`<platform>-artifacts/requests/<team>/<model>/` (beside `workflows/`; MLflow's own keys are experiment ids)."""


def request_log_key(team: str, model: str | None = None) -> str:
    """The prefix of one team's (or one model's) logged requests in the artifacts bucket."""
    return f"{REQUESTS_PREFIX}/{team}" + (f"/{model}" if model else "")


def identity_names(platform: str, teams: tuple[str, ...], workflow_teams: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The identities, in the config's order: each purpose, then `team-<team>` per team, then
    `workflows-<team>` per team whose workflows keep artifacts here (pipelines.argo)."""
    return (*PURPOSES, *(f"team-{team}" for team in teams), *(f"workflows-{team}" for team in workflow_teams))


def workflow_artifacts_key(team: str) -> str:
    """The prefix of one team's workflow artifacts in the artifacts bucket."""
    return f"{WORKFLOWS_PREFIX}/{team}"


def identity_actions(platform: str, name: str, request_logs: bool = False) -> list[str]:
    """A purpose identity: every PURPOSE_ACTIONS on its bucket. A team identity: `Read` and `List` of objects
    under `<platform>-models/<team>/` (a trailing `*` is SeaweedFS's prefix match on `<bucket>/<key>`; the real
    server in tests/test_backup_drill.py lists `?prefix=<team>/` and refuses any other prefix, the whole bucket
    and every write); with `request_logs` (the team's models log requests) also `Read`, `Write` and `List` under
    `<platform>-artifacts/requests/<team>/` (tests/test_request_log.py)."""
    if name.startswith("workflows-"):
        # Argo's executor uploads, downloads, lists and (artifact GC) deletes, under the team's prefix only.
        scope = f"{bucket(platform, 'artifacts')}/{workflow_artifacts_key(name.removeprefix('workflows-'))}/*"
        return [f"Read:{scope}", f"Write:{scope}", f"List:{scope}"]
    if name.startswith("team-"):
        team = name.removeprefix("team-")
        scope = f"{bucket(platform, 'models')}/{team}/*"
        logs = f"{bucket(platform, 'artifacts')}/{request_log_key(team)}/*"
        return [f"Read:{scope}", f"List:{scope}",
                *((f"Read:{logs}", f"Write:{logs}", f"List:{logs}") if request_logs else ())]
    return [f"{action}:{bucket(platform, name)}" for action in PURPOSE_ACTIONS]


def s3_config(platform: str, teams: tuple[str, ...], seed: str, workflow_teams: tuple[str, ...] = (),
              request_log_teams: tuple[str, ...] = ()) -> dict:
    """SeaweedFS's S3 identities file (`-s3.config`): {"identities": [{name, credentials, actions}]}."""
    return {"identities": [
        {"name": name,
         "credentials": [{"accessKey": derive(seed, platform, name, "access"),
                          "secretKey": derive(seed, platform, name, "secret")}],
         "actions": identity_actions(platform, name, name in {f"team-{team}" for team in request_log_teams})}
        for name in identity_names(platform, teams, workflow_teams)
    ]}


def s3_config_json(platform: str, teams: tuple[str, ...], seed: str, workflow_teams: tuple[str, ...] = (),
                   request_log_teams: tuple[str, ...] = ()) -> str:
    """The file's text, in a stable key order."""
    return json.dumps(s3_config(platform, teams, seed, workflow_teams, request_log_teams), sort_keys=True)
