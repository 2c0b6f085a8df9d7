"""Admission in a real kube-apiserver: the ValidatingAdmissionPolicies Plinth plans refuse what breaks the
platform's rules, with each policy's message, and admit every object Plinth plans and the charts render.

The policies and bindings applied are the planned ones (regulated-prod: air-gap, two teams); the objects
are sent as dry runs (admission runs, nothing is stored), so the tier's other tests see a clean server.
"""

from __future__ import annotations

import copy
import time

import pytest

from kubeapi import ApiError
from support import CHARTS_DIR, ROOT, packaged_charts_helm
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec, load_stack_spec, read_stack

pytestmark = pytest.mark.e2e

ADMISSION_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
JUDGED = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Service", "Ingress",
          "RoleBinding"}
"""The kinds the policies match: what must be admitted (and may be refused)."""
MIRROR = "harbor.corp.internal/mirror"
TEAM_LABELS = {"plinth.dev/team": "fraud", "plinth.dev/cost-center": "risk-analytics"}


def dry_run(kube, obj: dict) -> dict:
    """Server-side apply as a dry run: every admission step runs, nothing is stored."""
    return kube.request("PATCH", kube.path(obj) + "?fieldManager=plinth-e2e&force=true&dryRun=All", obj,
                        content_type="application/apply-patch+yaml")


def deployment(name: str, image: str = f"{MIRROR}/library/nginx:1.27", labels: dict | None = None,
               security: dict | None = None, namespace: str = "fraud") -> dict:
    labels = TEAM_LABELS if labels is None else labels
    container = {"name": "app", "image": image, **({"securityContext": security} if security else {})}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": labels},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name, **labels}}, "spec": {"containers": [container]}}}}


LOAD_BALANCER = {"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "public", "namespace": "fraud", "labels": TEAM_LABELS},
                 "spec": {"type": "LoadBalancer", "selector": {"app": "x"}, "ports": [{"port": 80}]}}
VIOLATIONS = [
    pytest.param(LOAD_BALANCER, "plinth-no-external-services: no LoadBalancer or NodePort Service outside the "
                 "platform Gateway's namespace", id="load-balancer-in-a-team-namespace"),
    pytest.param({**LOAD_BALANCER, "spec": {**LOAD_BALANCER["spec"], "type": "NodePort"}},
                 "plinth-no-external-services: no LoadBalancer or NodePort Service", id="node-port-in-a-team-namespace"),
    pytest.param(deployment("public-image", image="docker.io/library/nginx:1.27"),
                 f"plinth-mirror-only: air-gap mode: every image comes from the mirror {MIRROR}",
                 id="public-image-in-air-gap"),
    pytest.param(deployment("privileged", security={"privileged": True}),
                 "plinth-host-access: privileged containers, host namespaces and hostPath are for the allowlisted "
                 "platform workloads only", id="privileged-pod-in-a-team-namespace"),
    pytest.param({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                  "metadata": {"name": "into-credit", "namespace": "credit"},
                  "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                  "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                "name": "fraud-ml-engineers"}]},
                 "plinth-team-rolebindings: a RoleBinding in a team's namespace binds only that team's groups",
                 id="rolebinding-into-another-teams-namespace"),
    pytest.param(deployment("unlabelled", labels={"plinth.dev/team": "credit"}),
                 "plinth-ownership-labels: a workload in a team's namespace carries plinth.dev/team",
                 id="workload-without-ownership-labels"),
]


@pytest.fixture(scope="module")
def planned():
    return plan(load_stack_spec(ROOT, "regulated-prod"), "e2e")


@pytest.fixture(scope="module")
def admission(control_plane, planned):
    """The planned namespaces, policies and bindings, applied; removed afterwards."""
    from kubeapi import KubeApi

    kube = KubeApi(control_plane.server, control_plane.ssl_context())
    objects = [obj for _, obj in kubernetes_objects(planned)]
    namespaces = [o for o in objects if o["kind"] == "Namespace"]
    policies = [o for o in objects if o["kind"] in ADMISSION_KINDS]
    assert {o["metadata"]["name"] for o in policies} == {
        "plinth-mirror-only", "plinth-no-external-services", "plinth-host-access", "plinth-team-rolebindings",
        "plinth-ownership-labels", "plinth-regulated-team-routes"}  # the last one the Gateway's (modules/network)
    for obj in namespaces + sorted(policies, key=lambda o: o["kind"] != "ValidatingAdmissionPolicy"):
        kube.apply(obj)
    # The API server picks policies up asynchronously: wait until each known violation is refused.
    deadline = time.monotonic() + 60
    for param in VIOLATIONS:
        obj, message = param.values
        while True:
            try:
                dry_run(kube, obj)
            except ApiError as exc:
                if message in str(exc):
                    break
                raise
            assert time.monotonic() < deadline, f"the admission policies never took effect: {message}"
            time.sleep(0.5)
    yield kube
    for obj in reversed(policies):
        kube.delete(obj)
    for obj in namespaces:
        kube.delete(obj)
        kube.finalize_namespace(obj["metadata"]["name"])


def test_the_planned_policies_compile_in_the_api_server(admission, planned):
    for _, obj in kubernetes_objects(planned):
        if obj["kind"] == "ValidatingAdmissionPolicy":
            live = admission.wait(obj, lambda o: o and o.get("status", {}).get("observedGeneration"), timeout=30)
            assert live["status"].get("typeChecking", {}).get("expressionWarnings") in (None, []), \
                (obj["metadata"]["name"], live["status"])
            assert not [c for c in live["status"].get("conditions", []) if c.get("status") == "False"], live["status"]


