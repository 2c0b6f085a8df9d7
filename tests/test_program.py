"""platform/__main__.py, the program the real engine runs, under Pulumi mocks."""

from __future__ import annotations

import json
import runpy

import pytest

from support import ROOT
from plinth.engine.offline import plan, record
from plinth.spec.load import load_spec

PASSWORD = "hunter2-mirror-password"


def run_main(config: dict, secret_keys=(), stack="ci"):
    return record(lambda: runpy.run_path(str(ROOT / "platform" / "__main__.py")), stack=stack, config=config,
                  secret_keys=secret_keys)


def test_main_reads_blueprint_and_secret_from_stack_config():
    resources = run_main({"plinth:blueprint": "blueprints/onprem-airgap.yaml", "plinth:mirrorPassword": PASSWORD},
                         secret_keys=("plinth:mirrorPassword",))
    secrets = [r for r in resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) == 1
    assert PASSWORD not in json.dumps([r.inputs for r in resources])


def test_main_and_offline_plan_declare_the_same_resources():
    via_main = run_main({"plinth:blueprint": "blueprints/minimal.yaml"})
    offline = plan(load_spec(ROOT / "blueprints" / "minimal.yaml"), "minimal", stack="ci")
    assert [(r.type, r.name) for r in via_main] == [(r.type, r.name) for r in offline.resources]


def test_main_applies_stack_overrides_from_config():
    overrides = {"teams": [{"name": "fraud", "quota": {"gpu": 7}}]}
    resources = run_main({"plinth:blueprint": "blueprints/minimal.yaml", "plinth:overrides": json.dumps(overrides)})
    quota = next(r for r in resources if r.name == "tenancy-fraud-quota")
    assert quota.inputs["spec"]["hard"]["requests.nvidia.com/gpu"] == "7"


def test_invalid_spec_ends_the_run_with_a_located_message():
    import pulumi

    overrides = {"teams": [{"name": "fraud", "quota": {"gpu": "four"}}]}
    with pytest.raises(pulumi.RunError) as caught:
        run_main({"plinth:blueprint": "blueprints/minimal.yaml", "plinth:overrides": json.dumps(overrides)})
    assert 'teams[fraud].quota.gpu: expected a non-negative integer, got "four"' in str(caught.value)


@pytest.mark.parametrize("blueprint", [p.name for p in (ROOT / "blueprints").glob("*.yaml")])
def test_no_service_puts_an_object_in_a_namespace_a_later_service_creates(blueprint):
    """Each service is deployed after every service before it in SERVICES, so an object in a namespace that a
    later service creates fails `pulumi up` (the namespace does not exist yet). Tenancy's team namespaces come
    after every service; the services' objects in them are made after tenancy (team_objects)."""
    from plinth.program import SERVICES

    result = plan(load_spec(ROOT / "blueprints" / blueprint), "order")
    by_urn = {r.urn: r for r in result.resources}

    def service(resource) -> str:
        while resource.parent in by_urn:
            resource = by_urn[resource.parent]
        return resource.name

    order = {name: i for i, (name, _) in enumerate(SERVICES)}
    creator = {r.inputs["metadata"]["name"]: service(r) for r in result.resources
               if r.type == "kubernetes:core/v1:Namespace"}
    early = sorted({(service(r), r.inputs["metadata"]["namespace"], creator[r.inputs["metadata"]["namespace"]])
                    for r in result.resources if isinstance(r.inputs.get("metadata"), dict)
                    and r.inputs["metadata"].get("namespace") in creator
                    and service(r) in order and creator[r.inputs["metadata"]["namespace"]] in order
                    and order[creator[r.inputs["metadata"]["namespace"]]] > order[service(r)]})
    assert early == []
