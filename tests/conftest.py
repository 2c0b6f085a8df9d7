"""Fixtures shared by every tier."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
TOOLCHAIN_TIERS = (HERE / "charts", HERE / "e2e")
"""Whole directories needing the Go-built toolchain (helm, the API server, the engine); single modules elsewhere
say so with `pytestmark = pytest.mark.toolchain`."""


def pytest_collection_modifyitems(config, items):
    """The tests needing the toolchain run last, in their usual order: CI builds a cold toolchain while the
    others run, and those tests wait for the build (tests/e2e/binaries.py) rather than skip."""
    for item in items:
        if any(item.path.is_relative_to(tier) for tier in TOOLCHAIN_TIERS):
            item.add_marker(pytest.mark.toolchain)
    items.sort(key=lambda item: item.get_closest_marker("toolchain") is not None)


@pytest.fixture(autouse=True)
def _heavy_only_when_asked(request):
    """The heavy tier (marker `heavy`) runs only when selected (`-m heavy`) or asked for (PLINTH_HEAVY=1)."""
    if request.node.get_closest_marker("heavy") is None:
        return
    selected = "heavy" in (request.config.getoption("markexpr") or "").replace("not heavy", "")
    if not (selected or os.environ.get("PLINTH_HEAVY")):
        pytest.skip("heavy tier: run with -m heavy or PLINTH_HEAVY=1")


@pytest.fixture
def write(tmp_path, monkeypatch):
    """write(name, text) -> path of a dedented file in a temp dir (also the working directory)."""
    monkeypatch.chdir(tmp_path)

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="module")
def dev():
    """The services' plan (tests/support.py: platform) of a dev platform, by resource name."""
    from support import platform

    return platform("dev")


@pytest.fixture(scope="module")
def prod():
    """The same, prod."""
    from support import platform

    return platform("prod")