@pytest.mark.parametrize("obj, message", VIOLATIONS)
def test_the_api_server_refuses_each_violation_with_the_policys_message(admission, obj, message):
    with pytest.raises(ApiError) as refused:
        dry_run(admission, obj)
    assert refused.value.status in (403, 422), str(refused.value)
    assert message in str(refused.value)


def test_the_api_server_admits_every_object_plinth_plans(admission, planned):
    judged = [obj for _, obj in kubernetes_objects(planned) if obj["kind"] in JUDGED]
    assert {"Deployment", "Service", "RoleBinding"} <= {o["kind"] for o in judged}
    refused = []
    for obj in judged:
        try:
            dry_run(admission, obj)
        except ApiError as exc:
            refused.append((obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"], str(exc)[:400]))
    assert refused == []


def test_the_api_server_admits_every_workload_the_charts_render(admission, planned):
    """The charts' own workloads (Longhorn's privileged manager, node-exporter on the host network, the GPU
    operator's node discovery...) are inside the allowlist; none of their Services is external."""
    packaged_charts_helm(f"the charts' objects need the packaged charts at {CHARTS_DIR} and helm")
    spec = load_stack_spec(ROOT, "regulated-prod")
    rendered = render_charts(planned, spec.kubernetes.version, CHARTS_DIR)
    judged = []
    for item in rendered:
        for obj in item.objects:
            if obj["kind"] in JUDGED - {"RoleBinding"}:  # a chart's RoleBindings are in its own namespace
                obj = copy.deepcopy(obj)
                obj["metadata"].setdefault("namespace", item.resource.inputs.get("namespace"))
                judged.append(obj)
    assert any(o["kind"] == "DaemonSet" for o in judged)
    refused = []
    for obj in judged:
        try:
            dry_run(admission, obj)
        except ApiError as exc:
            if "plinth-" in str(exc):  # only the platform's policies are under test here
                refused.append((obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"], str(exc)[:400]))
    assert refused == []


def until_admitted(kube, obj: dict, never: str) -> None:
    """Dry-run `obj` until the API server admits it: it applies a changed policy or binding asynchronously. After
    60 s, fail with `never` and the last refusal."""
    deadline = time.monotonic() + 60
    while True:
        try:
            dry_run(kube, obj)
            return
        except ApiError as exc:
            assert time.monotonic() < deadline, f"{never}: {exc}"
            time.sleep(0.5)


def retrained_plan():
    """regulated-prod with the pipelines on and the fraud scorer retrained on drift: one platform account (the
    team's Sensors', in argo-events) bound in team fraud's namespace."""
    blueprint, overrides = read_stack(ROOT, "regulated-prod")
    return plan(load_spec(blueprint, {
        **overrides, "monitoring": {**overrides["monitoring"], "drift": {"enabled": True}},
        "pipelines": {"argo": {"enabled": True}, "events": {"enabled": True}},
        "serving": {"models": [{"name": "fraud-scorer", "retraining": {"image": f"{MIRROR}/acme/train:1.0.0"}}]},
    }), "e2e")


def test_a_platform_account_is_admitted_in_the_team_namespace_it_is_named_for_only(admission, planned):
    """The Sensor account of team fraud's retraining is bound in fraud's namespace (it submits the workflow
    there): the planned policy admits that RoleBinding, and refuses the same account bound in team credit's."""
    retrained = [obj for _, obj in kubernetes_objects(retrained_plan())]
    [policy] = [o for o in retrained if o["kind"] == "ValidatingAdmissionPolicy"
                and o["metadata"]["name"] == "plinth-team-rolebindings"]
    [submit] = [o for o in retrained if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == "fraud"
                and o["subjects"][0].get("namespace") == "argo-events"]
    into_credit = copy.deepcopy(submit)
    into_credit["metadata"].update(namespace="credit", labels={**submit["metadata"]["labels"],
                                                               "plinth.dev/team": "credit"})
    refused = "plinth-team-rolebindings: a RoleBinding in a team's namespace binds only that team's groups"
    with pytest.raises(ApiError) as before:  # the policy as planned without retraining refuses it
        dry_run(admission, submit)
    assert refused in str(before.value)
    admission.apply(policy)
    try:
        until_admitted(admission, submit, "the changed policy never took effect")
        with pytest.raises(ApiError) as other_team:
            dry_run(admission, into_credit)
        assert refused in str(other_team.value)
    finally:
        [original] = [obj for _, obj in kubernetes_objects(planned) if obj["kind"] == "ValidatingAdmissionPolicy"
                      and obj["metadata"]["name"] == "plinth-team-rolebindings"]
        admission.apply(original)


def test_audit_mode_admits_with_a_warning_instead(admission, planned):
    """admission.mode: audit sets the bindings' validationActions to [Audit, Warn]: the violation is admitted."""
    from plinth.spec.models import Admission

    def binding(result):
        [found] = [obj for _, obj in kubernetes_objects(result) if obj["kind"] == "ValidatingAdmissionPolicyBinding"
                   and obj["metadata"]["name"] == "plinth-no-external-services"]
        return found

    spec = load_stack_spec(ROOT, "regulated-prod")
    audit = binding(plan(spec.model_copy(update={"admission": Admission(mode="audit")}), "e2e"))
    assert audit["spec"]["validationActions"] == ["Audit", "Warn"]
    admission.apply(audit)
    try:
        until_admitted(admission, LOAD_BALANCER, "the audit binding never took effect")
    finally:
        admission.apply(binding(planned))
