"""The feature store's releases rendered from the real charts (feast-feature-server, cloudnative-pg,
redis-operator) with Plinth's values, and the custom resources Plinth declares for them.

Values validate against cloudnative-pg's values.schema.json, `helm template` succeeds, every object
validates against Kubernetes' schema or its CRD's, pods meet the Pod Security `restricted` profile of
their namespaces, and every image is from the mirror and listed by `plinth images`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from support import PROD_BACKUPS, platform_spec
from validation import (
    chart_member, coalesce, crd_schemas, images_in, restricted_problems, validate, validation_failures,
)
from plinth.engine.charts import HELM_RELEASE, render_charts
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.render import kubernetes_objects
from plinth.spec.rules import check_rules

MIRROR = "mirror.corp.internal/plinth"
FEAST_CHARTS = {"feast-feature-server", "cloudnative-pg", "redis-operator"}
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


@cache
def _render(charts_dir: Path, environment: str, online: str, offline: str):
    spec = platform_spec({
        "metadata": {"environment": environment},
        "charts": {"source": str(charts_dir)},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": str(charts_dir)}},
        "monitoring": {"enabled": True},
        "featureStore": {"feast": {"enabled": True, "onlineStore": online, "offlineStore": offline}},
    }, *([PROD_BACKUPS, {"certificates": {"certManager": {"enabled": True}},
                          "secrets": {"vault": {"enabled": True, "ha": True}},  # the teams' keys to the store
                          "identity": {"reason": "the chart tier renders Feast; sign-on has its own tests"}}]
         if environment == "prod" else []))
    assert check_rules(spec) == []
    result = plan(spec, "featurestore")
    return spec, result, render_charts(result, spec.kubernetes.version, charts_dir)


@pytest.fixture(params=[("prod", "redis", "file"), ("dev", "postgres", "postgres")],
                ids=["prod-redis-file", "dev-postgres-postgres"])
def rendered(request, charts_dir, helm):
    return _render(charts_dir, *request.param)


def test_the_feature_store_charts_render_with_plinths_values(rendered):
    _, result, charts = rendered
    releases = {c.resource.inputs["name"]: c for c in charts if c.resource.type == HELM_RELEASE}
    assert [(c.resource.name, c.note) for c in charts if c.note] == []
    assert FEAST_CHARTS - {"redis-operator"} <= set(releases)
    for name in FEAST_CHARTS & set(releases):
        assert releases[name].objects, name
    deployment = next(o for o in releases["feast-feature-server"].objects if o["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    # The chart passes Plinth's feature_store.yaml and the Secret-backed credentials through unchanged.
    assert env["FEATURE_STORE_YAML_BASE64"]["value"] == next(
        r for r in result.resources if r.type == HELM_RELEASE and r.inputs["name"] == "feast-feature-server"
    ).inputs["values"]["feature_store_yaml_base64"]
    assert env["FEAST_POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "feast-postgres-app",
                                                                           "key": "password"}
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/tmp", "/etc/feast/postgres-ca"}


def test_cloudnative_pg_values_validate_against_its_schema(rendered, charts_dir):
    _, result, _ = rendered
    release = next(r for r in result.resources if r.type == HELM_RELEASE and r.inputs["name"] == "cloudnative-pg")
    archive = Path(release.inputs["chart"])
    schema = json.loads(chart_member(archive, "values.schema.json"))
    values = coalesce(yaml.safe_load(chart_member(archive, "values.yaml")), release.inputs["values"])
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
              for e in jsonschema.Draft7Validator(schema).iter_errors(values)]
    assert errors == []
    # The check can fail: the schema types the operator's replica count.
    bad = coalesce(values, {"replicaCount": "two"})
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad))


def test_every_object_validates_and_custom_resources_match_their_crds(rendered):
    spec, result, charts = rendered
    crds = crd_schemas(charts)
    # The operators' own CRDs: what the Cluster and Redis Plinth declares are checked against.
    assert ("postgresql.cnpg.io/v1", "Cluster") in crds and ("monitoring.coreos.com/v1", "PodMonitor") in crds
    version = f"{spec.kubernetes.version}.0"
    ours = [obj for _, obj in kubernetes_objects(result) if obj["metadata"].get("namespace") in
            ("feast", "cnpg-system", "redis-operator")]
    feast = spec.feature_store.feast
    # Each team's own feature server (Deployment, Service; a budget in prod) lives in `feast` too.
    expected = {"Cluster", "NetworkPolicy", "ServiceMonitor", "PodMonitor", "Deployment", "Service"}
    prod = spec.metadata.environment != "dev"
    if feast.online_store == "redis":
        expected |= {"RedisReplication", "RedisSentinel", "Secret"} if prod else {"Redis", "Secret"}
    expected |= {"PersistentVolumeClaim"} if feast.offline_store == "file" else set()
    expected |= {"PodDisruptionBudget"} if prod else set()
    # Backups on (prod), watched by their alerts (monitoring on).
    # Backups on in prod: the Barman Cloud ObjectStore, with the store's CA (a trust-bundle Certificate) on-prem.
    expected |= {"ObjectStore", "ScheduledBackup", "PrometheusRule", "Certificate"} \
        if spec.metadata.environment == "prod" else set()
    assert {o["kind"] for o in ours} == expected
    theirs = [o for c in charts if c.resource.inputs.get("name") in FEAST_CHARTS for o in c.objects]
    assert validation_failures(ours + theirs, version, crds) == []
    broken = next(o for o in ours if o["kind"] == "Cluster")
    with pytest.raises(jsonschema.ValidationError):
        validate({**broken, "spec": {**broken["spec"], "instances": "three"}}, version, crds)


def test_pods_meet_the_restricted_profile_of_their_namespaces(rendered):
    _, result, charts = rendered
    pods = {}
    for item in charts:
        if item.resource.inputs.get("name") in FEAST_CHARTS:
            for obj in item.objects:
                if obj["kind"] in POD_KINDS:
                    pods[obj["metadata"]["name"]] = obj["spec"]["template"]["spec"]
    assert "feast-feature-server" in pods and "cloudnative-pg" in pods
    assert {name: restricted_problems(pod) for name, pod in pods.items()} == {name: [] for name in pods}
    # The Redis pods the operator builds take their contexts from the Redis resource.
    for _, obj in kubernetes_objects(result):
        if obj["kind"] == "Redis":
            spec = obj["spec"]
            pod = {"securityContext": spec["podSecurityContext"],
                   "containers": [{"name": "redis", "securityContext": spec["securityContext"]},
                                  {"name": "exporter", "securityContext": spec["redisExporter"]["securityContext"]}]}
            assert restricted_problems(pod) == []
    assert restricted_problems({"containers": [{"name": "x", "securityContext": {"runAsNonRoot": True}}]})


def test_every_image_is_from_the_mirror_and_listed(rendered):
    spec, result, charts = rendered
    found: set[str] = set()
    for item in charts:
        if item.resource.inputs.get("name") in FEAST_CHARTS:
            for obj in item.objects:
                images_in(obj, found)
    for _, obj in kubernetes_objects(result):
        if obj["metadata"].get("namespace") == "feast":
            images_in(obj, found)
    assert found and sorted(i for i in found if not i.startswith(MIRROR + "/")) == []
    listed = {i.target for i in mirror_list(spec).images}
    assert sorted(found - listed) == []
