"""Acceptance against a real kube-apiserver (built from Go modules, with etcd; no nodes).

Every object Plinth renders for the shipped blueprints and stacks is
server-side applied the way the Pulumi Kubernetes provider applies it: the
API server (validation, defaulting, Pod Security and RBAC admission) must
accept all of it; applying again must change nothing (no perpetual diff);
deleting must leave nothing of Plinth's behind.
"""

from __future__ import annotations

import pytest

from kubeapi import FIELD_MANAGER
from support import BLUEPRINTS, ROOT, STACKS
from plinth.engine.offline import plan
from plinth.render import KIND_ORDER, kubernetes_objects
from plinth.spec.load import load_spec, load_stack_spec

pytestmark = pytest.mark.e2e

CASES = [pytest.param(lambda p=p: load_spec(p), id=p.name) for p in BLUEPRINTS] + [
    pytest.param(lambda s=s: load_stack_spec(ROOT, s), id=f"stack-{s}") for s in STACKS
]


def ours(live: dict) -> dict:
    """The live object as far as Plinth's field manager is concerned: no status, no other managers."""
    meta = dict(live["metadata"])
    meta.pop("resourceVersion")
    meta["managedFields"] = [m for m in meta.get("managedFields", []) if m["manager"] == FIELD_MANAGER]
    return {**live, "metadata": meta, "status": None}


# Rendered Secrets carry no payload (plinth.dev/redacted); the API server needs one per type.
STAND_IN_PAYLOAD = {"kubernetes.io/dockerconfigjson": {".dockerconfigjson": '{"auths": {}}'}}


def with_stand_in_payload(obj: dict) -> dict:
    if "plinth.dev/redacted" not in obj["metadata"].get("annotations", {}):
        return obj
    return {**obj, "stringData": STAND_IN_PAYLOAD[obj["type"]]}


def ordered(objects):
    def rank(obj):
        kind = obj["kind"]
        return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)

    return sorted(objects, key=rank)


@pytest.mark.parametrize("load", CASES)
def test_rendered_objects_apply_idempotently_and_delete_cleanly(load, kube):
    spec = load()
    objects = ordered(with_stand_in_payload(obj) for _, obj in kubernetes_objects(plan(spec, "e2e")))
    assert objects
    applied = [kube.apply(obj) for obj in objects]
    for obj, live in zip(objects, applied):
        # The server may add its own labels (kubernetes.io/metadata.name); ours arrive intact.
        assert live["metadata"]["labels"].items() >= obj["metadata"]["labels"].items()

    # A second apply of the same objects is a no-op: nothing Plinth renders drifts by itself.
    # (Controllers may write status meanwhile, e.g. quota usage: only our part is compared.)
    again = [kube.apply(obj) for obj in objects]
    assert [ours(a) for a in applied] == [ours(b) for b in again]

    for obj in reversed(objects):
        kube.delete(obj)
    for obj in objects:
        if obj["kind"] == "Namespace":
            kube.finalize_namespace(obj["metadata"]["name"])
    leftovers = [(o["kind"], o["metadata"]["name"]) for o in objects if kube.get(o) is not None]
    assert leftovers == []


def test_the_api_server_rejects_what_plinth_must_never_render(kube):
    """The tier can fail: an invalid Pod Security level is refused by admission."""
    from kubeapi import ApiError

    bad = {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "bad-pss", "labels": {"pod-security.kubernetes.io/enforce": "strictest"}}}
    with pytest.raises(ApiError) as caught:
        kube.apply(bad)
    assert caught.value.status in (400, 403, 422)
