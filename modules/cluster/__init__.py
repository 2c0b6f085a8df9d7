"""Cluster targets: where the platform runs, as ONE interface every other module receives.

A target is a component with a Kubernetes `provider` (and, when it creates the
cluster, the `api_server` endpoint nodes use). Everything else a module needs of
the target is derived from the spec alone (`facts.TargetFacts`, on the
PlatformContext): cloud identities as ServiceAccount annotations, bucket names,
the Vault unseal key. So the Kubernetes layer is the same on every target,
except for the few differences `README.md` lists.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi
import pulumi_kubernetes as k8s

from plinth.spec.models import PlatformSpec
from plinth.targets import Identity, TargetFacts, target_facts


@dataclass(frozen=True)
class TargetArgs:
    """A target's slice of the spec."""

    target: Any
    """spec.target (ExistingTarget | EksTarget | GkeTarget)."""
    platform: str
    environment: str
    cost_center: str
    kubernetes_version: str
    admin_group: str
    """rbac.platformAdminGroup: the Kubernetes group the cloud's admin principal is mapped to."""
    facts: TargetFacts
    public_load_balancer: bool = False
    """network.loadBalancer.public: the Gateway's load balancer is internet-facing (eks: public subnets for it)."""
    delete_data: bool = False
    """storage.deleteDataOnDestroy: `pulumi destroy` deletes the buckets with their objects (else it leaves them)."""
    oidc: Any = None
    """identity.oidc (plinth.spec.models.Oidc): eks signs people on through it (an OIDC identity provider config)."""

    @classmethod
    def from_spec(cls, spec: PlatformSpec, identities: tuple[Identity, ...] = ()) -> TargetArgs:
        """`identities`: every cloud identity the spec's services use (plinth.program.cloud_identities)."""
        return cls(spec.target, spec.metadata.name, spec.metadata.environment, spec.metadata.cost_center,
                   spec.kubernetes.version, spec.rbac.platform_admin_group, target_facts(spec, identities),
                   spec.network.load_balancer.public, spec.storage.delete_data_on_destroy, spec.identity.oidc)

    def bucket_options(self, child: pulumi.ResourceOptions) -> pulumi.ResourceOptions:
        """A bucket holds data: `pulumi destroy` leaves it (the stack forgets it) unless the spec lets it go."""
        return pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(retain_on_delete=not self.delete_data))

    @property
    def prod(self) -> bool:
        return self.environment == "prod"

    @property
    def prod_like(self) -> bool:
        """Staging runs like prod (zone-redundant), as the services' HA defaults do."""
        return self.environment != "dev"

    def tags(self) -> dict[str, str]:
        """Ownership tags/labels of every cloud resource (the same facts as the Kubernetes labels)."""
        return {"plinth-platform": self.platform, "plinth-environment": self.environment,
                "plinth-cost-center": self.cost_center, "managed-by": "plinth"}


class Target(pulumi.ComponentResource):
    """What every target gives the platform."""

    type_token: ClassVar[str]
    provider: k8s.Provider
    api_server: tuple[pulumi.Input[str], int] | None = None
    """Where nodes reach the API server (Cilium without kube-proxy); None: the spec's network.cilium.apiServer."""
    kubeconfig: pulumi.Output[str] | None = None
    """The cluster's kubeconfig when the target creates the cluster (exec credentials from the cloud's CLI, no
    token in it): the stack exports it. None: the user's own (`existing`)."""

    def __init__(self, name: str, args: TargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(self.type_token, name, None, opts)


def kubernetes_provider(name: str, parent: pulumi.Resource, kubeconfig: pulumi.Input[str] | None = None,
                        context: str | None = None, depends_on: list | None = None) -> k8s.Provider:
    """The Kubernetes provider every module uses, the same on every target."""
    return k8s.Provider(
        f"{name}-kubernetes",
        k8s.ProviderArgs(
            kubeconfig=kubeconfig,
            context=context,
            # Server-side apply: field managers make drift and conflicts visible.
            enable_server_side_apply=True,
            # The spec is authoritative for the fields Plinth sets: `pulumi up` takes them
            # back from a hand edit (another field manager) instead of failing on the conflict.
            enable_patch_force=True,
            # ConfigMaps (the ledger, dashboards, pip.conf) update in place: Plinth names them and
            # nothing hashes them into pod templates, so a replace would only add a delete/create.
            enable_config_map_mutable=True,
        ),
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on),
    )


