"""`plinth canary set|promote --gate`: the canary measured in a real Prometheus (the server built from the
github.com/prometheus/prometheus module by tests/e2e/toolchain/build.sh), its TSDB loaded with synthetic series
of the platform's serving metrics through `promtool tsdb create-blocks-from openmetrics`. A canary worse than
stable is refused (exit 1, both tracks' numbers shown, nothing written), a healthy one passes and the edit is
made, and a Prometheus that does not answer is bad input naming its URL (exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import promserver
import pytest
from promserver import GATED_BLUEPRINT as BLUEPRINT
from promserver import series
from support import free_port, platform_spec

from plinth.gate import Track, judge, lines
from plinth.modules.serving.monitoring import canary_worse


def toolchain_binary(name: str) -> str:
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where needed

    found = toolchain_tool(name)
    if found is None:
        pytest.skip(f"no {name}: run tests/e2e/toolchain/build.sh, which builds it from the "
                    f"github.com/prometheus/prometheus module, or set PLINTH_{name.upper()} to a {name} binary")
    return found


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    """The base URL of a Prometheus serving `series` up to now."""
    promtool, server = toolchain_binary("promtool"), toolchain_binary("prometheus")
    with promserver.prometheus(promtool, server, tmp_path_factory.mktemp("prometheus"),
                               series(int(time.time()))) as url:
        yield url


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((Path(__file__).resolve().parent.parent / "Pulumi.yaml").read_text())
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "blueprints" / "gated.yaml").write_text(BLUEPRINT)
    return tmp_path


def gated(project: Path, *args: str) -> subprocess.CompletedProcess:
    """`plinth canary ...` as users run it (bad input ends in main()'s exit 2)."""
    return subprocess.run([str(Path(sys.executable).parent / "plinth"), "canary", *args], cwd=project,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})


def snapshot(root: Path) -> dict:
    """Every file of the project with its bytes and modification time."""
    return {p.relative_to(root): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
            if p.is_file()}


# --- against a real Prometheus ---


@pytest.mark.toolchain
def test_a_canary_failing_more_often_is_refused_with_both_tracks_numbers(project, prometheus):
    before = snapshot(project)
    run = gated(project, "set", "scorer", "blueprints/gated.yaml", "--weight", "50", "--gate", "--prometheus",
                prometheus)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout == (
        "canary gate, fraud/scorer, last 5m:\n"
        "track   version  error rate  p95 latency\n"
        "stable  3        0.00%       100 ms\n"
        "canary  4        10.00%      110 ms\n"
        "margin           +1%         +20% of stable's\n"
        "refused: the canary fails 10.00% of requests, stable 0.00%: more than slo.errorRatePercent (1) points "
        "above stable\n")
    assert run.stderr == "blueprints/gated.yaml: not changed: the canary gate refused\n"
    assert snapshot(project) == before


@pytest.mark.toolchain
def test_a_slower_canary_is_not_promoted(project, prometheus):
    before = snapshot(project)
    run = gated(project, "promote", "ranker", "blueprints/gated.yaml", "--gate", "--prometheus", prometheus)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.splitlines()[1:] == [
        "track   version  error rate  p95 latency",
        "stable  1.2.0    0.00%       95 ms",
        "canary  1.3.0    0.00%       955 ms",
        "margin           +1%         +20% of stable's",
        "refused: the canary's p95 latency is 955 ms, stable's 95 ms: more than slo.canaryLatencyMarginPercent "
        "(20%) above stable's"]
    assert snapshot(project) == before


@pytest.mark.toolchain
def test_a_healthy_canary_passes_and_the_edit_is_made(project, prometheus):
    run = gated(project, "set", "tagger", "blueprints/gated.yaml", "--weight", "50", "--gate", "--prometheus",
                prometheus)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.startswith(
        "canary gate, fraud/tagger, last 5m:\n"
        "track   version  error rate  p95 latency\n"
        "stable  7        0.00%       100 ms\n"
        "canary  8        0.00%       105 ms\n"
        "margin           +1%         +20% of stable's\n"
        "gate passed: the canary is within the margins\n")
    text = (project / "blueprints" / "gated.yaml").read_text()
    assert text == BLUEPRINT.replace('canary: {version: "8", weight: 10}', 'canary: {version: "8", weight: 50}')
    assert "wrote blueprints/gated.yaml" in run.stderr


