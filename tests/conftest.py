"""Fixtures shared by every tier."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


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
