"""Every blueprint and stack, every Helm release, rendered from the real chart with Plinth's values.

(a) values validate against the chart's own values.schema.json; (b) `helm template` succeeds;
(c) every object validates against the Kubernetes OpenAPI schema of the spec's version, and
custom resources against their CRD's openAPIV3Schema; (d) air-gap specs reference nothing
outside the mirror and every rendered image is listed by `plinth images`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from e2e.binaries import toolchain_crds
from support import BLUEPRINTS, ROOT, STACKS, stack_marks
from validation import chart_member, coalesce, crd_schemas, images_in, restricted_problems, validate, \
    validation_failures
from plinth.catalog import CHARTS, CRD_BUNDLES, ImageRef
from plinth.engine import manifests
from plinth.engine.charts import HELM_RELEASE, CONFIG_GROUP, chart_archive, helm_template, render_charts
from plinth.engine.manifests import HEAD, dump_sorted, load_documents, sorted_mappings
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec, load_stack_spec

SPECS = [pytest.param(("blueprint", p), id=p.name) for p in BLUEPRINTS if p.suffix == ".yaml"] + [
    pytest.param(("stack", s), id=f"stack-{s}", marks=stack_marks(s)) for s in STACKS
]


@cache
def _load(which):
    kind, ref = which
    return load_spec(ref) if kind == "blueprint" else load_stack_spec(ROOT, ref)


@cache
def _render(which, charts_dir: Path):
    spec = _load(which)
    result = plan(spec, str(which[1]))
    return spec, result, render_charts(result, spec.kubernetes.version, charts_dir)


@pytest.fixture
def rendered(request, charts_dir, helm):
    return _render(request.param, charts_dir)


def _chart_file(charts_dir: Path, release) -> Path:
    chart = str(release.inputs["chart"]).rstrip("/").rsplit("/", 1)[-1]
    if chart.endswith(".tgz"):
        return charts_dir / "charts" / chart
    return charts_dir / "charts" / f"{chart}-{release.inputs['version']}.tgz"


def test_catalog_pins_exactly_the_packaged_chart_versions(charts_dir):
    index = {c["name"]: c["version"] for c in json.loads((charts_dir / "INDEX.json").read_text())}
    assert {key: (c.name, c.version) for key, c in CHARTS.items()} == {
        key: (c.name, index.get(c.name)) for key, c in CHARTS.items()}
    for bundle in CRD_BUNDLES:
        assert sorted((charts_dir / "crds" / bundle.directory).glob("*.yaml")), bundle


@pytest.mark.parametrize("rendered", SPECS, indirect=True)
def test_values_validate_against_the_charts_own_schema(rendered, charts_dir):
    _, result, _ = rendered
    checked = 0
    for release in (r for r in result.resources if r.type == HELM_RELEASE):
        archive = _chart_file(charts_dir, release)
        schema = chart_member(archive, "values.schema.json")
        if schema is None:
            continue
        defaults = yaml.safe_load(chart_member(archive, "values.yaml")) or {}
        values = coalesce(defaults, release.inputs.get("values") or {})
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in jsonschema.Draft7Validator(json.loads(schema)).iter_errors(values)]
        assert errors == [], release.name
        checked += 1
    releases = {r.inputs["name"] for r in result.resources if r.type == HELM_RELEASE}
    with_schema = {"cilium", "cert-manager", "cloudnative-pg", "jupyterhub", "mlflow", "plugin-barman-cloud", "vault",
                   "velero"}  # INDEX.md: "schema: yes"
    assert checked == len(releases & with_schema), "charts with a schema were skipped"


@pytest.mark.parametrize("rendered", SPECS, indirect=True)
def test_every_release_renders_from_its_real_chart(rendered):
    _, result, charts = rendered
    releases = [r for r in result.resources if r.type in (HELM_RELEASE, CONFIG_GROUP)]
    assert [(c.resource.name, c.note) for c in charts if c.note] == []
    assert {c.resource.urn for c in charts} == {r.urn for r in releases}
    assert all(c.objects for c in charts)


def test_chart_output_reads_and_writes_as_pyyaml_does(charts_dir, helm):
    """Render's YAML shortcuts on real chart output (every release of the largest blueprint): the objects
    `yaml.load_all` reads and the bytes `yaml.dump` writes (tests/test_manifests.py tries every other input)."""
    spec, result, _ = _render(("blueprint", ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), charts_dir)
    for release in (r for r in result.resources if r.type == HELM_RELEASE):
        text = helm_template(release, chart_archive(release, charts_dir), spec.kubernetes.version, helm)
        objects = load_documents(text)
        assert objects == [d for d in yaml.load_all(text, Loader=manifests._Loader) if isinstance(d, dict)]
        assert [dump_sorted(o, HEAD) for o in objects] == [
            yaml.dump(sorted_mappings(o, HEAD), Dumper=manifests._DUMPER, default_flow_style=False,
                      sort_keys=False, allow_unicode=True, width=120) for o in objects], release.name


@cache
def _platform_crds(charts_dir: Path, helm: str) -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> openAPIV3Schema for every CRD the platform's charts and bundles install."""
    spec = _load(("blueprint", ROOT / "blueprints" / "onprem-airgap-regulated.yaml"))
    _, _, charts = _render(("blueprint", ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), charts_dir)
    # With the CRDs controllers register at start (Cilium's), fetched by the toolchain build.
    registered = [yaml.safe_load(path.read_text()) for path in toolchain_crds()]
    schemas = crd_schemas(charts, extra_objects=registered)
    assert spec.monitoring.enabled and len(schemas) > 20
    assert ("cilium.io/v2", "CiliumNetworkPolicy") in schemas
    return schemas


