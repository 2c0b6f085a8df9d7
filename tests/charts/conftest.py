"""The chart acceptance tier: the real upstream charts, rendered offline with Plinth's values.

Charts come from the packaged set beside the checkout (`../shared/charts`, or
$PLINTH_CHARTS_DIR) and `helm` from the acceptance toolchain (or $PLINTH_HELM).
Where either is missing these tests skip and say what to provide.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e.binaries import toolchain_helm
from support import CHARTS_DIR


@pytest.fixture(scope="session")
def charts_dir() -> Path:
    if not (CHARTS_DIR / "INDEX.json").is_file():
        pytest.skip(f"no packaged charts at {CHARTS_DIR} (set PLINTH_CHARTS_DIR to a directory chart source)")
    return CHARTS_DIR


@pytest.fixture(scope="session")
def helm(charts_dir) -> str:
    helm = toolchain_helm()
    if helm is None:
        pytest.skip("no helm: run tests/e2e/toolchain/build.sh (builds it from the helm.sh/helm/v3 module) "
                    "or set PLINTH_HELM")
    os.environ["PLINTH_HELM"] = helm  # what plinth.engine.charts runs
    return helm
