"""Velero's real chart (12.1.0) rendered with Plinth's values on each target: the values pass the chart's own
schema, the server runs the target's plugin and the chart renders no location of its own (Plinth's is its own
object), every pod (the server with its plugin init container, the CRD upgrade Job) is admitted by Pod Security
`restricted`, every image is listed by `plinth images`, and Plinth's Schedule validates against Velero's CRD."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import yaml
from support import CHARTS_DIR, spec_document
from validation import (
    chart_member,
    coalesce,
    crd_schemas,
    images_in,
    release_objects,
    restricted_problems,
    validation_failures,
)

from plinth.engine.charts import HELM_RELEASE, render_charts
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.render import kubernetes_objects
from plinth.spec.models import PlatformSpec

KUBE = "1.34"
PROD = {"metadata": {"environment": "prod"}, "charts": {"source": str(CHARTS_DIR)}, "monitoring": {"enabled": True}}
TARGETS = {
    "existing": {"storage": {"objectStore": {"enabled": True}}},
    "eks": {"target": {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
                       "availabilityZones": ["eu-west-1a", "eu-west-1b"],
                       "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
                       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}},
    "gke": {"target": {"type": "gke", "region": "europe-west4", "project": "acme-ml",
                       "nodePools": [{"name": "cpu", "instanceType": "n2-standard-8"}]}},
}


@cache
def _rendered(target: str, charts_dir: Path):
    spec = PlatformSpec.model_validate(spec_document(PROD, TARGETS[target]))
    result = plan(spec, f"velero-{target}")
    return spec, result, render_charts(result, KUBE, charts_dir)


def test_the_values_pass_the_charts_own_schema(charts_dir, helm):
    archive = charts_dir / "charts" / "velero-12.1.0.tgz"
    schema = json.loads(chart_member(archive, "values.schema.json"))
    defaults = yaml.safe_load(chart_member(archive, "values.yaml"))
    for target in TARGETS:
        _, result, _ = _rendered(target, charts_dir)
        [release] = [r for r in result.resources if r.type == HELM_RELEASE and r.inputs["name"] == "velero"]
        errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(
            coalesce(defaults, release.inputs["values"]))]
        assert errors == [], target


def test_the_targets_plugin_and_no_location_of_the_charts_own(charts_dir, helm):
    for target in ("existing", "eks", "gke"):
        _, _, rendered = _rendered(target, charts_dir)
        objects = release_objects(rendered, "velero")
        # The location is Plinth's own object (tests/test_velero.py): the chart's would take the CA's text.
        assert not [o for o in objects if o["kind"] in ("BackupStorageLocation", "VolumeSnapshotLocation",
                                                         "DaemonSet", "Secret")]
        [deployment] = [o for o in objects if o["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        plugin = "velero-plugin-for-gcp" if target == "gke" else "velero-plugin-for-aws"
        assert [c["name"] for c in pod["initContainers"]] == [plugin]
        volumes = {v["name"]: v for v in pod["volumes"]}
        if target == "existing":
            assert volumes["cloud-credentials"] == {"name": "cloud-credentials",
                                                    "secret": {"secretName": "velero-backup-s3"}}
        else:
            assert "cloud-credentials" not in volumes
            [account] = [o for o in objects if o["kind"] == "ServiceAccount"
                         and o["metadata"]["name"] == "velero-server"]
            assert set(account["metadata"]["annotations"]) & {"eks.amazonaws.com/role-arn",
                                                              "iam.gke.io/gcp-service-account"}
        assert [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceMonitor"] == ["velero"]


def test_every_velero_pod_is_restricted_and_every_image_is_listed(charts_dir, helm):
    for target in TARGETS:
        spec, _, rendered = _rendered(target, charts_dir)
        objects = release_objects(rendered, "velero")
        pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "Job")]
        assert len(pods) == 2  # the server, the CRD upgrade Job
        assert [p for pod in pods for p in restricted_problems(pod)] == [], target
        rendered_images = set().union(*(images_in(o) for o in objects))
        listed = {i.source for i in mirror_list(spec).images}
        assert rendered_images and rendered_images <= listed, target


def test_the_schedule_and_the_location_validate_against_veleros_crds(charts_dir, helm):
    for target in ("existing", "eks", "gke"):
        _, result, rendered = _rendered(target, charts_dir)
        crds = crd_schemas(rendered)
        assert {("velero.io/v1", "Schedule"), ("velero.io/v1", "BackupStorageLocation")} <= set(crds)
        ours = [obj for _, obj in kubernetes_objects(result) if obj["kind"] in ("Schedule", "BackupStorageLocation")]
        assert sorted(obj["kind"] for obj in ours) == ["BackupStorageLocation", "Schedule"]
        assert validation_failures(ours, f"{KUBE}.0", crds) == []
    [schedule] = [obj for obj in ours if obj["kind"] == "Schedule"]
    broken = [{**schedule, "spec": {**schedule["spec"], "template": {"ttl": 720}}}]
    assert validation_failures(broken, f"{KUBE}.0", crds) != []
    # On-prem the location trusts the platform CA by reference (a field of this Velero's CRD, not the chart's).
    _, result, rendered = _rendered("existing", charts_dir)
    [location] = [obj for _, obj in kubernetes_objects(result) if obj["kind"] == "BackupStorageLocation"]
    assert location["spec"]["objectStorage"]["caCertRef"] == {"name": "object-store-ca", "key": "ca.crt"}
    typo = {**location, "spec": {**location["spec"], "objectStorage": {
        **location["spec"]["objectStorage"], "caCertRef": "object-store-ca"}}}
    assert validation_failures([typo], f"{KUBE}.0", crd_schemas(rendered)) != []
