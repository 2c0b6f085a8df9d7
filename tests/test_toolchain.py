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
