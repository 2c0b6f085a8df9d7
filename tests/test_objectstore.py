"""The object store (storage.objectStore) under Pulumi's mock runtime: the values Plinth owns, the S3 identities
and their keys (never in clear in the plan), the on-prem-only rule, HA by environment, images and team egress."""

from __future__ import annotations

import json

import pulumi
import pytest

from support import platform, platform_spec, values
from plinth.context import PlatformContext, StackSecrets
from plinth.engine.offline import record
from plinth.mirror import mirror_list
from plinth.modules.objectstore import CONFIG_KEY, CONFIG_SECRET, ObjectStore
from plinth.modules.objectstore.identities import derive, s3_config
from plinth.plan import SECRET
from plinth.program import build_platform, needed_secrets
from plinth.spec.rules import check_rules

ON = {"storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}}}
IMAGE = "docker.io/chrislusf/seaweedfs:4.44"
MIRROR = "mirror.corp.internal/mirror"


@pytest.fixture(scope="module")
def dev():
    return platform("dev", **ON)


@pytest.fixture(scope="module")
def prod():
    return platform("prod", **ON)


# --- identities ----------------------------------------------------------------------------------------


def test_one_identity_per_purpose_bucket_and_one_read_only_per_team():
    config = s3_config("acme", ("fraud", "search"), "seed")
    actions = {i["name"]: i["actions"] for i in config["identities"]}
    assert actions == {
        "models": ["Read:acme-models", "Write:acme-models", "List:acme-models", "Tagging:acme-models"],
        "artifacts": ["Read:acme-artifacts", "Write:acme-artifacts", "List:acme-artifacts", "Tagging:acme-artifacts"],
        "features": ["Read:acme-features", "Write:acme-features", "List:acme-features", "Tagging:acme-features"],
        "backups": ["Read:acme-backups", "Write:acme-backups", "List:acme-backups", "Tagging:acme-backups"],
        "team-fraud": ["Read:acme-models/fraud/*", "List:acme-models/fraud/*"],
        "team-search": ["Read:acme-models/search/*", "List:acme-models/search/*"],
    }
    # No identity is an administrator or holds an action on every bucket.
    assert not [a for acts in actions.values() for a in acts if a == "Admin" or ":" not in a]


def test_keys_are_stable_independent_and_s3_shaped():
    first, again = s3_config("acme", ("fraud",), "seed"), s3_config("acme", ("fraud",), "seed")
    assert first == again
    keys = [c for i in first["identities"] for c in i["credentials"]]
    access, secret = [c["accessKey"] for c in keys], [c["secretKey"] for c in keys]
    assert len(set(access)) == len(access) == 5 and len(set(secret)) == 5
    assert all(len(a) == 20 and a.isalnum() and a.upper() == a for a in access)
    assert all(len(s) == 40 and s.isalnum() for s in secret)
    # Another seed or another platform: every key changes.
    other = {c["secretKey"] for i in s3_config("acme", ("fraud",), "seed2")["identities"] for c in i["credentials"]}
    assert not other & set(secret)
    assert derive("seed", "acme", "models", "access") != derive("seed", "other", "models", "access")


def test_the_seed_and_every_key_stay_out_of_the_plan():
    seed = "object-store-seed-of-the-stack"
    spec = platform_spec(ON)

    def program() -> None:
        build_platform(spec, StackSecrets(object_store_seed=pulumi.Output.secret(seed)))

    resources = {r.name: r for r in sorted(record(program, "test"), key=lambda r: r.custom)}
    everything = json.dumps([r.inputs for r in resources.values()])
    keys = [value for i in s3_config("test", ("fraud",), seed)["identities"] for c in i["credentials"]
            for value in c.values()]
    assert [value for value in [seed, *keys] if value in everything] == []
    config = resources["object-store-s3-config"]
    assert config.inputs["metadata"]["name"] == CONFIG_SECRET and config.inputs["stringData"] == SECRET
    assert "plinth:objectStoreSeed" in config.inputs["metadata"]["annotations"]["plinth.dev/secret-source"]
    # The Secret exists before the release that mounts it.
    assert config.urn in resources["object-store"].dependencies


def test_the_stack_needs_its_seed_only_when_the_store_is_on():
    assert "objectStoreSeed" in [s.key for s in needed_secrets(platform_spec(ON))]
    assert "objectStoreSeed" not in [s.key for s in needed_secrets(platform_spec())]


# --- values ----------------------------------------------------------------------------------------------


def test_s3_through_the_filer_with_auth_from_plinths_secret(dev):
    s3 = values(dev, "object-store")["filer"]["s3"]
    assert s3 == {"enabled": True, "port": 8333, "enableAuth": True, "existingConfigSecret": CONFIG_SECRET,
                  "createBuckets": [{"name": f"test-{p}"} for p in ("models", "artifacts", "features", "backups")]}
    assert CONFIG_KEY == "seaweedfs_s3_config"  # the file name the filer's -s3.config reads under /etc/sw


def test_every_volume_is_a_claim_on_the_platform_class_and_no_host_path(dev):
    owned = values(dev, "object-store")
    assert owned["master"]["data"] == {"type": "persistentVolumeClaim", "size": "1Gi", "storageClass": "longhorn"}
    assert owned["filer"]["data"] == {"type": "persistentVolumeClaim", "size": "10Gi", "storageClass": "longhorn"}
    assert owned["volume"]["dataDirs"] == [{"name": "data1", "type": "persistentVolumeClaim", "size": "100Gi",
                                            "storageClass": "longhorn", "maxVolumes": 0}]
    assert owned["master"]["logs"] == owned["filer"]["logs"] == {"type": "emptyDir"}
    assert owned["volume"]["resizeHook"] == {"enabled": False}
    assert "hostPath" not in json.dumps(owned)


def test_sizes_and_class_come_from_the_spec():
    owned = values(platform("dev", storage={"objectStore": {"enabled": True, "storageClass": "fast",
                                                             "volumeSize": "2Ti"}}), "object-store")
    assert owned["volume"]["dataDirs"][0]["size"] == "2Ti"
    assert {owned["master"]["data"]["storageClass"], owned["volume"]["dataDirs"][0]["storageClass"]} == {"fast"}


def test_dev_runs_one_of_each_without_replication_or_budgets(dev):
    owned = values(dev, "object-store")
    assert [owned[c]["replicas"] for c in ("master", "volume", "filer")] == [1, 1, 1]
    assert owned["global"]["seaweedfs"]["enableReplication"] is False
    assert not [r for r in dev.values() if r.type.endswith(":PodDisruptionBudget")]


def test_prod_runs_a_master_quorum_replicated_volumes_and_budgets(prod):
    owned = values(prod, "object-store")
    assert [owned[c]["replicas"] for c in ("master", "volume", "filer")] == [3, 3, 2]
    assert (owned["global"]["seaweedfs"]["enableReplication"], owned["global"]["seaweedfs"]["replicationPlacement"]) \
        == (True, "001")
    budgets = {r.inputs["metadata"]["name"]: r.inputs["spec"] for r in prod.values()
               if r.type.endswith(":PodDisruptionBudget") and r.inputs["metadata"]["namespace"] == "object-store"}
    assert budgets == {f"seaweedfs-{c}": {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/component": c, "app.kubernetes.io/instance": "seaweedfs",
        "app.kubernetes.io/name": "seaweedfs"}}} for c in ("master", "volume", "filer")}


