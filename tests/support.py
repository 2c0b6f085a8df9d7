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

# Team `credit` of blueprints/onprem-airgap-regulated.yaml trying to take traffic that is not its own through
# the shared Gateway (name, HTTPRoute spec): `plinth check` and the admission policy refuse each one.
_SERVING, _PARENT = "serving.models.corp.internal", [{"name": "plinth", "namespace": "plinth-gateway"}]


def _route(hosts, *paths, kind="PathPrefix"):
    rules = [{"matches": [{"path": {"type": kind, "value": p}}], "backendRefs": [{"name": "thief", "port": 3000}]}
             for p in paths] or [{"backendRefs": [{"name": "thief", "port": 3000}]}]
    spec = {"parentRefs": _PARENT, "rules": rules}
    return {**spec, "hostnames": hosts} if hosts is not None else spec


ROUTE_CAPTURES = {
    "python-index-packages": _route(["pypi.models.corp.internal"], "/simple/numpy"),
    "harbor-image-pulls": _route(["registry.models.corp.internal"], "/v2/fraud/scorer"),
    "other-teams-model": _route([_SERVING], "/fraud/fraud-scorer/v2/models"),
    "whole-serving-host": _route([_SERVING], "/"),
    "serving-host-without-path": _route([_SERVING]),
    "serving-host-by-pattern": _route([_SERVING], "/[a-z]+/fraud-scorer", kind="RegularExpression"),
    "team-prefix-lookalike": _route([_SERVING], "/credit-fraud/fraud-scorer"),
    "no-host-names": _route(None, "/credit/credit-risk"),
    "every-host-by-wildcard": _route(["*.models.corp.internal"], "/credit/credit-risk"),
    "other-teams-host": _route(["fraud.models.corp.internal"], "/"),
}
"""Route capture attempts, each refused."""
ROUTES_OF_ITS_OWN = {
    "own-model-path": _route([_SERVING], "/credit/credit-risk/v2"),
    "own-prefix-exactly": _route([_SERVING], "/credit", kind="Exact"),
    "own-host": _route(["credit.models.corp.internal"], "/"),
}
"""Team `credit`'s own routes, each accepted."""
