"""A team's workflow artifacts in a real S3 server (SeaweedFS's `weed`, tests/s3server.py), with the identity the
object store plans for it (`workflows-<team>`) and the key layout of its artifact repository (modules/pipelines):
the team writes, reads, lists and deletes under its own prefix of the artifacts bucket and nowhere else."""

from __future__ import annotations

import json

import pytest

from s3server import Identity, S3Server, weed
from plinth.modules.objectstore.identities import s3_config
from plinth.modules.pipelines import repository_config

pytestmark = pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)

PLATFORM = "test"
ARTIFACTS, MODELS = f"{PLATFORM}-artifacts", f"{PLATFORM}-models"
ADMIN = Identity("admin", ("Admin", "Read", "List", "Write", "Tagging"))
_PLANNED = {entry["name"]: entry for entry in
            s3_config(PLATFORM, ("fraud", "credit"), "store-seed", ("fraud", "credit"))["identities"]}


def planned(name: str) -> Identity:
    entry = _PLANNED[name]
    keys = entry["credentials"][0]
    return Identity(name, tuple(entry["actions"]), keys["accessKey"], keys["secretKey"])


FRAUD = planned("workflows-fraud")


def key(team: str, rest: str) -> str:
    """A key as the team's repository lays it out (its keyFormat, with the workflow and pod filled in)."""
    layout = json.loads(repository_config(PLATFORM, team))["s3"]["keyFormat"]
    return layout.replace("{{workflow.name}}", "train-x7").replace("{{pod.name}}", "train-x7-1") + "/" + rest


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(weed(), tmp_path_factory.mktemp("seaweedfs"), ADMIN, [FRAUD], [ARTIFACTS, MODELS]) as server:
        yield server


def test_a_teams_workflows_use_their_own_prefix_of_the_artifacts_bucket_and_nothing_else(s3):
    own = key("fraud", "model.tgz")
    assert own.startswith("workflows/fraud/")
    others = {"credit": key("credit", "model.tgz"), "mlflow": "1/abc123/artifacts/model.pkl",
              "lookalike": "workflows/fraud-lookalike/x.tgz"}
    for other in others.values():
        assert s3.request(ADMIN, "PUT", ARTIFACTS, other, b"theirs").status == 200

    assert s3.request(FRAUD, "PUT", ARTIFACTS, own, b"artifact").status == 200
    fetched = s3.request(FRAUD, "GET", ARTIFACTS, own)
    assert (fetched.status, fetched.body) == (200, b"artifact")
    listed = s3.request(FRAUD, "GET", ARTIFACTS, query={"list-type": "2", "prefix": "workflows/fraud/"})
    assert listed.status == 200 and f"<Key>{own}</Key>".encode() in listed.body
    assert b"lookalike" not in listed.body
    denied = {
        "read credit's": s3.request(FRAUD, "GET", ARTIFACTS, others["credit"]),
        "write credit's": s3.request(FRAUD, "PUT", ARTIFACTS, others["credit"], b"mine"),
        "read MLflow's": s3.request(FRAUD, "GET", ARTIFACTS, others["mlflow"]),
        "read a prefix that only starts alike": s3.request(FRAUD, "GET", ARTIFACTS, others["lookalike"]),
        "list credit's": s3.request(FRAUD, "GET", ARTIFACTS, query={"list-type": "2", "prefix": "workflows/credit/"}),
        "list the whole bucket": s3.request(FRAUD, "GET", ARTIFACTS, query={"list-type": "2"}),
        "read the models bucket": s3.request(FRAUD, "GET", MODELS, query={"list-type": "2"}),
        "write the models bucket": s3.request(FRAUD, "PUT", MODELS, "fraud/x.bin", b"x"),
    }
    assert {what: (r.status, r.error_code) for what, r in denied.items()} == \
        {what: (403, "AccessDenied") for what in denied}
    # Artifact garbage collection: the team deletes its own.
    assert s3.request(FRAUD, "DELETE", ARTIFACTS, own).status == 204
    assert s3.objects(ARTIFACTS) == {other: 6 for other in others.values()}
