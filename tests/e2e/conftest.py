"""The acceptance tier's fixtures: a real etcd + kube-apiserver on loopback.

The binaries come from tests/e2e/toolchain/build.sh (built from Go modules,
cached outside the repository). Without them these tests are skipped with
the command to run; CI builds them first, so there they always run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from controlplane import LocalControlPlane
from kubeapi import KubeApi

TOOLCHAIN = Path(__file__).resolve().parent / "toolchain"


def toolchain_bin() -> Path | None:
    if os.environ.get("PLINTH_TOOLCHAIN_BIN"):
        return Path(os.environ["PLINTH_TOOLCHAIN_BIN"])
    # The cache key includes the Python SDK version of $PYTHON: ask with this interpreter.
    result = subprocess.run([str(TOOLCHAIN / "build.sh"), "--print-bin-dir"], capture_output=True, text=True,
                            env={**os.environ, "PYTHON": sys.executable})
    return Path(result.stdout.strip().splitlines()[-1]) if result.returncode == 0 and result.stdout.strip() else None


def require(*binaries: str, why: str = "run tests/e2e/toolchain/build.sh (or set PLINTH_TOOLCHAIN_BIN)") -> Path:
    bin_dir = toolchain_bin()
    missing = [b for b in binaries if bin_dir is None or not (bin_dir / b).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: {why}")
    return bin_dir


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    with LocalControlPlane(require("kube-apiserver", "etcd"), tmp_path_factory.mktemp("control-plane")) as plane:
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


@pytest.fixture
def kube(control_plane):
    api = KubeApi(Path(control_plane.kubeconfig_path))
    yield api
    api.close()
