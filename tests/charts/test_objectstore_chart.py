"""SeaweedFS's real chart (4.44.0) rendered with Plinth's values for the object store: stable renders (the S3
keys the chart would draw at render time are Plinth's Secret instead), the one image listed and mirrored, no
chart-default identity, every volume a claim or an emptyDir, objects valid against the Kubernetes and CRD
schemas, every pod admitted by Pod Security `restricted`."""

from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import replace

import pytest
import yaml

from support import CHARTS_DIR, platform_spec
from validation import PlannedRender, crd_schemas, dump, images_in, release_objects, restricted_problems, validation_failures
from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import chart_archive, template
from plinth.mirror import mirror_list
from plinth.modules.objectstore import CONFIG_KEY, CONFIG_SECRET
from plinth.render import kubernetes_objects
from plinth.spec.models import PlatformSpec

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
NAMESPACE = "object-store"
CHART_DEFAULTS = ("anvAdmin", "anvReadOnly", "YourSWUser", "seaweedfs-s3-secret")
"""The chart's own S3 identities, its MySQL user and its generated S3 Secret: none may render."""


def _spec() -> PlatformSpec:
    """Air-gapped prod with Longhorn and monitoring: HA, replication, ServiceMonitors, mirrored image."""
    return platform_spec({
        "metadata": {"environment": "prod"},
        "identity": {"reason": "the chart tier renders the object store; sign-on has its own tests"},
        "charts": {"source": str(CHARTS_DIR)},
        "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}},
        # The team's keys to the store come from Vault, through its secrets operator.
        "certificates": {"certManager": {"enabled": True}},
        "secrets": {"vault": {"enabled": True, "ha": True}},
        "monitoring": {"enabled": True},
        "backups": {"enabled": False, "reason": "the chart tier renders the object store; backups have their own "
                                                "tests"},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"}}},
    })


PLANNED = PlannedRender(_spec, "object-store-chart", KUBE)
_planned, _rendered = PLANNED.planned, PLANNED.rendered


def _release():
    _, result = _planned()
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "object-store"]
    return release


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(_rendered(charts_dir, 1), "object-store")


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    assert dump(release_objects(_rendered(charts_dir, 1), "object-store")) == dump(release_objects(_rendered(charts_dir, 2), "object-store"))


def test_helm_template_prints_the_same_bytes_twice(charts_dir, helm, tmp_path):
    """The same check on helm's own output, before any parsing."""
    release = _release()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release.inputs["values"], sort_keys=True), encoding="utf-8")
    args = [helm, "template", "seaweedfs", str(chart_archive(release, charts_dir)), "--namespace", NAMESPACE,
            "--values", str(values), "--kube-version", f"{KUBE}.0"]
    env = {**os.environ, **{f"HELM_{d}_HOME": str(tmp_path) for d in ("CACHE", "CONFIG", "DATA")}}
    first, second = (subprocess.run(args, capture_output=True, check=True, env=env).stdout for _ in range(2))
    assert first and first == second


def test_without_plinths_secret_the_chart_draws_new_keys_at_every_render(charts_dir, helm):
    """The pin `filer.s3.existingConfigSecret` is what keeps the render stable (so the tests above can fail)."""
    release = _release()
    values = copy.deepcopy(release.inputs["values"])
    del values["filer"]["s3"]["existingConfigSecret"]
    loose = replace(release, inputs={**release.inputs, "values": values})
    archive = chart_archive(loose, charts_dir)
    assert dump(template(loose, archive, KUBE, helm)) != dump(template(loose, archive, KUBE, helm))


def test_no_chart_default_identity_or_generated_secret_is_rendered(objects):
    text = dump(objects)
    assert [c for c in CHART_DEFAULTS if c in text] == []
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == []


def test_the_filer_serves_s3_with_the_identities_of_plinths_secret(objects):
    [filer] = [o for o in objects if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "seaweedfs-filer"]
    pod = filer["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "config-users"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "config-users"]
    assert volume["secret"]["secretName"] == CONFIG_SECRET
    assert f"-s3.config={mount['mountPath'].rstrip('/')}/{CONFIG_KEY}" in " ".join(pod["containers"][0]["command"])
    # The S3 Service team namespaces reach (on the pod port their NetworkPolicy opens).
    [service] = [o for o in objects if o["kind"] == "Service" and o["metadata"]["name"] == "seaweedfs-s3"]
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [8333]
    assert service["spec"]["selector"]["app.kubernetes.io/component"] == "filer"


def test_ha_replicas_replication_and_budgets_select_the_pods(objects):
    sets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "StatefulSet"}
    assert {name: s["spec"]["replicas"] for name, s in sets.items()} == {
        "seaweedfs-master": 3, "seaweedfs-volume": 3, "seaweedfs-filer": 2}
    master_args = " ".join(sets["seaweedfs-master"]["spec"]["template"]["spec"]["containers"][0]["command"])
    assert "-defaultReplication=001" in master_args
    _, result = _planned()
    budgets = [obj for _, obj in kubernetes_objects(result)
               if obj["kind"] == "PodDisruptionBudget" and obj["metadata"]["namespace"] == NAMESPACE]
    for name, workload in sets.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()], name


def test_every_volume_is_a_claim_on_the_platform_class_or_an_empty_dir(objects):
    sets = [o for o in objects if o["kind"] == "StatefulSet"]
    kinds = {kind for s in sets for v in s["spec"]["template"]["spec"].get("volumes") or [] for kind in v
             if kind != "name"}
    assert kinds <= {"emptyDir", "secret", "configMap", "persistentVolumeClaim"}
    claims = [c for s in sets for c in s["spec"].get("volumeClaimTemplates") or []]
    assert len(claims) == 3 and {c["spec"]["storageClassName"] for c in claims} == {"longhorn"}
    # No resize Job (alpine/k8s), no ClusterRole, no API token in the pods.
    kinds_rendered = {o["kind"] for o in objects}
    assert not kinds_rendered & {"ClusterRole", "ClusterRoleBinding"}
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    assert account["automountServiceAccountToken"] is False


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, _ = _planned()
    rendered = set().union(*(images_in(obj) for obj in objects))
    assert rendered == {mirror_image(ref, MIRROR) for ref in CHARTS["seaweedfs"].images}
    listed = {i.target for i in mirror_list(spec).images if i.service == "object-store"}
    assert rendered == {str(target) for target in listed}


def test_pods_run_under_the_restricted_pod_security_level(objects):
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("StatefulSet", "Job")]
    # master, volume, filer and the bucket Job (post-install, creates the four buckets).
    assert len(pods) == 4
    assert [problem for pod in pods for problem in restricted_problems(pod)] == []


def test_every_object_validates_against_kubernetes_and_crd_schemas(objects, charts_dir, helm):
    _, result = _planned()
    crds = crd_schemas(_rendered(charts_dir, 1))
    plinth_objects = [obj for _, obj in kubernetes_objects(result) if obj["metadata"].get("namespace") == NAMESPACE
                      and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"Secret", "NetworkPolicy", "PodDisruptionBudget"} <= {o["kind"] for o in plinth_objects}
    assert validation_failures([*objects, *plinth_objects], f"{KUBE}.0", crds) == []
    assert ("monitoring.coreos.com/v1", "ServiceMonitor") in set(crds)
    assert {o["kind"] for o in objects} >= {"ServiceMonitor"}