@pytest.mark.parametrize("rendered", SPECS, indirect=True)
def test_every_object_validates_against_kubernetes_and_crd_schemas(rendered, charts_dir, helm, registered_crds):
    spec, result, charts = rendered
    crds = _platform_crds(charts_dir, helm)
    version = f"{spec.kubernetes.version}.0"
    objects = [obj for _, obj in kubernetes_objects(result)] + [o for c in charts for o in c.objects]
    assert validation_failures(objects, version, crds) == []


def test_a_broken_custom_resource_fails_its_crd_schema(charts_dir, helm):
    crds = _platform_crds(charts_dir, helm)
    bad = {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": "x"},
           "spec": {"selfSigned": {}, "ca": "not-a-mapping"}}
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, "1.34.0", crds)


def _name(ref: str) -> str:
    """registry/repository:tag (digest dropped), docker.io made explicit."""
    image = ImageRef.parse(ref)
    return f"{image.registry}/{image.repository}:{image.tag}"


@pytest.mark.parametrize("rendered", SPECS, indirect=True)
def test_every_rendered_image_is_listed_by_plinth_images(rendered):
    spec, result, charts = rendered
    listing = mirror_list(spec)
    rendered_images = set()
    for item in charts:
        for obj in item.objects:
            rendered_images |= images_in(obj)
    for _, obj in kubernetes_objects(result):
        rendered_images |= images_in(obj)
    listed = {_name(i.target or i.source) for i in listing.images}
    assert sorted(_name(ref) for ref in rendered_images if _name(ref) not in listed) == []
    if spec.airgap.enabled:
        mirror = spec.airgap.mirror
        assert sorted(r for r in rendered_images if not r.startswith(mirror.registry + "/")) == []
        sources = {str(r.inputs["chart"]) for r in result.resources if r.type == HELM_RELEASE}
        assert sorted(s for s in sources if not s.startswith(mirror.charts)) == []
        files = [f for r in result.resources if r.type == CONFIG_GROUP for f in r.inputs["files"]]
        assert all(f.startswith(mirror.files or mirror.charts) for f in files), files


def test_the_image_check_finds_an_image_outside_the_mirror():
    pod = {"spec": {"containers": [{"name": "a", "image": "quay.io/x/y:1", "args": ["--helper-image=docker.io/z:2"]}],
                    "initContainers": [{"name": "b", "image": "mirror.corp/x/y:1",
                                        "env": [{"name": "CSI_IMAGE", "value": "registry.k8s.io/csi:3"}]}]}}
    assert images_in(pod) == {"quay.io/x/y:1", "docker.io/z:2", "mirror.corp/x/y:1", "registry.k8s.io/csi:3"}


POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}


def pod_templates(obj: dict) -> list[dict]:
    if obj.get("kind") in POD_OWNERS:
        return [obj["spec"]["template"]["spec"]]
    if obj.get("kind") == "CronJob":
        return [obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


@pytest.mark.parametrize("rendered", SPECS, indirect=True)
def test_every_chart_pod_meets_its_namespaces_pod_security_level(rendered):
    """A pod below its namespace's enforced level is refused by the API server (the live tier shows it:
    tests/e2e): every pod template of every chart in a namespace Plinth creates at `restricted` meets it."""
    _, result, charts = rendered
    levels = {o["metadata"]["name"]: o["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce")
              for _, o in kubernetes_objects(result) if o["kind"] == "Namespace"}
    problems = []
    for chart in charts:
        namespace = chart.resource.inputs.get("namespace")
        for obj in chart.objects:
            ns = obj.get("metadata", {}).get("namespace") or namespace
            if levels.get(ns) != "restricted":
                continue
            problems += [f"{obj['kind']} {ns}/{obj['metadata']['name']}: {p}"
                         for pod in pod_templates(obj) for p in restricted_problems(pod)]
    assert problems == []
