"""Constants shared by the test tiers: the repository root, its blueprints and stacks, a small spec."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHARTS_DIR = Path(os.environ.get("PLINTH_CHARTS_DIR", ROOT.parent / "shared" / "charts")).resolve()
"""The packaged upstream charts (a directory chart source) the chart and engine tiers use."""
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))
_ALL_STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml")
                     for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
CONFIGURE_STACKS = [s for s in _ALL_STACKS if s.endswith(".configure")]
"""Stacks of the configure stage (Vault and Harbor contents); each configures the stack named before `.configure`."""
STACKS = [s for s in _ALL_STACKS if s not in CONFIGURE_STACKS]
"""Stacks of the platform stage."""

CUSTOM_GROUPS = {"cert-manager.io", "cilium.io", "gateway.networking.k8s.io", "monitoring.coreos.com",
                 "nfd.k8s-sigs.io", "nvidia.com", "postgresql.cnpg.io", "redis.redis.opstreelabs.in",
                 "secrets.hashicorp.com"}
"""API groups of the custom resources Plinth authors: validated against their CRDs (chart tier), not the
Kubernetes OpenAPI schema."""

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
