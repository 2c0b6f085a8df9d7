"""The chart acceptance tier: the real upstream charts, rendered offline with Plinth's values.

Charts come from the packaged set beside the checkout (`../shared/charts`, or
$PLINTH_CHARTS_DIR) and `helm` from the acceptance toolchain (or $PLINTH_HELM).
Where either is missing these tests skip and say what to provide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e.binaries import toolchain_bin
from support import ROOT

CHARTS_DIR = Path(os.environ.get("PLINTH_CHARTS_DIR", ROOT.parent / "shared" / "charts"))


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    if not (CHARTS_DIR / "INDEX.json").is_file():
        pytest.skip(f"no packaged charts at {CHARTS_DIR} (set PLINTH_CHARTS_DIR to a directory chart source)")
    return CHARTS_DIR


@pytest.fixture(scope="session")
def helm(charts_dir) -> str:
    explicit = os.environ.get("PLINTH_HELM")
    if explicit:
        return explicit
    bin_dir = toolchain_bin()
    if bin_dir is None or not (bin_dir / "helm").is_file():
        pytest.skip("no helm: run tests/e2e/toolchain/build.sh (builds it from the helm.sh/helm/v3 module) "
                    "or set PLINTH_HELM")
    os.environ["PLINTH_HELM"] = str(bin_dir / "helm")
    return str(bin_dir / "helm")
