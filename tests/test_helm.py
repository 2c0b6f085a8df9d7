"""The Helm service mechanism: Plinth's values over the user's, an owned key refused at its line."""

from __future__ import annotations

import pytest

from support import MINIMAL, platform, values
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec


def test_a_user_value_for_an_owned_key_is_an_error_at_its_line(write):
    path = write("platform.yaml", MINIMAL + """\
network:
  cilium:
    enabled: true
    apiServer: {host: api.k8s.internal}
    values:
      kubeProxyReplacement: false
      bandwidthManager: {enabled: true}
  loadBalancer: {ranges: [172.31.255.240/29]}
certificates:
  certManager: {enabled: true}
""")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(path)
    assert [str(e) for e in caught.value.errors] == [
        "platform.yaml:22:7: network.cilium.values.kubeProxyReplacement: kubeProxyReplacement is set by Plinth "
        "(kubeProxyReplacement); a value here would be overridden [rule values-owned-key; fix: remove it; the "
        "spec field or module README says how Plinth sets kubeProxyReplacement]"]


def test_user_values_that_plinth_does_not_own_reach_the_release():
    resources = platform(network={"cilium": {"values": {"bandwidthManager": {"enabled": True}}}})
    assert values(resources, "cilium")["bandwidthManager"] == {"enabled": True}