@pytest.mark.toolchain
def test_a_canary_without_traffic_is_refused(project, prometheus):
    run = gated(project, "promote", "idle", "blueprints/gated.yaml", "--gate", "--prometheus", prometheus)
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.stdout.splitlines()[-2:] == [
        "refused: stable served no requests in the last 5m: nothing to judge the canary by",
        "refused: canary served no requests in the last 5m: nothing to judge the canary by"]


def test_an_unreachable_prometheus_is_bad_input_naming_its_url(project):
    before = snapshot(project)
    url = f"http://127.0.0.1:{free_port()}"
    run = gated(project, "set", "scorer", "blueprints/gated.yaml", "--weight", "50", "--gate", "--prometheus", url)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith(f"--prometheus: Prometheus at {url} cannot be read: ConnectionRefusedError")
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert snapshot(project) == before


@pytest.mark.parametrize("args, message", [
    (["--prometheus", "http://127.0.0.1:9090"], "--prometheus: only with --gate"),
    (["--gate"], "--prometheus: --gate reads Prometheus: give --prometheus URL"),
    (["--gate", "--prometheus", "ftp://prometheus"],
     "--prometheus: 'ftp://prometheus': expected http(s)://HOST[:PORT][/PATH], e.g. http://127.0.0.1:9090"),
])
def test_bad_gate_options_exit_2(project, args, message):
    before = snapshot(project)
    run = gated(project, "set", "scorer", "blueprints/gated.yaml", "--weight", "50", *args)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.splitlines()[0] == message
    assert snapshot(project) == before


# --- the judgement alone ---


def test_the_margins_are_the_models_slo():
    spec = platform_spec({"teams": [{"name": "fraud"}], "serving": {"models": [{
        "name": "m", "team": "fraud", "runtime": "triton", "modelRepository": "pvc://m/r", "stable": {"version": "1"},
        "canary": {"version": "2"}, "slo": {"errorRatePercent": 5, "canaryLatencyMarginPercent": 50,
                                            "window": "1h"}}]}})
    [model] = spec.serving.models
    stable = Track("stable", "1", 0.01, 100.0)
    assert judge(model, stable, Track("canary", "2", 0.059, 149.0)).passed
    refused = judge(model, stable, Track("canary", "2", 0.061, 151.0))
    assert [why.split(":")[0] for why in refused.reasons] == [
        "the canary fails 6.10% of requests, stable 1.00%", "the canary's p95 latency is 151 ms, stable's 100 ms"]
    assert lines(refused)[0] == "canary gate, fraud/m, last 1h:"
    # ModelCanaryWorse: the same margins and window.
    expr = canary_worse(model)
    assert "[1h]" in expr and "[5m]" not in expr and " > 0.05) or (" in expr and expr.endswith(" * 1.5)")


def test_with_a_stack_the_gate_reads_the_prometheus_the_stack_exports(project):
    """A stand-in `pulumi` prints the stack's outputs (tests/test_stackoutputs.py): the gate goes where they say."""
    (project / "stacks").mkdir()
    (project / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  plinth:blueprint: blueprints/gated.yaml\n")
    exported = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    cli = project / "bin" / "pulumi"
    cli.parent.mkdir()
    cli.write_text(f"""#!/bin/sh\necho '{{"endpoints": {{"monitoring": {{"prometheus": "{exported}"}}}}}}'\n""")
    cli.chmod(0o755)
    path = f"{cli.parent}{os.pathsep}{os.environ['PATH']}"
    run = subprocess.run([str(Path(sys.executable).parent / "plinth"), "canary", "set", "scorer", "--stack", "dev",
                          "--weight", "50", "--gate"], cwd=project, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PLINTH_DEBUG": "", "PATH": path})
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith(f"--prometheus: Prometheus at {exported} cannot be read: ConnectionRefusedError")
