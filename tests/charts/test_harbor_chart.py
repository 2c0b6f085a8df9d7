"""Harbor's real chart (1.19.1) rendered with Plinth's values: stable renders (no value generated at
render time survives), every image listed and mirrored, the Secrets Plinth creates hold every key the
chart reads, no chart-default credential, and objects valid against the Kubernetes and CRD schemas."""

from __future__ import annotations

import copy
import os
import re
import subprocess
from dataclasses import replace

import pytest
import yaml

from support import CHARTS_DIR, platform_spec
from validation import PlannedRender, crd_schemas, dump, images_in, release_objects, restricted_problems, validation_failures
from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import chart_archive, template
from plinth.mirror import mirror_list
from plinth.modules.helm import merge_values
from plinth.modules.registry import SECRETS, TOKEN_SECRET
from plinth.render import kubernetes_objects
from plinth.spec.models import PlatformSpec

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
HOST = "harbor.models.plinth.internal"
CHART_DEFAULT_CREDENTIALS = ("Harbor12345", "changeit", "not-a-secure-key", "harbor_registry_password")


def _spec() -> PlatformSpec:
    """Air-gapped prod with the Gateway, Longhorn and monitoring: every Harbor feature on."""
    return platform_spec({
        "metadata": {"environment": "prod"},
        "identity": {"reason": "the chart tier renders Harbor; sign-on has its own tests"},
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "storage": {"longhorn": {"enabled": True}},
        "monitoring": {"enabled": True},
        "registry": {"harbor": {"enabled": True, "hostname": HOST}},
        "backups": {"enabled": False, "reason": "the chart tier renders Harbor; backups have their own tests"},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"}}},
    })


PLANNED = PlannedRender(_spec, "harbor-chart", KUBE)
_planned, _rendered = PLANNED.planned, PLANNED.rendered


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(_rendered(charts_dir, 1), "harbor")


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    first, second = dump(release_objects(_rendered(charts_dir, 1), "harbor")), dump(release_objects(_rendered(charts_dir, 2), "harbor"))
    assert first == second


def test_helm_template_prints_the_same_bytes_twice(charts_dir, helm, tmp_path):
    """The same check on helm's own output, before any parsing."""
    release = _release()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release.inputs["values"], sort_keys=True), encoding="utf-8")
    args = [helm, "template", "harbor", str(chart_archive(release, charts_dir)), "--namespace", "harbor",
            "--values", str(values), "--kube-version", f"{KUBE}.0"]
    env = {**os.environ, **{f"HELM_{d}_HOME": str(tmp_path) for d in ("CACHE", "CONFIG", "DATA")}}
    first, second = (subprocess.run(args, capture_output=True, check=True, env=env).stdout for _ in range(2))
    assert first and first == second


def _release():
    _, result = _planned()
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "harbor"]
    return release


def _without(values: dict, dotted: str) -> dict:
    out = copy.deepcopy(values)
    node = out
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    del node[last]
    return out


# Each pin, and what the chart generates in its place at every render.
PINS = {
    "core.existingSecret": "randAlphaNum (core secret)",
    "core.existingXsrfSecret": "randAlphaNum (CSRF key)",
    "core.secretName": "genCA (token certificate)",
    "jobservice.existingSecret": "randAlphaNum (jobservice secret)",
    "registry.existingSecret": "randAlphaNum (registry HTTP secret)",
    "registry.credentials.existingSecret": "htpasswd (random bcrypt salt)",
    "expose.tls.enabled": "genCA (nginx certificate)",
}
# What the chart requires before it generates in a pin's place.
NEEDS = {"expose.tls.enabled": {"expose": {"tls": {"auto": {"commonName": HOST}}}}}


@pytest.mark.parametrize("pin", PINS)
def test_each_pin_is_what_keeps_the_render_stable(pin, charts_dir, helm):
    """Without the pin the chart's own generator runs again: two renders differ (so the test above can fail)."""
    release = _release()
    values = merge_values(_without(release.inputs["values"], pin), NEEDS.get(pin, {}))
    loose = replace(release, inputs={**release.inputs, "values": values})
    archive = chart_archive(loose, charts_dir)
    assert dump(template(loose, archive, KUBE, helm)) != dump(template(loose, archive, KUBE, helm)), PINS[pin]


def test_no_chart_default_credential_is_rendered(objects):
    text = dump(objects)
    assert [c for c in CHART_DEFAULT_CREDENTIALS if c in text] == []
    # What the chart's own Secrets do hold is the plan's secret placeholder, never a value.
    assert re.search(r"(?i)-----BEGIN [A-Z ]*PRIVATE KEY-----", text) is None


def test_the_secrets_plinth_creates_hold_every_key_the_chart_reads(objects):
    mine = {**SECRETS, TOKEN_SECRET: {"tls.key": "", "tls.crt": "", "ca.crt": ""}}
    read: set[tuple[str, str]] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                read.add((ref["name"], ref["key"]))
            secret = node.get("secret")
            if isinstance(secret, dict) and "secretName" in secret:
                for item in secret.get("items") or [{"key": "*"}]:
                    read.add((secret["secretName"], item["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for obj in objects:
        walk(obj)
    ours = {(name, key) for name, key in read if name in mine}
    assert {name for name, _ in ours} == set(mine)  # every Secret Plinth creates is used
    assert sorted((name, key) for name, key in ours if key != "*" and key not in mine[name]) == []


def test_the_database_password_is_cloudnativepgs_secret_never_a_rendered_value(objects):
    secrets = {o["metadata"]["name"]: {**(o.get("data") or {}), **(o.get("stringData") or {})}
               for o in objects if o["kind"] == "Secret"}
    # No internal database (its Secret, its StatefulSet) and no password in core's or the exporter's Secret.
    assert "harbor-database" not in secrets
    assert [(name, key) for name, data in secrets.items() for key in data if "PASSWORD" in key
            and "DATABASE" in key or key == "POSTGRESQL_PASSWORD"] == []
    readers = {o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "Job")
               for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []
               if (e.get("valueFrom") or {}).get("secretKeyRef") == {"name": "harbor-postgres-app", "key": "password"}}
    assert readers == {"harbor-core", "harbor-exporter"}


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, result = _planned()
    rendered = set().union(*(images_in(obj) for obj in objects))
    # All but the internal database's: Harbor's PostgreSQL is the platform's CloudNativePG.
    assert rendered == {mirror_image(ref, MIRROR) for ref in CHARTS["harbor"].images if "/harbor-db:" not in ref}
    listed = {i.target for i in mirror_list(spec).images if i.service == "harbor"}
    assert rendered == {str(target) for target in listed}


def test_pods_run_under_the_restricted_pod_security_level(objects):
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(pods) == 8
    assert [problem for pod in pods for problem in restricted_problems(pod)] == []


def test_every_object_validates_against_kubernetes_and_crd_schemas(objects, charts_dir, helm):
    _, result = _planned()
    crds = crd_schemas(_rendered(charts_dir, 1))
    # Cilium's own policies have no schema offline: its operator creates the cilium.io CRDs at runtime.
    plinth_objects = [obj for _, obj in kubernetes_objects(result) if obj["metadata"].get("namespace") == "harbor"
                      and not obj["apiVersion"].startswith("cilium.io/")]
    kinds = {o["kind"] for o in plinth_objects}
    assert {"HTTPRoute", "Certificate", "Secret", "NetworkPolicy"} <= kinds
    assert validation_failures([*objects, *plinth_objects], f"{KUBE}.0", crds) == []
    # Custom resources were checked against their CRDs, not skipped.
    assert {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
            ("cert-manager.io/v1", "Certificate")} <= set(crds)
