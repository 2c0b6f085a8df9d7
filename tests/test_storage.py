"""Storage (Longhorn) under Pulumi's mock runtime: replicas by environment and the teardown flag."""

from __future__ import annotations


from support import platform, values


def test_longhorn_replicas_follow_the_environment_unless_the_spec_says(dev, prod):
    assert values(dev, "longhorn")["persistence"]["defaultClassReplicaCount"] == 1
    assert values(prod, "longhorn")["defaultSettings"]["defaultReplicaCount"] == 3
    explicit = platform("prod", storage={"longhorn": {"replicaCount": 2}})
    assert values(explicit, "longhorn")["persistence"]["defaultClassReplicaCount"] == 2
    # Teardown: allowed outside prod; a prod uninstall is refused by Longhorn's hook until the spec says so.
    assert values(dev, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is True
    assert values(prod, "longhorn")["defaultSettings"]["deletingConfirmationFlag"] is False
