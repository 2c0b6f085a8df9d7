"""Cluster Autoscaler for EKS (`target.autoscaler`): the managed node groups scale, GPU pools from zero.

Why Cluster Autoscaler and not Karpenter: README.md beside this file. GKE needs neither: its node pools
autoscale between minSize and maxSize by themselves (gke.py).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import CHARTS
from plinth.context import PlatformContext, resource_name
from plinth.modules.helm import HelmService, image_values
from plinth.securitycontext import restricted_container, restricted_pod
from plinth.spec import models
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity

NODE_TEMPLATE = "k8s.io/cluster-autoscaler/node-template"
"""Prefix of the node-group (ASG) tags that tell Cluster Autoscaler what a node of an empty group would have:
<prefix>/label/<key>, <prefix>/taint/<key> (value:effect), <prefix>/resources/<resource>."""


def node_template_tags(labels: dict[str, str], taints: list[dict], resources: dict[str, str]) -> dict[str, str]:
    """The scale-from-zero tags of one node group. Taints in Kubernetes' spelling (NoSchedule); a taint whose
    key Cluster Autoscaler ignores (the Cilium agent's startup taint) is left out: it is gone once a node runs."""
    tags = {f"{NODE_TEMPLATE}/label/{key}": value for key, value in labels.items()}
    tags |= {f"{NODE_TEMPLATE}/taint/{t['key']}": f"{t['value']}:{t['effect']}" for t in taints
             if not t["key"].startswith("ignore-taint.cluster-autoscaler.kubernetes.io/")}
    tags |= {f"{NODE_TEMPLATE}/resources/{name}": value for name, value in resources.items()}
    return dict(sorted(tags.items()))


SERVICE_ACCOUNT = (CHARTS["cluster-autoscaler"].namespace, "cluster-autoscaler")
"""Named by Plinth (rbac.serviceAccount.name): the chart's default name depends on the cloud provider."""


class ClusterAutoscaler(HelmService):
    """Cluster Autoscaler with the AWS provider and node-group auto-discovery (plinth:cluster:ClusterAutoscaler)."""

    type_token = "plinth:cluster:ClusterAutoscaler"
    chart_key = "cluster-autoscaler"
    spec_path = ("target", "autoscaler")

    @classmethod
    def enabled(cls, spec: PlatformSpec) -> bool:
        return spec.target.type == "eks" and spec.target.autoscaler.enabled

    @classmethod
    def identities(cls, spec) -> tuple[Identity, ...]:
        return (Identity("cluster-autoscaler", *SERVICE_ACCOUNT, "autoscale"),) if cls.enabled(spec) else ()

    @classmethod
    def owned_values(cls, block: models.ClusterAutoscaler, ctx: PlatformContext) -> dict:
        namespace, account = SERVICE_ACCOUNT
        facts = ctx.target
        return {
            "cloudProvider": "aws",
            "awsRegion": facts.region,
            # EKS tags every managed node group's ASG k8s.io/cluster-autoscaler/<cluster>: owned (and /enabled);
            # the IRSA role may scale only groups with that tag.
            "autoDiscovery": {"clusterName": facts.prefix},
            "image": {**image_values(cls.chart().images[0], ctx),
                      "pullSecrets": list(ctx.image_pull_secrets)},
            "rbac": {"serviceAccount": {"create": True, "name": account,
                                        "annotations": facts.annotations(namespace, account)}},
            # One leader at a time; a second replica takes over when it goes.
            "replicaCount": 2 if ctx.prod_like else 1,
            # The namespace enforces Pod Security `restricted` (the image runs as nonroot).
            "securityContext": restricted_pod(65534, 65534),
            "containerSecurityContext": restricted_container(read_only_root=True),
            "serviceMonitor": {"enabled": ctx.monitoring, "namespace": namespace},
        }

    def prerequisites(self, name: str, block: models.ClusterAutoscaler, ctx: PlatformContext,
                      opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """Air-gap: the namespace reaches only the cluster and the mirror; the autoscaler also calls the AWS APIs
        (Auto Scaling, EC2, EKS, STS), which egress `none` serves from interface endpoints inside the VPC."""
        if not ctx.mirror_registry:
            return []
        namespace = self.chart().namespace
        return [k8s.networking.v1.NetworkPolicy(
            resource_name(name, "aws-apis"),
            metadata=ctx.metadata("allow-to-aws-apis", name, namespace=namespace),
            spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [{
                "to": [{"ipBlock": {"cidr": ctx.target.native_cidr}}],
                "ports": [{"protocol": "TCP", "port": 443}]}]},
            opts=opts)]
