"""Route capture through the shared Gateway, refused by the real API server's admission (CEL).

The regulated blueprint's ValidatingAdmissionPolicy (modules/network) is evaluated by kube-apiserver
itself: every capture attempt of tests/support.ROUTE_CAPTURES is refused, a team's own routes and the
serving module's routes are admitted.
"""

from __future__ import annotations

import time

import pytest
import yaml

from kubeapi import ApiError, established
from support import CHARTS_DIR, ROOT, ROUTE_CAPTURES, ROUTES_OF_ITS_OWN
from plinth.engine.offline import plan
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec

pytestmark = pytest.mark.e2e
KINDS = ("Namespace", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def _route(name: str, spec: dict) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "credit"}, "spec": spec}


def _refusal(kube, route: dict) -> str | None:
    """The API server's refusal of the route, or None when it admitted it (then it is deleted again)."""
    try:
        kube.apply(route)
    except ApiError as exc:
        if exc.status in (403, 422) and "ValidatingAdmissionPolicy" in exc.body:
            return exc.body  # whole: a message naming every platform host name is long
        raise
    kube.delete(route)
    return None


def test_the_api_server_refuses_every_route_capture(kube):
    source = CHARTS_DIR / "crds" / "gateway-api-v1.6.1-standard" / "gateway.networking.k8s.io_httproutes.yaml"
    if not source.is_file():
        pytest.skip(f"no Gateway API CRDs at {source.parent} (the packaged charts: set PLINTH_CHARTS_DIR)")
    crd = yaml.safe_load(source.read_text())
    kube.apply(crd)
    assert established(kube.wait(crd, established)), "HTTPRoute CRD"
    rendered = [obj for res, obj in kubernetes_objects(plan(
        load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))]
    # The team namespaces and the Gateway's team-routes policy (the admission service's policies are its tier's).
    ours = [obj for obj in rendered if obj["kind"] in KINDS and (
        obj["metadata"]["labels"].get("plinth.dev/team") if obj["kind"] == "Namespace"
        else obj["metadata"]["name"].endswith("-team-routes"))]
    assert sorted(obj["kind"] for obj in ours) == ["Namespace", "Namespace", *KINDS[1:]]
    try:
        for obj in sorted(ours, key=lambda o: KINDS.index(o["kind"])):
            kube.apply(obj)
        # The policy takes effect once the API server has compiled it: wait for the first refusal.
        deadline = time.monotonic() + 30
        while _refusal(kube, _route("probe", ROUTE_CAPTURES["whole-serving-host"])) is None:
            assert time.monotonic() < deadline, "the admission policy never took effect"
            time.sleep(0.5)
        refused = {name: _refusal(kube, _route(name, spec)) for name, spec in ROUTE_CAPTURES.items()}
        assert [name for name, why in refused.items() if why is None] == []
        # Each refused by the rule it breaks (the API server's JSON escapes `<`, so no placeholder here).
        assert "are reserved to platform routes" in refused["python-index-packages"]
        assert "a team routes only paths under /" in refused["other-teams-model"]
        assert "a team route names its host names" in refused["no-host-names"]
        assert "host names are the serving host and the team's own" in refused["other-teams-host"]
        for name, spec in ROUTES_OF_ITS_OWN.items():
            assert _refusal(kube, _route(name, spec)) is None, name
        # The serving module's own routes (team namespaces) pass their own admission.
        for obj in rendered:
            if obj["kind"] == "HTTPRoute" and obj["metadata"]["namespace"] in ("fraud", "credit"):
                kube.apply(obj)
                kube.delete(obj)
    finally:
        for obj in ours:
            kube.delete(obj)
            if obj["kind"] == "Namespace":
                kube.finalize_namespace(obj["metadata"]["name"])
