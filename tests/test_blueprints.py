"""Every shipped blueprint and stack validates, plans and renders, and every
rendered object validates against the Kubernetes OpenAPI schema of the spec's
Kubernetes version (strict: unknown fields are errors)."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from support import BLUEPRINTS, CUSTOM_GROUPS, MINIMAL, ROOT, STACKS
from plinth.engine.offline import plan
from plinth.render import render
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec, load_stack_spec

SPECS = [pytest.param(("blueprint", p), id=p.name) for p in BLUEPRINTS if p.name != "schema.json"] + [
    pytest.param(("stack", s), id=f"stack-{s}") for s in STACKS
]


def load(which):
    kind, ref = which
    return load_spec(ref) if kind == "blueprint" else load_stack_spec(ROOT, ref)


def test_there_is_something_to_check():
    assert len(BLUEPRINTS) >= 2 and {"dev", "prod"} <= set(STACKS)


@pytest.mark.parametrize("which", SPECS)
def test_blueprint_plans_and_renders_valid_kubernetes(which, tmp_path):
    spec = load(which)
    result = plan(spec, str(which[1]))
    assert sum(r.custom for r in result.resources) > 0
    files = render(result, tmp_path / "a")
    objects = [doc for f in files if f.parent == tmp_path / "a" and f.name != "cloud.yaml"
               for doc in YAML(typ="safe").load_all(f.read_text())]
    assert len(objects) == sum(r.custom and r.type.startswith("kubernetes:") and "helm.sh" not in r.type
                               for r in result.resources)
    # eks and gke: cloud.yaml holds every cloud resource (and the cloud's provider) with its inputs.
    cloud = [r for r in result.resources if r.type.split(":")[0] in ("aws", "gcp")
             or r.type in ("pulumi:providers:aws", "pulumi:providers:gcp")]
    written = tmp_path / "a" / "cloud.yaml"
    assert written.exists() == bool(cloud)
    if cloud:
        listed = YAML(typ="safe").load(written.read_text())
        assert [(d["type"], d["name"]) for d in listed] == [(r.type, r.name) for r in cloud]
    version = f"{spec.kubernetes.version}.0"
    for obj in objects:
        if obj["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            continue  # validated against their CRDs' schemas in the chart tier (tests/charts)
        kubernetes_validate.validate(obj, version, strict=True)
    # Deterministic: a second render is byte-identical.
    again = render(plan(spec, str(which[1])), tmp_path / "b")
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in again]


def test_schema_validation_catches_a_broken_object():
    bad = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q"}, "spec": {"hrad": {}}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, "1.34.0", strict=True)


def test_blueprints_carry_the_schema_modeline():
    # A blueprint that extends another is a partial document: it names the overlay schema.
    for path in BLUEPRINTS:
        extends = YAML(typ="safe").load(path.read_text()).get("extends")
        schema = "overlay.schema.json" if extends else "schema.json"
        assert path.read_text().startswith(f"# yaml-language-server: $schema=./{schema}\n"), path


@pytest.mark.parametrize("overlay, name", [(False, "schema.json"), (True, "overlay.schema.json")])
def test_committed_schema_is_current(overlay, name):
    from plinth.spec.schema import schema_json

    assert (ROOT / "blueprints" / name).read_text() == schema_json(overlay), (
        f"blueprints/{name} is stale: run `plinth schema {'--overlay ' if overlay else ''}--out blueprints/{name}`")


def json_schema(name: str) -> jsonschema.Draft202012Validator:
    doc = json.loads((ROOT / "blueprints" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    return jsonschema.Draft202012Validator(doc)


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_each_blueprint_validates_against_the_schema_it_names(path):
    name = path.read_text().splitlines()[0].removeprefix("# yaml-language-server: $schema=./")
    errors = [e.message for e in json_schema(name).iter_errors(YAML(typ="safe").load(path.read_text()))]
    assert errors == [], f"{path.name} against {name}"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_overrides_validate_against_the_overlay_schema(stack):
    config = YAML(typ="safe").load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert list(json_schema("overlay.schema.json").iter_errors(config.get("plinth:overrides") or {})) == []


BASE = YAML(typ="safe").load(MINIMAL)


def edited(path: tuple, value) -> dict:
    doc = copy.deepcopy(BASE)
    node = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


# (field path, value): what the validator accepts or refuses, the complete schema must too.
AGREEMENT = [
    (("metadata", "name"), "a" * 40, True),
    (("metadata", "name"), "a" * 41, False),
    (("metadata", "name"), "Fraud", False),
    (("teams", 0, "name"), "9lives", False),
    (("teams", 0, "quota", "gpu"), -1, False),
    (("teams", 0, "quota", "gpu"), 0, True),
    (("teams", 0, "quota", "pods"), 0, False),
    (("teams", 0, "quota", "memory"), "lots", False),
    (("teams", 0, "quota", "memory"), "1.5Gi", True),
    (("teams", 0, "quota", "cpu"), 4, True),
    (("teams", 0, "quota", "cpu"), -4, False),
    (("kubernetes",), {"version": "1.20"}, False),
    (("kubernetes",), {"version": 1.34}, False),
    (("kubernetes",), {"version": "1.35"}, True),
    (("rbac", "platformAdminGroup"), "*", False),
    (("rbac", "platformAdminGroup"), "system:masters", False),
    (("rbac", "platformAdminGroup"), " ", False),
    (("teams", 0, "groups"), {"viewer": ["system:authenticated"]}, False),
    (("teams", 0, "quota", "x-note"), "extensions are allowed at every level", True),
]


@pytest.mark.parametrize("path, value, valid", AGREEMENT, ids=lambda v: repr(v)[:30])
def test_the_schema_agrees_with_the_validator(path, value, valid, write):
    doc = edited(path, value)
    spec = write("spec.yaml", "")
    YAML(typ="safe").dump(doc, spec)
    try:
        load_spec(spec)
        accepted = True
    except SpecInvalid:
        accepted = False
    schema_errors = list(json_schema("schema.json").iter_errors(doc))
    assert (accepted, not schema_errors) == (valid, valid), schema_errors


def test_the_overlay_schema_takes_partial_items_and_deletes_that_a_complete_spec_may_not():
    overlay = {"extends": "minimal.yaml", "metadata": {"environment": "prod"}, "target": {"context": "x"},
               "teams": [{"name": "search", "$delete": True}, {"name": "fraud", "groups": {"viewer": None}}]}
    assert list(json_schema("overlay.schema.json").iter_errors(overlay)) == []
    assert list(json_schema("schema.json").iter_errors(overlay)) != []
    for bad in ({"teams": [{"$delete": True}]}, {"teams": [{"name": "x", "$delete": "yes"}]},
                {"metadata": {"name": "Bad"}}, {"metadta": {}}):
        assert list(json_schema("overlay.schema.json").iter_errors(bad)) != [], bad


def test_stack_overrides_apply():
    dev, prod = load_stack_spec(ROOT, "dev"), load_stack_spec(ROOT, "prod")
    assert next(t for t in dev.teams if t.name == "fraud").quota.gpu == 1
    fraud = next(t for t in prod.teams if t.name == "fraud")
    assert fraud.quota.gpu == 8 and fraud.groups.viewer == () and fraud.groups.ml_engineer == ("fraud-ml-engineers",)
    assert [t.name for t in prod.teams] == ["fraud", "search", "recsys"]
    assert prod.metadata.environment == "prod"
