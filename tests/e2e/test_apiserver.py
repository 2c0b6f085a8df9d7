"""Acceptance against a real kube-apiserver (built from Go modules, with etcd; no nodes).

Every object Plinth renders for the shipped blueprints and stacks is
server-side applied the way the Pulumi Kubernetes provider applies it: the
API server (validation, defaulting, Pod Security and RBAC admission) must
accept all of it; applying again must change nothing (no perpetual diff);
deleting must leave nothing of Plinth's behind.
"""

from __future__ import annotations


import pytest

from kubeapi import FIELD_MANAGER, established
from support import BLUEPRINTS, CHARTS_DIR, CUSTOM_GROUPS, ROOT, STACKS, packaged_charts_helm, stack_marks
from plinth.engine.charts import render_charts
from plinth.engine.manifests import KIND_ORDER
from plinth.engine.offline import plan
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec, load_stack_spec

pytestmark = pytest.mark.e2e

CASES = [pytest.param(lambda p=p: load_spec(p), id=p.name) for p in BLUEPRINTS] + [
    pytest.param(lambda s=s: load_stack_spec(ROOT, s), id=f"stack-{s}", marks=stack_marks(s)) for s in STACKS
]


def ours(live: dict, sent: dict) -> tuple:
    """The live object as far as Plinth is concerned: the fields it sent (as the server stored them)
    and its field manager's record; what controllers write (status, revision annotations) is not ours."""
    def project(value, shape):
        if isinstance(shape, dict) and isinstance(value, dict):
            return {k: project(value.get(k), v) for k, v in shape.items()}
        if isinstance(shape, list) and isinstance(value, list) and len(shape) == len(value):
            return [project(v, s) for v, s in zip(value, shape)]
        return value
    # Which fields our manager owns, not when it last applied: a re-apply after another manager wrote the object
    # (the API server's type check into a ValidatingAdmissionPolicy's status) restamps the time alone.
    managed = [{k: v for k, v in m.items() if k != "time"}
               for m in live["metadata"].get("managedFields", []) if m["manager"] == FIELD_MANAGER]
    return project(live, sent), managed


# Rendered Secrets carry no payload (plinth.dev/redacted); the API server needs one per type.
STAND_IN_PAYLOAD = {"kubernetes.io/dockerconfigjson": {".dockerconfigjson": '{"auths": {}}'}, "Opaque": {}}


def with_stand_in_payload(obj: dict) -> dict:
    if "plinth.dev/redacted" not in obj["metadata"].get("annotations", {}):
        return obj
    return {**obj, "stringData": STAND_IN_PAYLOAD[obj["type"]]}


def ordered(objects):
    def rank(obj):
        kind = obj["kind"]
        return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)

    return sorted(objects, key=rank)


def install_crds(kube, spec, result) -> list[dict]:
    """The CRDs the platform's charts and bundles install (from the real charts), for the custom
    resources Plinth authors; applied and established before those resources."""
    kinds = {o["kind"] for _, o in kubernetes_objects(result) if o["apiVersion"].split("/")[0] in CUSTOM_GROUPS}
    if not kinds:
        return []
    packaged_charts_helm(f"custom resources need their CRDs from the packaged charts at {CHARTS_DIR} and helm")
    crds = [o for item in render_charts(result, spec.kubernetes.version, CHARTS_DIR) for o in item.objects
            if o["kind"] == "CustomResourceDefinition" and o["spec"]["names"]["kind"] in kinds]
    for crd in crds:
        kube.apply(crd)
    for crd in crds:
        assert established(kube.wait(crd, established)), crd["metadata"]["name"]
    return crds


@pytest.mark.parametrize("load", CASES)
def test_rendered_objects_apply_idempotently_and_delete_cleanly(load, kube):
    spec = load()
    result = plan(spec, "e2e")
    crds = install_crds(kube, spec, result)
    # The admission policies are applied, not bound: a binding would enforce them, and the same-named policy of
    # the case before (other teams) may still judge for a moment after it is replaced (test_admission_policies.py
    # binds and exercises them).
    objects = ordered(with_stand_in_payload(obj) for _, obj in kubernetes_objects(result)
                      if obj["kind"] != "ValidatingAdmissionPolicyBinding")
    assert objects
    applied = [kube.apply(obj) for obj in objects]
    for obj, live in zip(objects, applied):
        # The server may add its own labels (kubernetes.io/metadata.name); ours arrive intact.
        assert live["metadata"]["labels"].items() >= obj["metadata"]["labels"].items()

    # A second apply of the same objects is a no-op: nothing Plinth renders drifts by itself.
    # (Controllers may write status meanwhile, e.g. quota usage: only our part is compared.)
    again = [kube.apply(obj) for obj in objects]
    assert [ours(a, o) for a, o in zip(applied, objects)] == [ours(b, o) for b, o in zip(again, objects)]

    for obj in reversed(objects):
        kube.delete(obj)
    for obj in objects:
        if obj["kind"] == "Namespace":
            kube.finalize_namespace(obj["metadata"]["name"])
    # Finalizers (a PVC's protection) are released by controllers: wait for them, not for a fixed time.
    leftovers = [(o["kind"], o["metadata"]["name"]) for o in objects
                 if kube.wait(o, lambda live: live is None) is not None]
    assert leftovers == []
    # The CRDs were this test's scaffolding: gone before the engine tier installs the charts that own them.
    for crd in crds:
        kube.delete(crd)
    assert [c["metadata"]["name"] for c in crds if kube.wait(c, lambda live: live is None) is not None] == []


def test_the_api_server_rejects_what_plinth_must_never_render(kube):
    """The tier can fail: an invalid Pod Security level is refused by admission."""
    from kubeapi import ApiError

    bad = {"apiVersion": "v1", "kind": "Namespace",
           "metadata": {"name": "bad-pss", "labels": {"pod-security.kubernetes.io/enforce": "strictest"}}}
    with pytest.raises(ApiError) as caught:
        kube.apply(bad)
    assert caught.value.status in (400, 403, 422)
