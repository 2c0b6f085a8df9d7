"""MLflow's real chart (1.11.5) rendered with Plinth's values: no bundled database or object store, no secret value
and nothing drawn at render time, the backend and artifact settings as planned, every image listed and mirrored,
restricted pods, and objects valid against the Kubernetes and CRD schemas."""

from __future__ import annotations

import base64
import copy
from dataclasses import replace

import pytest

from support import CHARTS_DIR, platform_spec
from validation import PlannedRender, crd_schemas, dump, images_in, release_objects, restricted_problems, validation_failures
from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import chart_archive, template
from plinth.mirror import mirror_list
from plinth.modules.mlflow import MIGRATE
from plinth.plan import SECRET
from plinth.render import kubernetes_objects

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
HOST = "mlflow.models.plinth.internal"
PLATFORM = "test"
CA = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ2F0ZXdheS1jYQ==\n-----END CERTIFICATE-----\n"


def _spec():
    """Air-gapped prod on-prem with the Gateway, the object store, monitoring and sign-on through a provider with a
    private CA: every MLflow feature on."""
    return platform_spec({
        "metadata": {"environment": "prod"},
        "identity": {"oidc": {"issuer": "https://login.corp.internal/realms/ml", "certificateAuthority": CA,
                              "clients": {"kubernetes": "ml-kubernetes", "mlflow": "ml-mlflow"}}},
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}},
        "secrets": {"vault": {"enabled": True, "ha": True}},  # the team's keys to the store come from Vault
        "monitoring": {"enabled": True},
        "registry": {"mlflow": {"enabled": True, "hostname": HOST}},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"},
                                               "hosts": ["login.corp.internal"]}},  # the provider
    })


PLANNED = PlannedRender(_spec, "mlflow-chart", KUBE)
_planned, _rendered = PLANNED.planned, PLANNED.rendered


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(_rendered(charts_dir, 1), "mlflow")


def _release():
    _, result = _planned()
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "mlflow"]
    return release


def _one(objects, kind: str, name: str = "mlflow") -> dict:
    [found] = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def _pod(objects) -> dict:
    return _one(objects, "Deployment")["spec"]["template"]["spec"]


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    assert dump(release_objects(_rendered(charts_dir, 1), "mlflow")) == dump(
        release_objects(_rendered(charts_dir, 2), "mlflow"))


def test_without_the_stack_secret_the_chart_draws_a_flask_key_at_every_render(charts_dir, helm):
    """The pin is what keeps the render stable (so the test above can fail)."""
    release = _release()
    values = copy.deepcopy(release.inputs["values"])
    del values["flaskServerSecretKey"]
    loose = replace(release, inputs={**release.inputs, "values": values})
    archive = chart_archive(loose, charts_dir)
    assert dump(template(loose, archive, KUBE, helm)) != dump(template(loose, archive, KUBE, helm))


def test_only_the_server_renders_no_bundled_database_or_object_store(objects):
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "Deployment", "Secret", "Secret", "Service", "ServiceAccount", "ServiceMonitor"]
    names = " ".join(o["metadata"]["name"] for o in objects)
    assert [word for word in ("postgresql", "mysql", "minio") if word in names] == []


