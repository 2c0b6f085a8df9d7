"""Shared helpers: the repository root and writing small spec files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))
STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))

MINIMAL = """\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: test
  environment: dev
  costCenter: cc-1
target:
  type: existing
rbac:
  platformAdminGroup: admins
teams:
  - name: fraud
    groups:
      mlEngineer: [fraud-eng]
    quota:
      gpu: 2
"""


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
