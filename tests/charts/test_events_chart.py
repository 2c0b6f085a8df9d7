"""Argo Events' real chart (2.4.22) rendered with Plinth's values: its three CRDs from the package, the controller
restricted and confined to a Role in its namespace (no ClusterRole, no wildcard), the EventBus's one JetStream
version with mirrored images, every rendered image listed by `plinth images`, identical renders, and Plinth's
EventBus, EventSource and Sensor valid against the chart's CRDs."""

from __future__ import annotations

import pytest
import yaml
from support import CHARTS_DIR, platform_spec
from validation import (
    PlannedRender,
    crd_schemas,
    dump,
    images_in,
    release_objects,
    restricted_problems,
    validation_failures,
)

from plinth.catalog import CHARTS, EVENTBUS_JETSTREAM, mirror_image
from plinth.engine.charts import render_charts
from plinth.engine.offline import plan
from plinth.governance.check import check
from plinth.mirror import mirror_list
from plinth.render import kubernetes_objects

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"


def _spec():
    """Air-gapped staging with monitoring and drift, Argo Workflows and Events, one model retrained on drift."""
    return platform_spec({
        "metadata": {"environment": "staging"},
        "charts": {"source": str(CHARTS_DIR)},
        "monitoring": {"enabled": True, "drift": {"enabled": True}},
        "pipelines": {"argo": {"enabled": True}, "events": {"enabled": True}},
        "teams": [{"name": "fraud"}],
        "serving": {"models": [{"name": "scorer", "team": "fraud", "runtime": "bentoml",
                                "image": f"{MIRROR}/acme/scorer", "stable": {"version": "1.2.0"},
                                "retraining": {"workflowTemplate": "retrain-scorer"}}]},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"}}},
    })


PLANNED = PlannedRender(_spec, "argo-events-chart", KUBE)


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(PLANNED.rendered(charts_dir, 1), "argo-events")


def _one(objects, kind: str) -> dict:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def _bus_versions(objects) -> list[dict]:
    config = yaml.safe_load(_one(objects, "ConfigMap")["data"]["controller-config.yaml"])
    return config["eventBus"]["jetstream"]["versions"]


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    assert dump(release_objects(PLANNED.rendered(charts_dir, 1), "argo-events")) == dump(
        release_objects(PLANNED.rendered(charts_dir, 2), "argo-events"))


def test_the_crds_come_from_the_package(objects):
    assert sorted(o["metadata"]["name"] for o in objects if o["kind"] == "CustomResourceDefinition") == [
        "eventbus.argoproj.io", "eventsources.argoproj.io", "sensors.argoproj.io"]
    assert "Job" not in {o["kind"] for o in objects}


def test_the_controller_holds_a_role_in_its_namespace_only_and_no_wildcard(objects):
    kinds = {o["kind"] for o in objects}
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    role = _one(objects, "Role")
    assert role["metadata"]["namespace"] == "argo-events"
    assert [r for r in role["rules"] if "*" in r["verbs"] + r["resources"] + r.get("apiGroups", [])] == []
    [container] = _one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    assert "--namespaced" in container["args"]
    assert sorted({o["metadata"].get("namespace") for o in objects} - {None}) == ["argo-events"]


def test_the_controller_is_restricted_and_replicated(objects):
    deployment = _one(objects, "Deployment")
    assert restricted_problems(deployment["spec"]["template"]["spec"]) == []
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert deployment["spec"]["replicas"] == 2 and "--leader-election=false" not in container["args"]
    assert _one(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_bus_has_one_pinned_jetstream_version_with_mirrored_images(objects):
    config = yaml.safe_load(_one(objects, "ConfigMap")["data"]["controller-config.yaml"])
    assert "nats" not in config["eventBus"]  # the streaming bus's list names `latest`
    _, nats, reloader, exporter = CHARTS["argo-events"].images
    assert _bus_versions(objects) == [{
        "version": EVENTBUS_JETSTREAM, "natsImage": mirror_image(nats, MIRROR),
        "metricsExporterImage": mirror_image(exporter, MIRROR),
        "configReloaderImage": mirror_image(reloader, MIRROR), "startCommand": "/nats-server"}]


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, _ = PLANNED.planned()
    rendered = set().union(*(images_in(obj) for obj in objects))  # the controller's, and its ARGO_EVENTS_IMAGE
    rendered |= {ref for version in _bus_versions(objects) for key, ref in version.items() if key.endswith("Image")}
    assert rendered == {mirror_image(ref, MIRROR) for ref in CHARTS["argo-events"].images}
    assert rendered == {str(i.target) for i in mirror_list(spec).images if i.service == "argo-events"}


def test_plinths_bus_source_and_sensor_validate_against_the_charts_crds(objects, charts_dir, helm):
    _, result = PLANNED.planned()
    crds = crd_schemas(PLANNED.rendered(charts_dir, 1))
    custom = [obj for _, obj in kubernetes_objects(result) if obj["apiVersion"] == "argoproj.io/v1alpha1"
              and obj["kind"] in ("EventBus", "EventSource", "Sensor") or obj["kind"] == "PodMonitor"
              and obj["metadata"]["namespace"] == "argo-events"]
    assert sorted(o["kind"] for o in custom) == ["EventBus", "EventSource", "PodMonitor", "Sensor"]
    assert {("argoproj.io/v1alpha1", kind) for kind in ("EventBus", "EventSource", "Sensor")} <= set(crds)
    assert ("monitoring.coreos.com/v1", "PodMonitor") in set(crds)
    # Staging: the bus keeps its streams on a volume per server.
    [bus] = [o for o in custom if o["kind"] == "EventBus"]
    assert bus["spec"]["jetstream"]["persistence"] == {"accessMode": "ReadWriteOnce", "volumeSize": "10Gi"}
    assert validation_failures([*objects, *custom], f"{KUBE}.0", crds) == []


def test_prod_passes_every_policy_with_every_chart_object(charts_dir, helm):
    """The policies over the real chart's objects and Plinth's (what `plinth check --charts` runs): the controller
    replicated with its budget, no wildcard RBAC, restricted pods, images from the mirror."""
    spec = platform_spec(_spec().model_dump(by_alias=True, exclude_unset=True), {
        "metadata": {"environment": "prod"}, "storage": {"objectStore": {"enabled": True}},
        "identity": {"reason": "the chart tier checks Argo Events' objects only"}})
    result = plan(spec, "argo-events-prod")
    rendered = render_charts(result, KUBE, charts_dir)
    findings = [(r.policy.name, v.subject, v.message) for r in check(result, None, rendered) for v in r.violations]
    assert [f for f in findings if "argo-events" in f[1] or "retrain" in f[1]] == []
    assert {o["kind"] for item in rendered if item.resource.name == "argo-events" for o in item.objects} >= {
        "Role", "Deployment", "PodDisruptionBudget"}
