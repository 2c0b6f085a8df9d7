"""The acceptance tier's fixtures: a real etcd + kube-apiserver on loopback.

The binaries come from tests/e2e/toolchain/build.sh (built from Go modules,
cached outside the repository). Without them these tests are skipped with
the command to run; CI builds them first, so there they run -- all but the
deploy steps, which also need pulumi-resource-kubernetes (see toolchain/README.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from binaries import toolchain_bin, toolchain_crds
from controlplane import LocalControlPlane
from jobs import JobCompleter
from kubeapi import KubeApi, established


def require(*binaries: str, why: str = "run tests/e2e/toolchain/build.sh (or set PLINTH_TOOLCHAIN_BIN)") -> Path:
    bin_dir = toolchain_bin()
    missing = [b for b in binaries if bin_dir is None or not (bin_dir / b).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)}: {why}")
    return bin_dir


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory):
    """The API server, with the CRDs Cilium's operator would have registered on a cluster with nodes."""
    with LocalControlPlane(require("kube-apiserver", "etcd"), tmp_path_factory.mktemp("control-plane")) as plane:
        kube = KubeApi(plane.server, plane.ssl_context())
        crds = [yaml.safe_load(path.read_text()) for path in toolchain_crds()]
        for crd in crds:
            kube.apply(crd)
        for crd in crds:
            assert established(kube.wait(crd, established)), crd["metadata"]["name"]
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
    return KubeApi(control_plane.server, control_plane.ssl_context())


@pytest.fixture(scope="session")
def jobs(control_plane):
    """Jobs complete as if a node ran them (jobs.py): Helm hook Jobs, e.g. Longhorn's uninstall."""
    with JobCompleter(KubeApi(control_plane.server, control_plane.ssl_context())) as completer:
        yield completer
