"""Constants shared by the test tiers: the repository root, its blueprints and stacks, a small spec."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHARTS_DIR = Path(os.environ.get("PLINTH_CHARTS_DIR", ROOT.parent / "shared" / "charts")).resolve()
"""The packaged upstream charts (a directory chart source) the chart and engine tiers use."""
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
