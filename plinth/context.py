"""What every module receives besides its own slice of the spec."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi

MANAGED_BY = "plinth"


@dataclass(frozen=True)
class PlatformContext:
    """Shared, read-only facts for components: provider, labels, mirror, waits."""

    provider: pulumi.ProviderResource
    """Kubernetes provider of the cluster target; every Kubernetes object uses it."""
    platform: str
    environment: str
    cost_center: str
    kubernetes_version: str
    mirror_registry: str | None = None
    """Air-gap image mirror prefix; None when images come from their upstream registries."""
    skip_await: bool = False
    """Test clusters without nodes: don't wait for readiness, delete in the background."""

    def labels(self, component: str, team: str | None = None, cost_center: str | None = None) -> dict[str, str]:
        """The labels every object carries (sorted keys keep renders byte-stable)."""
        labels = {
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/instance": self.platform,
            "app.kubernetes.io/managed-by": MANAGED_BY,
            "app.kubernetes.io/part-of": MANAGED_BY,
            "plinth.dev/cost-center": cost_center or self.cost_center,
            "plinth.dev/environment": self.environment,
        }
        if team:
            labels["plinth.dev/team"] = team
        return dict(sorted(labels.items()))

    def annotations(self) -> dict[str, str] | None:
        """Engine annotations; only set for test clusters (see spec `testing`)."""
        if not self.skip_await:
            return None
        return {
            "pulumi.com/deletionPropagationPolicy": "background",
            "pulumi.com/skipAwait": "true",
        }

    def metadata(self, name: str, component: str, namespace: str | None = None, team: str | None = None,
                 cost_center: str | None = None, labels: dict[str, str] | None = None) -> dict:
        """ObjectMeta with an explicit name (no auto-naming: names are stable across runs)."""
        meta: dict = {"name": name, "labels": {**self.labels(component, team, cost_center), **(labels or {})}}
        if namespace:
            meta["namespace"] = namespace
        if self.annotations():
            meta["annotations"] = self.annotations()
        return meta


def resource_name(*parts: str) -> str:
    """The Pulumi name of a resource, derived from spec keys only (never random)."""
    name = "-".join(p for p in parts if p)
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
