"""Every shipped blueprint and stack validates, plans and renders, and every
rendered object validates against the Kubernetes OpenAPI schema of the spec's
Kubernetes version (strict: unknown fields are errors)."""

from __future__ import annotations

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from support import BLUEPRINTS, CUSTOM_GROUPS, ROOT, STACKS
from plinth.engine.offline import plan
from plinth.render import render
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
    objects = [doc for f in files if f.parent == tmp_path / "a" for doc in YAML(typ="safe").load_all(f.read_text())]
    assert len(objects) == sum(r.custom and r.type.startswith("kubernetes:") and "helm.sh" not in r.type
                               for r in result.resources)
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
    for path in BLUEPRINTS:
        if path.suffix == ".yaml":
            assert path.read_text().startswith("# yaml-language-server: $schema=./schema.json\n"), path


def test_committed_schema_is_current():
    from plinth.spec.schema import schema_json

    assert (ROOT / "blueprints" / "schema.json").read_text() == schema_json(), (
        "blueprints/schema.json is stale: run `plinth schema --out blueprints/schema.json`")


def test_stack_overrides_apply():
    dev, prod = load_stack_spec(ROOT, "dev"), load_stack_spec(ROOT, "prod")
    assert next(t for t in dev.teams if t.name == "fraud").quota.gpu == 1
    fraud = next(t for t in prod.teams if t.name == "fraud")
    assert fraud.quota.gpu == 8 and fraud.groups.viewer == () and fraud.groups.ml_engineer == ("fraud-ml-engineers",)
    assert [t.name for t in prod.teams] == ["fraud", "search", "recsys"]
    assert prod.metadata.environment == "prod"