def test_no_secret_value_is_rendered(objects):
    secrets = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "Secret"}
    # The Flask key is the stack secret's placeholder, never a drawn value; nothing else is a value at all.
    assert {key: base64.b64decode(value).decode()
            for key, value in secrets["mlflow-flask-server-secret-key"].items()} == {
        "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET}
    assert secrets["mlflow-env-secret"] == {}
    configmap = _one(objects, "ConfigMap", "mlflow-env-configmap")["data"]
    assert [key for key in configmap if "PASSWORD" in key or key.startswith("AWS_")] == []
    # Every credential the pod reads is a reference to a Secret: the operator's, Plinth's, the chart's key (also
    # the sign-on plugin's session key).
    pod = _pod(objects)
    refs = {(e["name"], e["valueFrom"]["secretKeyRef"]["name"])
            for c in pod["initContainers"] + pod["containers"] for e in c.get("env") or [] if "valueFrom" in e}
    assert refs == {("PGUSER", "mlflow-postgres-app"), ("PGPASSWORD", "mlflow-postgres-app"),
                    ("AWS_ACCESS_KEY_ID", "mlflow-artifacts-s3"), ("AWS_SECRET_ACCESS_KEY", "mlflow-artifacts-s3"),
                    ("OIDC_CLIENT_SECRET", "mlflow-oidc"), ("SECRET_KEY", "mlflow-flask-server-secret-key")}
    # The teams' service-account tokens are a mounted Secret, read by the team-permissions init container alone.
    [grants] = [c for c in pod["initContainers"] if c["name"] == "team-permissions"]
    assert {"name": "team-tokens", "mountPath": "/etc/mlflow/team-tokens", "readOnly": True} in grants["volumeMounts"]
    assert {"name": "team-tokens", "secret": {"secretName": "mlflow-team-tokens"}} in pod["volumes"]
    plain = {e["name"] for c in pod["initContainers"] + pod["containers"] for e in c.get("env") or []
             if "value" in e}
    # AWS_CA_BUNDLE is a path (the platform CA's mount), no credential.
    assert [name for name in plain if "PASSWORD" in name or "SECRET" in name
            or (name.startswith("AWS_") and name != "AWS_CA_BUNDLE")] == []


def test_the_backend_is_the_platform_postgres_verified(objects):
    [server] = _pod(objects)["containers"]
    assert "--backend-store-uri=postgresql://" in server["args"]
    configmap = _one(objects, "ConfigMap", "mlflow-env-configmap")["data"]
    assert (configmap["PGHOST"], configmap["PGPORT"], configmap["PGDATABASE"]) == (
        "mlflow-postgres-rw.mlflow.svc", "5432", "mlflow")
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/etc/mlflow/postgres-ca/ca.crt")
    assert {"name": "postgres-ca", "mountPath": "/etc/mlflow/postgres-ca", "readOnly": True} in server["volumeMounts"]


def test_the_artifacts_are_the_object_stores_bucket_proxied_by_the_server(objects):
    [server] = _pod(objects)["containers"]
    assert f"--artifacts-destination=s3://{PLATFORM}-artifacts/" in server["args"]
    assert "--serve-artifacts" in server["args"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "https://seaweedfs-s3.object-store.svc:8333"
    assert env["AWS_CA_BUNDLE"] == "/etc/plinth/object-store-ca/ca.crt"  # the store's HTTPS, the platform CA
    assert {"name": "object-store-ca", "mountPath": "/etc/plinth/object-store-ca", "readOnly": True} in \
        server["volumeMounts"]
    assert {"name": "object-store-ca", "secret": {"secretName": "object-store-ca", "defaultMode": 0o444,
            "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in _pod(objects)["volumes"]


def test_the_migration_runs_before_the_server_and_no_two_versions_overlap(objects):
    deployment = _one(objects, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    # The schema first, then the sign-on plugin's schema and the teams' grants, on the server's image.
    migration, grants = pod["initContainers"]
    assert migration["command"] == ["python", "-c", MIGRATE] and grants["name"] == "team-permissions"
    [server] = pod["containers"]
    assert migration["image"] == grants["image"] == server["image"]
    for step in (migration, grants):
        assert {m["name"] for m in step["volumeMounts"]} <= {v["name"] for v in pod["volumes"]}


def test_metrics_on_the_services_port(objects):
    [server] = _pod(objects)["containers"]
    assert "--expose-prometheus=/mlflow/metrics" in server["args"]
    monitor = _one(objects, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "mlflow"
    service_ports = {p["name"] for p in _one(objects, "Service")["spec"]["ports"]}
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"] and "http" in service_ports


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, _ = _planned()
    rendered = set().union(*(images_in(obj) for obj in objects))
    assert rendered == {mirror_image(ref, MIRROR) for ref in CHARTS["mlflow"].images}
    assert rendered == {str(i.target) for i in mirror_list(spec).images if i.service == "mlflow"}


def test_pods_run_under_the_restricted_pod_security_level(objects):
    assert restricted_problems(_pod(objects)) == []


def test_every_object_validates_against_kubernetes_and_crd_schemas(objects, charts_dir, helm):
    _, result = _planned()
    crds = crd_schemas(_rendered(charts_dir, 1))
    plinth_objects = [obj for _, obj in kubernetes_objects(result) if obj["metadata"].get("namespace") == "mlflow"
                      and not obj["apiVersion"].startswith("cilium.io/")]
    assert {"HTTPRoute", "Cluster", "Secret", "PodDisruptionBudget", "PodMonitor", "ConfigMap"} <= {
        o["kind"] for o in plinth_objects}
    assert validation_failures([*objects, *plinth_objects], f"{KUBE}.0", crds) == []
    assert {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
            ("postgresql.cnpg.io/v1", "Cluster")} <= set(crds)
