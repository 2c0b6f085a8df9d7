"""Acceptance through the real Pulumi engine: `pulumi up`, no-change preview, drift, edits, teardown.

The CLI and language host are built from Go modules (toolchain/build.sh) and
run Plinth's real program against the local kube-apiserver (no nodes, so the
e2e stack sets the spec's `testing.skipAwait`). The Kubernetes resource
provider must be supplied as PLINTH_KUBERNETES_PROVIDER (see
toolchain/README.md): when it is missing, the tests that deploy are skipped
with that reason, and only the engine-level checks run.

The deploy tests form one story on one stack, in file order (up → no-change
preview → plan agreement → drift → one-line edit → destroy); a failure in an
early step fails the later ones with the same cause.
"""

from __future__ import annotations


import pytest

from pulumi_cli import PulumiProject
from plinth.engine.offline import plan
from plinth.plan import diff_plans, field_changes
from plinth.render import kubernetes_objects
from plinth.spec.load import load_spec

pytestmark = pytest.mark.e2e

QUOTA = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "team-quota", "namespace": "fraud"}}


@pytest.fixture(scope="module")
def engine(toolchain, control_plane, tmp_path_factory):
    """A project copy with an e2e stack over the minimal blueprint, initialised but not deployed."""
    project = PulumiProject(toolchain, tmp_path_factory.mktemp("pulumi"), control_plane.kubeconfig_path)
    project.write_stack(project.overrides())
    project("stack", "init", project.stack)
    yield project
    # Leave nothing behind even when a step failed half-way.
    project("destroy", "--yes", "--skip-preview", check=False)


@pytest.fixture(scope="module")
def deploy(kubernetes_provider, engine):
    return engine("up", "--yes", "--skip-preview")


def test_an_invalid_spec_fails_the_real_engine_with_its_file_and_line(toolchain, control_plane, tmp_path):
    project = PulumiProject(toolchain, tmp_path, control_plane.kubeconfig_path)
    project.write_stack(project.overrides(teams=[{"name": "fraud", "quota": {"gpu": "four"}}]))
    project("stack", "init", project.stack)
    run = project("preview", check=False)
    assert run.rc != 0, run.text
    assert "teams[fraud].quota.gpu" in run.out, run.text
    assert "Pulumi.e2e.yaml:" in run.out, run.text
    assert "Traceback" not in run.out, run.text


def test_up_creates_every_object_in_the_api_server(deploy, engine, kube):
    spec = load_spec(engine.dir / "blueprints" / "minimal.yaml")
    objects = [obj for _, obj in kubernetes_objects(plan(spec, "e2e"))]
    missing = [(o["kind"], o["metadata"]["name"]) for o in objects if kube.get(o) is None]
    assert missing == []


def test_preview_right_after_up_expects_no_changes(deploy, engine):
    engine("preview", "--expect-no-changes")
    engine("preview", "--refresh", "--expect-no-changes")


def test_offline_plan_and_real_engine_agree_on_every_resource(deploy, engine):
    spec = load_spec(engine.dir / "blueprints" / "minimal.yaml", engine.overrides())
    offline = {r.urn for r in plan(spec, "e2e", stack=engine.stack).resources}
    assert engine.urns() == offline


def test_a_manual_edit_is_reported_as_drift_and_repaired_by_up(deploy, engine, kube):
    kube.patch(QUOTA, {"spec": {"hard": {"requests.nvidia.com/gpu": "64"}}})

    drift = engine("preview", "--refresh", "--expect-no-changes", "--diff", check=False)
    assert drift.rc != 0, drift.text
    assert "tenancy-fraud-quota" in drift.out and "requests.nvidia.com/gpu" in drift.out, drift.text
    steps = engine.preview_steps("--refresh")
    assert [(s["op"], s["urn"].rsplit("::", 1)[1]) for s in steps] == [("update", "tenancy-fraud-quota")]

    engine("up", "--refresh", "--yes", "--skip-preview")
    assert kube.get(QUOTA)["spec"]["hard"]["requests.nvidia.com/gpu"] == "4"
    engine("preview", "--expect-no-changes")


def test_a_one_line_spec_change_previews_as_exactly_that_change(deploy, engine):
    before = engine.overrides()
    after = engine.overrides(teams=[{"name": "fraud", "quota": {"gpu": 6}}])
    engine.write_stack(after)
    try:
        steps = engine.preview_steps()
    finally:
        engine.write_stack(before)
    assert [(s["op"], s["urn"].rsplit("::", 1)[1]) for s in steps] == [("update", "tenancy-fraud-quota")]
    real = list(field_changes(steps[0]["oldState"]["inputs"], steps[0]["newState"]["inputs"], ""))
    assert real == [("spec.hard.requests.nvidia.com/gpu", "4", "6")]

    # `plinth diff` of the two offline plans reports the same single change.
    blueprint = engine.dir / "blueprints" / "minimal.yaml"
    offline = diff_plans(plan(load_spec(blueprint, before), "e2e", stack=engine.stack),
                         plan(load_spec(blueprint, after), "e2e", stack=engine.stack))
    assert [(c.kind, c.resource.urn, list(c.fields)) for c in offline] == [("changed", steps[0]["urn"], real)]


def test_destroy_leaves_nothing_of_plinth_behind(deploy, engine, kube):
    engine("destroy", "--yes", "--skip-preview")
    leftovers = [
        (kind, o["metadata"]["name"])
        for api_version, kind in [("v1", "Namespace"), ("rbac.authorization.k8s.io/v1", "ClusterRole"),
                                  ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")]
        for o in kube.list_labelled(api_version, kind, "app.kubernetes.io/managed-by=plinth")
        if o["metadata"].get("deletionTimestamp") is None
    ]
    assert leftovers == []
    assert engine.urns() == set()
