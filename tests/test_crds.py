"""The CRDs (Gateway API, Prometheus Operator) under Pulumi's mock runtime: installed before their users."""

from __future__ import annotations




def test_crds_are_installed_before_anything_that_uses_them(dev):
    crds = {dev["gateway-api-crds-v1-6-1"].urn, dev["prometheus-operator-crds"].urn}
    for release in ("cilium", "cert-manager", "longhorn", "monitoring"):
        assert crds <= set(dev[release].dependencies), release
    # The CNI before anything that runs pods; cert-manager before the certificates it issues.
    assert dev["cilium"].urn in dev["cert-manager"].dependencies
    assert dev["cert-manager"].urn in dev["gateway-gateway"].dependencies
