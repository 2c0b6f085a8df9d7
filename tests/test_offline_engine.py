"""The offline engine records what a program declares, with honest placeholders."""

from __future__ import annotations

import json
import os
import signal
import threading

import pulumi
import pulumi_kubernetes as k8s
import pytest

from plinth.engine.offline import record
from plinth.diff import diff_plans
from plinth.plan import SECRET, UNKNOWN, Plan, Resource
from plinth.render import render


def test_values_only_a_deployment_knows_are_placeholders_not_fakes():
    def program():
        provider = k8s.Provider("k8s")
        k8s.core.v1.ConfigMap("cm", metadata={"name": "cm"},
                              data={"providerId": provider.id, "token": pulumi.Output.secret("t0ken")},
                              opts=pulumi.ResourceOptions(provider=provider))

    (cm,) = [r for r in record(program) if r.name == "cm"]
    assert cm.inputs["data"] == {"providerId": UNKNOWN, "token": SECRET}
    assert cm.provider.endswith("::pulumi:providers:kubernetes::k8s")


def test_urns_chain_parent_types_like_the_real_engine():
    class Outer(pulumi.ComponentResource):
        def __init__(self, name):
            super().__init__("test:index:Outer", name)
            Inner("inner", pulumi.ResourceOptions(parent=self))

    class Inner(pulumi.ComponentResource):
        def __init__(self, name, opts):
            super().__init__("test:index:Inner", name, None, opts)
            k8s.core.v1.Namespace("ns", metadata={"name": "ns"}, opts=pulumi.ResourceOptions(parent=self))

    urns = {r.name: r.urn for r in record(lambda: Outer("outer"), stack="dev")}
    assert urns["ns"] == "urn:pulumi:dev::plinth::test:index:Outer$test:index:Inner$kubernetes:core/v1:Namespace::ns"


def test_each_resource_is_handed_over_as_it_is_recorded():
    """`on_record` (a render starts each chart then) sees every resource of the plan once, in the order the
    program declares them (the plan itself is in URN order)."""
    seen: list[Resource] = []

    def program():
        for name in ("b", "a", "c"):
            k8s.core.v1.Namespace(name, metadata={"name": name})

    records = record(program, on_record=seen.append)
    assert [r.name for r in seen] == ["b", "a", "c"] and sorted(seen, key=lambda r: r.urn) == list(records)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the run's abandoned coroutine
def test_ctrl_c_stops_a_run_and_puts_the_handler_back():
    """Ctrl-C stops the run's event loop between callbacks (KeyboardInterrupt, never a registration left waiting),
    and the process's own SIGINT handler is back after the run."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are the main thread's")
    finished: list[bool] = []

    def interrupt(_):
        os.kill(os.getpid(), signal.SIGINT)
        finished.append(True)  # Python's own handler would raise here, in the middle of the SDK's callback

    def program():
        first = k8s.core.v1.Namespace("a", metadata={"name": "a"})
        first.metadata.apply(interrupt)
        k8s.core.v1.Namespace("b", metadata={"name": "b"}, opts=pulumi.ResourceOptions(depends_on=[first]))

    # Python's own handler, as under a terminal (a run in the background, CI's, inherits SIGINT ignored).
    outside = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            record(program, fast=True)
        assert finished == [True] and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, outside)
    assert [r.name for r in record(lambda: k8s.core.v1.Namespace("c", metadata={"name": "c"}))] == ["c"]


def test_a_run_ignoring_ctrl_c_keeps_ignoring_it():
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are the main thread's")
    outside = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        def program():
            first = k8s.core.v1.Namespace("a", metadata={"name": "a"})
            first.metadata.apply(lambda _: os.kill(os.getpid(), signal.SIGINT))

        assert [r.name for r in record(program, fast=True)] == ["a"]
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, outside)


def test_render_writes_helm_release_values_and_strips_secret_payloads(tmp_path):
    release = Resource(urn="urn:pulumi:s::plinth::plinth:x:X$kubernetes:helm.sh/v3:Release::vault", name="vault",
                       type="kubernetes:helm.sh/v3:Release", parent="urn:pulumi:s::plinth::plinth:x:X::secrets",
                       custom=True, inputs={"chart": "vault", "version": "0.34.1", "namespace": "vault",
                                            "values": {"server": {"ha": {"enabled": True}}}})
    component = Resource(urn="urn:pulumi:s::plinth::plinth:x:X::secrets", type="plinth:x:X", name="secrets",
                         parent=None, custom=False)
    secret = Resource(urn="urn:pulumi:s::plinth::plinth:x:X$kubernetes:core/v1:Secret::s", name="s",
                      type="kubernetes:core/v1:Secret", parent=component.urn, custom=True,
                      inputs={"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "stringData": SECRET})
    files = render(Plan("p", "dev", "test", (component, release, secret)), tmp_path)
    assert [f.relative_to(tmp_path).as_posix() for f in files] == ["helm/secrets-vault.yaml", "secrets.yaml"]
    assert "version: 0.34.1" in files[0].read_text() and "enabled: true" in files[0].read_text()
    assert files[1].read_text() == ("apiVersion: v1\nkind: Secret\nmetadata:\n  annotations:\n"
                                    "    plinth.dev/redacted: stringData\n  name: s\n")


def test_plan_json_round_trips_and_diff_sees_field_changes():
    def program(gpu):
        return lambda: k8s.core.v1.ResourceQuota("q", metadata={"name": "q"}, spec={"hard": {"pods": "1", "g": gpu}})

    old = Plan("p", "dev", "a", record(program("1")))
    new = Plan("p", "dev", "b", record(program("2")))
    assert Plan.from_json(old.to_json()) == old
    (change,) = diff_plans(old, new)
    assert (change.kind, change.fields) == ("changed", (("spec.hard.g", "1", "2"),))


def test_a_render_only_removes_its_own_files_inside_its_directory(tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("keep")
    out = tmp_path / "render"
    out.mkdir()
    (out / "mine.yaml").write_text("stale")
    (out / ".plinth-rendered").write_text(f"mine.yaml\n../precious.txt\n{outside}\n")
    (out / "link.yaml").symlink_to(outside)  # a render must never write through it
    plan = Plan("p", "dev", "x", tuple(record(lambda: k8s.core.v1.ConfigMap("link", metadata={"name": "link"}))))
    render(plan, out)
    assert outside.read_text() == "keep" and not (out / "mine.yaml").exists()


def test_a_render_refuses_a_directory_that_leads_outside(tmp_path):
    import pytest

    from plinth.render import RenderError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "render"
    out.mkdir()
    (out / "helm").symlink_to(elsewhere, target_is_directory=True)
    release = Resource("urn:pulumi:s::p::kubernetes:helm.sh/v3:Release::r", "kubernetes:helm.sh/v3:Release", "r",
                       None, True, inputs={"name": "r", "values": {}})
    with pytest.raises(RenderError):
        render(Plan("p", "dev", "x", (release,)), out)
    assert list(elsewhere.iterdir()) == []


def test_plan_json_is_every_field_of_the_plan_and_its_resources():
    import dataclasses

    from support import ROOT
    from plinth.engine.offline import plan
    from plinth.spec.load import load_spec

    result = plan(load_spec(ROOT / "blueprints" / "minimal.yaml"), "blueprints/minimal.yaml")
    expected = json.dumps({"version": 1, **dataclasses.asdict(result)}, indent=2, sort_keys=True) + "\n"
    assert result.to_json() == expected
