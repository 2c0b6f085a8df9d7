"""The one catalog: Kubernetes version matrix, chart coordinates and images.

Every module reads versions from here; nothing else in Plinth names a version.
Never "latest": each entry is an exact, released version. Entries for
services whose module has not landed yet are listed so the air-gap mirror
list and the spec docs have a single source; each is re-verified against the
chart's own values.yaml when its module lands.
"""

from __future__ import annotations

from dataclasses import dataclass

# Kubernetes minor versions Plinth plans and validates against. The default is
# what a blueprint gets when it does not say.
KUBERNETES_VERSIONS: tuple[str, ...] = ("1.32", "1.33", "1.34", "1.35")
DEFAULT_KUBERNETES_VERSION = "1.34"


@dataclass(frozen=True)
class Chart:
    """A Helm chart pinned to one version."""

    repo: str
    """Chart repository URL (https:// index or oci:// registry)."""
    name: str
    version: str
    namespace: str
    """Namespace the release is installed into."""


CHARTS: dict[str, Chart] = {
    "cilium": Chart("https://helm.cilium.io", "cilium", "1.19.3", "kube-system"),
    "longhorn": Chart("https://charts.longhorn.io", "longhorn", "1.12.1", "longhorn-system"),
    "vault": Chart("https://helm.releases.hashicorp.com", "vault", "0.34.1", "vault"),
    "harbor": Chart("https://helm.goharbor.io", "harbor", "1.19.1", "harbor"),
    "feast": Chart(
        "https://feast-helm-charts.storage.googleapis.com", "feast-feature-server", "0.66.0", "feast"
    ),
    "kube-prometheus-stack": Chart(
        "https://prometheus-community.github.io/helm-charts",
        "kube-prometheus-stack",
        "88.5.0",
        "monitoring",
    ),
    "gpu-operator": Chart("https://helm.ngc.nvidia.com/nvidia", "gpu-operator", "v26.3.3", "gpu-operator"),
}

# Namespaces of the platform's own services, which tenant network policies
# must be able to name (monitoring scrapes, gateway ingress, Vault, Feast).
PLATFORM_NAMESPACES: dict[str, str] = {
    "gateway": "plinth-gateway",
    "monitoring": CHARTS["kube-prometheus-stack"].namespace,
    "vault": CHARTS["vault"].namespace,
    "feast": CHARTS["feast"].namespace,
}
