"""CRDs other services' objects need, installed before anything that uses them.

- Gateway API (standard channel, the version the pinned Cilium implements), applied
  from its release manifest or from a directory chart source; Cilium's operator checks
  for them once at start, so they must exist before Cilium.
- Prometheus Operator CRDs (chart `prometheus-operator-crds`), so every chart can turn
  on its ServiceMonitor / PrometheusRule objects and kube-prometheus-stack need not own
  the CRDs (its `crds` subchart is never upgraded by Helm).
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from plinth.catalog import GATEWAY_API
from plinth.context import PlatformContext, resource_name
from plinth.modules.helm import HelmService, bundle_files
from plinth.objects import children
from plinth.service import PlatformService
from plinth.spec import models
from plinth.spec.models import PlatformSpec


class GatewayApiCrds(PlatformService):
    """The Gateway API standard-channel CRDs (plinth:crds:GatewayApiCrds)."""

    spec_path = ("network", "cilium")

    @staticmethod
    def enabled(spec: PlatformSpec) -> bool:
        return spec.network.cilium.enabled and spec.network.cilium.gateway_api

    @staticmethod
    def block(spec: PlatformSpec):
        return GATEWAY_API

    @classmethod
    def bundles(cls, block, ctx: PlatformContext) -> tuple:
        return (block,)

    def __init__(self, name: str, bundle, ctx: PlatformContext, opts: pulumi.ResourceOptions | None = None):
        super().__init__("plinth:crds:GatewayApiCrds", name, None, opts)
        self.crds = k8s.yaml.v2.ConfigGroup(
            resource_name(name, bundle.version),
            files=bundle_files(bundle, ctx),
            opts=children(self, ctx, opts),
        )
        self.register_outputs({})


class PrometheusOperatorCrds(HelmService):
    """monitoring.coreos.com CRDs (ServiceMonitor, PodMonitor, PrometheusRule, ...) as their own release."""

    type_token = "plinth:crds:PrometheusOperatorCrds"
    chart_key = "prometheus-operator-crds"
    spec_path = ("monitoring",)

    @classmethod
    def user_values(cls, block: models.Monitoring) -> dict:
        return {}  # monitoring.values configures kube-prometheus-stack, not this chart

    @classmethod
    def owned_values(cls, block: models.Monitoring, ctx: PlatformContext) -> dict:
        return {}
