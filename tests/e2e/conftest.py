"""The acceptance tier's fixtures: a real etcd + kube-apiserver + controller-manager + scheduler on
loopback, with KWOK playing the nodes each stack's spec declares (live.py says what is simulated).

The binaries come from tests/e2e/toolchain/build.sh (built from Go modules,
cached outside the repository). Without them these tests are skipped with
the command to run; CI builds them first, so there they run -- all but the
deploy steps, which also need pulumi-resource-kubernetes (see toolchain/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from binaries import toolchain_bin, toolchain_kwok_stages
from kubeapi import KubeApi
from live import live_cluster


def require(*binaries: str, why: str = "run tests/e2e/toolchain/build.sh (or set PLINTH_TOOLCHAIN_BIN)") -> Path:
    bin_dir = toolchain_bin()
    missing = [b for b in binaries if bin_dir is None or not (bin_dir / b).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: {why}")
    return bin_dir


@pytest.fixture(scope="session")
def live_toolchain() -> tuple[Path, Path]:
    """The bin dir and KWOK's stage file of the live cluster (live.py), or skip with the command to run."""
    bin_dir = require("kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok")
    stages = toolchain_kwok_stages()
    if stages is None:
        pytest.skip("no KWOK stages: run tests/e2e/toolchain/build.sh")
    return bin_dir, stages


@pytest.fixture(scope="session")
def control_plane(live_toolchain, tmp_path_factory):
    """The live cluster (live.py) the deploy story runs on; the engine fixture adds its stack's nodes."""
    with live_cluster(*live_toolchain, tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def toolchain() -> Path:
    """The bin dir holding the Pulumi CLI and the Python language host."""
    return require("pulumi", "pulumi-language-python", "pulumi-language-python-exec")


@pytest.fixture(scope="session")
def kubernetes_provider(toolchain) -> Path:
    return require("pulumi-resource-kubernetes", why=(
        "the Go module proxy serves no github.com/pulumi/pulumi-kubernetes/provider/v4; "
        "set PLINTH_KUBERNETES_PROVIDER and rerun tests/e2e/toolchain/build.sh (toolchain/README.md)"))


@pytest.fixture(scope="session")
def kube(control_plane):
    return KubeApi(control_plane.server, control_plane.ssl_context())
