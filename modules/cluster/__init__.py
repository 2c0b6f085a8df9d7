"""Cluster target: where the platform runs, as a Kubernetes provider."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class ExistingClusterArgs:
    kubeconfig: str | None
    """Path to (or contents of) a kubeconfig; None means the provider default ($KUBECONFIG, ~/.kube/config)."""
    context: str | None
    """Kubeconfig context; None means the current context."""


class ExistingCluster(pulumi.ComponentResource):
    """An existing cluster (on-prem or in a VPC), reached through a kubeconfig."""

    provider: k8s.Provider

    def __init__(self, name: str, args: ExistingClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:cluster:ExistingCluster", name, None, opts)
        self.provider = k8s.Provider(
            f"{name}-kubernetes",
            k8s.ProviderArgs(
                kubeconfig=args.kubeconfig,
                context=args.context,
                # Server-side apply: field managers make drift and conflicts visible.
                enable_server_side_apply=True,
                # The spec is authoritative for the fields Plinth sets: `pulumi up` takes them
                # back from a hand edit (another field manager) instead of failing on the conflict.
                enable_patch_force=True,
                # ConfigMaps (the ledger, dashboards, pip.conf) update in place: Plinth names them and
                # nothing hashes them into pod templates, so a replace would only add a delete/create.
                enable_config_map_mutable=True,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
