"""The chart acceptance tier: the real upstream charts, rendered offline with Plinth's values.

Charts come from the packaged set beside the checkout (`../shared/charts`, or
$PLINTH_CHARTS_DIR) and `helm` from the acceptance toolchain (or $PLINTH_HELM).
Where either is missing these tests skip and say what to provide.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import yaml

from e2e.binaries import toolchain_crds, toolchain_tool
from support import CHARTS_DIR


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    if not (CHARTS_DIR / "INDEX.json").is_file():
        pytest.skip(f"no packaged charts at {CHARTS_DIR} (set PLINTH_CHARTS_DIR to a directory chart source)")
    return CHARTS_DIR


@pytest.fixture(scope="session")
def helm(charts_dir) -> str:
    helm = toolchain_tool("helm")
    if helm is None:
        pytest.skip("no helm: run tests/e2e/toolchain/build.sh (builds it from the helm.sh/helm/v3 module) "
                    "or set PLINTH_HELM")
    if not shutil.which(helm):
        pytest.skip(f"helm {helm!r} is not an executable (PLINTH_HELM, or the toolchain's)")
    os.environ["PLINTH_HELM"] = helm  # what plinth.engine.charts runs
    return helm


@pytest.fixture(scope="session")
def registered_crds() -> list[dict]:
    """The CRDs controllers register at start (Cilium's), which the toolchain build fetches: Plinth's
    CiliumNetworkPolicies validate against them, so without them those tests skip (PLINTH_HELM alone is not enough)."""
    crds = [yaml.safe_load(path.read_text()) for path in toolchain_crds()]
    if not any(crd["spec"]["names"]["kind"] == "CiliumNetworkPolicy" for crd in crds):
        pytest.skip("no Cilium CRDs: run tests/e2e/toolchain/build.sh (it fetches them from the "
                    "github.com/cilium/cilium module at the catalog's Cilium version)")
    return crds
