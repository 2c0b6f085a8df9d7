"""A toolchain build in progress: build.sh says so, and the tests needing the toolchain wait for it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from e2e import binaries


def print_bin_dir(cache, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(binaries.BUILD_SCRIPT), "--print-bin-dir"], capture_output=True, text=True,
                          env={**os.environ, "PLINTH_TOOLCHAIN_CACHE": str(cache), **env}, timeout=60)


def test_print_bin_dir_says_a_build_is_in_progress(tmp_path):
    (tmp_path / "building.pid").write_text(f"{os.getpid()}\n")  # a live process: this one
    result = print_bin_dir(tmp_path)
    assert result.returncode == binaries.BUILDING, result.stderr
    assert "a build is in progress" in result.stderr


def test_a_dead_builder_is_no_build_in_progress(tmp_path):
    """A build killed without its cleanup leaves its pid behind; that process is gone, so nothing is awaited."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "building.pid").write_text(dead.stdout)
    result = print_bin_dir(tmp_path, PATH=os.environ["PATH"])
    assert result.returncode != binaries.BUILDING, result.stderr


@pytest.fixture
def build_script(tmp_path, monkeypatch):
    """A stand-in build.sh: 'being built' (exit 3) for the first `n` calls, then the bin dir."""
    def make(n: int):
        counter = tmp_path / "calls"
        counter.write_text("0")
        script = tmp_path / "build.sh"
        script.write_text(f"""#!/bin/sh
n=$(($(cat {counter}) + 1)); echo $n > {counter}
if [ $n -le {n} ]; then exit 3; fi
echo {tmp_path}/bin
""")
        script.chmod(0o755)
        monkeypatch.setattr(binaries, "BUILD_SCRIPT", script)
        monkeypatch.setattr(binaries, "POLL_SECONDS", 0.01)
        monkeypatch.delenv("PLINTH_TOOLCHAIN_BIN", raising=False)
        return counter
    return make


def test_waits_for_the_build_then_finds_it(build_script, monkeypatch):
    calls = build_script(3)
    assert binaries.toolchain_bin() == calls.parent / "bin"
    assert calls.read_text().strip() == "4"


def test_waits_a_bounded_time(build_script, monkeypatch):
    """A build that never ends: the wait stops at PLINTH_TOOLCHAIN_WAIT and the tests skip as without a toolchain."""
    build_script(10**9)
    monkeypatch.setattr(binaries, "WAIT_SECONDS", 0.05)
    assert binaries.toolchain_bin() is None


def test_building_says_whether_a_build_is_in_progress(tmp_path):
    def building() -> int:
        return subprocess.run([str(binaries.BUILD_SCRIPT), "--building"], capture_output=True, text=True,
                              env={**os.environ, "PLINTH_TOOLCHAIN_CACHE": str(tmp_path)}, timeout=60).returncode
    assert building() == 1
    (tmp_path / "building.pid").write_text(f"{os.getpid()}\n")
    assert building() == 0


@pytest.fixture
def growing_toolchain(tmp_path, monkeypatch):
    """A stand-in build.sh whose build goes on: the bin dir is printed from the start, the Kubernetes tools' key
    is complete (exit 0 instead of 3) from call `complete_at` on, and the build ends at call `ends_at`; `tool`
    appears in the bin dir at call `tool_at`."""
    def make(complete_at: int, ends_at: int, tool: str, tool_at: int):
        counter, bin_dir = tmp_path / "calls", tmp_path / "key" / "bin"
        counter.write_text("0")
        bin_dir.mkdir(parents=True)
        script = tmp_path / "build.sh"
        script.write_text(f"""#!/bin/sh
n=$(($(cat {counter}) + 1)); echo $n > {counter}
if [ $n -ge {tool_at} ]; then touch {bin_dir}/{tool}; fi
if [ "$1" = --building ]; then [ $n -lt {ends_at} ]; exit; fi
echo {bin_dir}
if [ $n -lt {complete_at} ]; then exit 3; fi
""")
        script.chmod(0o755)
        monkeypatch.setattr(binaries, "BUILD_SCRIPT", script)
        monkeypatch.setattr(binaries, "POLL_SECONDS", 0.01)
        monkeypatch.delenv("PLINTH_TOOLCHAIN_BIN", raising=False)
        monkeypatch.delenv(f"PLINTH_{tool.upper()}", raising=False)
        return bin_dir
    return make


def test_a_tool_is_found_as_soon_as_it_is_built_before_the_rest(growing_toolchain):
    """helm is built first: the chart tier need not wait for the engine and the API server."""
    bin_dir = growing_toolchain(complete_at=100, ends_at=200, tool="helm", tool_at=3)
    assert binaries.toolchain_tool("helm") == str(bin_dir / "helm")
    assert (bin_dir.parent.parent / "calls").read_text().strip() == "3"


def test_a_tool_with_a_key_of_its_own_is_awaited_after_the_kubernetes_tools(growing_toolchain):
    """The engine's tests start once the key is complete; a test needing weed waits until weed is there."""
    bin_dir = growing_toolchain(complete_at=2, ends_at=200, tool="weed", tool_at=9)
    assert binaries.toolchain_bin() == bin_dir
    assert binaries.toolchain_tool("weed") == str(bin_dir / "weed")


def test_a_tool_the_finished_build_did_not_make_is_not_awaited(growing_toolchain):
    growing_toolchain(complete_at=1, ends_at=1, tool="weed", tool_at=10**9)
    assert binaries.toolchain_tool("weed") is None


def test_the_crds_are_found_before_the_build_is_complete(growing_toolchain, monkeypatch):
    bin_dir = growing_toolchain(complete_at=100, ends_at=200, tool="helm", tool_at=1)
    crds = bin_dir.parent / "crds" / "cilium-1.20.0"
    crds.mkdir(parents=True)
    (crds / "ciliumnetworkpolicies.yaml").write_text("kind: CustomResourceDefinition\n")
    monkeypatch.setattr(binaries, "WAIT_SECONDS", 0.05)
    assert binaries.toolchain_crds() == []  # no marker yet: still being fetched, and the wait ran out
    (crds / ".complete-1").touch()
    assert binaries.toolchain_crds() == [crds / "ciliumnetworkpolicies.yaml"]