def test_restricted_contexts_no_cluster_role_and_metrics_with_monitoring(prod):
    owned = values(prod, "object-store")
    for component in ("master", "volume", "filer"):
        pod, container = owned[component]["podSecurityContext"], owned[component]["containerSecurityContext"]
        assert pod["enabled"] and pod["runAsNonRoot"] and pod["runAsUser"] == 1000
        assert container["enabled"] and container["capabilities"] == {"drop": ["ALL"]}
    sw = owned["global"]["seaweedfs"]
    assert (sw["createClusterRole"], sw["automountServiceAccountToken"]) == (False, False)
    assert sw["monitoring"] == {"enabled": True}
    assert values(platform("dev", storage=ON["storage"], monitoring={"enabled": False}),
                  "object-store")["global"]["seaweedfs"]["monitoring"] == {"enabled": False}


def test_a_user_value_cannot_replace_an_owned_key():
    spec = platform_spec({"storage": {"objectStore": {"enabled": True, "values": {
        "filer": {"s3": {"enableAuth": False}}}}}})
    assert [(v.rule, v.loc) for v in check_rules(spec)] == [
        ("values-owned-key", ("storage", "objectStore", "values", "filer", "s3", "enableAuth"))]


# --- the rule ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [
    {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
     "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
     "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]},
    {"type": "gke", "project": "acme-ml", "region": "europe-west4",
     "nodePools": [{"name": "cpu", "instanceType": "e2-standard-8"}]},
])
def test_the_clouds_keep_their_own_buckets(target):
    spec = platform_spec({"storage": {"objectStore": {"enabled": True}}}, target=target)
    [violation] = [v for v in check_rules(spec) if v.rule == "object-store-existing-only"]
    kind = target["type"]
    assert violation.loc == ("storage", "objectStore", "enabled")
    assert violation.message == (f"the object store runs on an existing (on-prem) cluster only; a {kind} platform "
                                 "keeps its cloud's object storage")
    assert violation.fix == f"set storage.objectStore.enabled: false and use {kind}'s buckets"


def test_on_an_existing_cluster_the_store_passes_the_rules():
    assert check_rules(platform_spec(ON)) == []


# --- images and egress -------------------------------------------------------------------------------------


def test_the_one_image_is_listed_and_mirrored():
    spec = platform_spec(ON, {"airgap": {"enabled": True, "mirror": {
        "registry": MIRROR, "charts": "oci://mirror.corp.internal/charts"}}})
    listed = [i for i in mirror_list(spec).images if i.service == "object-store"]
    assert [(str(i.source), str(i.target)) for i in listed] == [(IMAGE, f"{MIRROR}/chrislusf/seaweedfs:4.44")]
    owned = ObjectStore.owned_values(ObjectStore.block(spec), PlatformContext.from_spec(spec))
    assert owned["image"] == {"registry": "", "repository": f"{MIRROR}/chrislusf/seaweedfs", "tag": "4.44"}


def test_teams_reach_the_s3_port_only(dev):
    egress = dev["tenancy-fraud-allow-to-object-store"].inputs["spec"]["egress"]
    assert len(egress) == 1 and egress[0]["ports"] == [{"protocol": "TCP", "port": 8333}]
    assert egress[0]["to"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "object-store"}