def exec_kubeconfig(cluster: str, server: pulumi.Input[str], ca_data: pulumi.Input[str], command: str,
                    args: list[str], hint: str) -> pulumi.Output[str]:
    """A kubeconfig whose credentials come from the cloud's CLI at each use (exec), never a static token."""
    def render(values: list) -> str:
        server_url, ca = values
        return json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": cluster,
            "clusters": [{"name": cluster, "cluster": {"server": server_url, "certificate-authority-data": ca}}],
            "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": cluster}}],
            "users": [{"name": cluster, "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1", "command": command, "args": args,
                "interactiveMode": "Never", "provideClusterInfo": False, "installHint": hint}}}],
        }, sort_keys=True)
    return pulumi.Output.all(server, ca_data).apply(render)


class ExistingCluster(Target):
    """An existing cluster (on-prem or in a VPC), reached through a kubeconfig."""

    type_token = "plinth:cluster:ExistingCluster"

    def __init__(self, name: str, args: TargetArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__(name, args, opts)
        self.provider = kubernetes_provider(name, self, args.target.kubeconfig, args.target.context)
        self.register_outputs({})


NODE_POOL_LABEL = "plinth.dev/node-pool"
"""Every node of a cloud node pool carries its pool's name."""
CLOUD_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
"""Kubernetes taint effects as the EKS and GKE node pool APIs spell them."""


def pool_labels(pool) -> dict[str, str]:
    """The node labels of a cloud node pool: its name, and on a GPU pool the label GPU workloads select."""
    from plinth.modules.gpu import gpu_node_selector

    return {NODE_POOL_LABEL: pool.name, **(gpu_node_selector() if pool.gpu else {})}


def pool_taints(pool) -> list[dict[str, str]]:
    """The taints of a cloud node pool (in the cloud APIs' spelling): Cilium's agent-not-ready on every pool,
    the GPU taint on a GPU pool, so only pods that tolerate it (and ask for a GPU) land there."""
    from plinth.modules.cluster.differences import AGENT_NOT_READY_TAINT
    from plinth.modules.gpu import gpu_taint

    taints = [AGENT_NOT_READY_TAINT, *([gpu_taint()] if pool.gpu else [])]
    return [{**t, "effect": CLOUD_TAINT_EFFECTS.get(t["effect"], t["effect"])} for t in taints]


TARGETS: dict[str, str] = {
    "existing": "plinth.modules.cluster:ExistingCluster",
    "eks": "plinth.modules.cluster.eks:EksCluster",
    "gke": "plinth.modules.cluster.gke:GkeCluster",
}
"""The module of each `target.type`; a cloud's SDK is imported only when its target is used."""
TARGET_IDENTITIES: dict[str, tuple[Identity, ...]] = {
    # eks: the EBS CSI add-on's controller creates and attaches the volumes.
    "eks": (Identity("ebs-csi", "kube-system", "ebs-csi-controller-sa", "ebs"),),
}
"""The cloud identities of each target's own add-ons (the services declare theirs): here rather than on the
target's class, so that checking a spec needs no cloud SDK."""
TARGET_SDKS: dict[str, tuple[str, str, str]] = {
    "eks": ("pulumi_aws", "the AWS SDK (pulumi-aws)", "eks"),
    "gke": ("pulumi_gcp", "the Google Cloud SDK (pulumi-gcp)", "gke"),
}
"""A cloud target's Python module, what it is, and the install extra that brings it (pyproject.toml)."""


def missing_sdk(kind: str) -> tuple[str, str] | None:
    """(what, extra) when `kind`'s cloud SDK is not installed, else None."""
    if kind not in TARGET_SDKS:
        return None
    module, what, extra = TARGET_SDKS[kind]
    return None if importlib.util.find_spec(module) else (what, extra)


def target_class(kind: str) -> type[Target]:
    module, _, cls = TARGETS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)
