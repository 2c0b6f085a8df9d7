"""The object store (storage.objectStore) under Pulumi's mock runtime: the values Plinth owns, the S3 identities
and their keys (never in clear in the plan), the on-prem-only rule, HA by environment, images, team egress, and
each team's keys delivered through Vault (the configure stage writes them, the secrets operator copies them)."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path

import hcl
import pulumi
import pytest
import yaml

from support import ROOT, by_key, platform, platform_spec, values
from plinth.context import PlatformContext, StackSecrets
from plinth.engine.offline import plan, record
from plinth.mirror import mirror_list
from plinth.modules.objectstore import CONFIG_KEY, CONFIG_SECRET, ObjectStore
from plinth.modules.objectstore.identities import derive, identity_names, s3_config
from plinth.modules.objectstore.teamkeys import OBJECT_STORE, WORKFLOW_ARTIFACTS
from plinth.modules.secrets.operator import TeamVaultAccess
from plinth.plan import SECRET
from plinth.program import build_configuration, build_platform, needed_secrets
from plinth.spec.rules import check_rules

ON = {"storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}}}
VAULT = {"certificates": {"certManager": {"enabled": True}}, "secrets": {"vault": {"enabled": True}}}
"""Where the teams' keys come from: Vault, through its secrets operator."""
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
    spec = platform_spec(VAULT, {"storage": {"objectStore": {"enabled": True, "values": {
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
    assert check_rules(platform_spec(ON, VAULT)) == []


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


# --- each team's keys, through Vault -----------------------------------------------------------------------

TEAMS = {"teams": [{"name": "fraud"}, {"name": "fraud-2"}, {"name": "search"}]}
"""Three teams, one named as another's prefix."""
KEYED = platform_spec(ON, VAULT, TEAMS, {"pipelines": {"argo": {"enabled": True}}})
"""The store, Vault and pipelines: every team gets its own keys and its workflows'."""


@pytest.fixture(scope="module")
def keyed():
    return by_key(plan(KEYED, "test"))


@pytest.fixture(scope="module")
def configured():
    return plan(KEYED, "test", stage="configure").resources


def _kv_writes(resources) -> dict[str, dict]:
    return {r.inputs["name"]: r.inputs for r in resources if r.type == "vault:kv/secretV2:SecretV2"}


def test_the_configure_stage_writes_each_teams_keys_into_its_own_path_as_secrets(configured):
    writes = _kv_writes(configured)
    teams = ("fraud", "fraud-2", "search")
    assert set(writes) == {f"{team}/{kind}" for team in teams for kind in ("object-store", "workflow-artifacts")}
    assert {w["mount"] for w in writes.values()} == {"teams"}
    assert {w["dataJson"] for w in writes.values()} == {SECRET}  # never plain: the plan shows no value
    # Nothing of the platform's own (purpose) keys goes to Vault: they stay with the services that use them.
    assert not [name for name in writes if name.split("/")[0] not in teams]


def test_without_the_store_or_without_teams_vault_holds_no_store_keys():
    assert _kv_writes(plan(platform_spec(VAULT), "test", stage="configure").resources) == {}
    no_teams = platform_spec(ON, VAULT, {"teams": []})
    assert _kv_writes(plan(no_teams, "test", stage="configure").resources) == {}
    assert "objectStoreSeed" not in [s.key for s in needed_secrets(platform_spec(VAULT), "configure")]
    assert "objectStoreSeed" in [s.key for s in needed_secrets(KEYED, "configure")]


def test_the_fields_are_the_store_identities_keys_as_s3_clients_name_them():
    store = {i["name"]: i["credentials"][0] for i in s3_config("test", ("fraud",), "seed", ("fraud",))["identities"]}
    assert OBJECT_STORE.fields("test", "fraud", "seed") == {
        "AWS_ACCESS_KEY_ID": store["team-fraud"]["accessKey"], "AWS_SECRET_ACCESS_KEY": store["team-fraud"]["secretKey"],
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_S3": "https://seaweedfs-s3.object-store.svc:8333",
        "AWS_CA_BUNDLE": "/etc/plinth/object-store-ca/ca.crt", "S3_BUCKET": "test-models", "S3_PREFIX": "fraud/"}
    # Argo's artifact repository names its keys accessKey and secretKey (modules/pipelines).
    assert WORKFLOW_ARTIFACTS.fields("test", "fraud", "seed") == store["workflows-fraud"]


def test_a_teams_synced_secret_reads_its_own_path_only(keyed, configured):
    policies = {r.inputs["name"]: list(hcl.loads(r.inputs["policy"])["path"])
                for r in configured if r.type == "vault:index/policy:Policy"}
    synced = {key: r.inputs["spec"] for key, r in keyed.items() if key[0] == "VaultStaticSecret"}
    teams = ("fraud", "fraud-2", "search")
    assert set(synced) == {("VaultStaticSecret", team, name) for team in teams
                           for name in ("object-store-credentials", "argo-artifacts-s3")}
    for (_, team, name), spec in synced.items():
        kind = OBJECT_STORE if name == OBJECT_STORE.secret else WORKFLOW_ARTIFACTS
        assert spec == {"vaultAuthRef": "vault", "mount": "teams", "type": "kv-v2", "path": f"{team}/{kind.kv_name}",
                        "refreshAfter": "1h", "destination": {"name": name, "create": True,
                                                              "transformation": {"excludeRaw": True}}}
        # Through the team's own VaultAuth (in its namespace, its role), whose policy alone grants the path.
        readers = [policy for policy, paths in policies.items()
                   if any(fnmatch.fnmatchcase(f"teams/data/{spec['path']}", p) for p in paths)]
        assert readers == [TeamVaultAccess(team).policy], (team, name)


def test_the_platform_stage_holds_the_team_keys_nowhere_but_the_stores_own_config(keyed):
    # The teams' Secrets are the operator's (from Vault), not Pulumi's: no key Secret in any team namespace.
    assert [key for key in keyed if key[0] == "Secret" and key[1] in ("fraud", "fraud-2", "search")] == []
    assert "objectStoreSeed" in [s.key for s in needed_secrets(KEYED)]  # the store's identities file only


def test_neither_stage_puts_a_key_in_the_plan():
    seed = "object-store-seed-of-the-stack"
    teams = ("fraud", "fraud-2", "search")
    keys = [derive(seed, "test", name, kind) for name in identity_names("test", teams, teams)
            for kind in ("access", "secret")]
    for build in (build_platform, build_configuration):
        def program(build=build) -> None:
            build(KEYED, StackSecrets(object_store_seed=pulumi.Output.secret(seed)))

        everything = json.dumps([r.inputs for r in record(program, "test")])
        assert [value for value in [seed, *keys] if value in everything] == [], build.__name__


def test_the_cli_plan_of_the_configure_stack_shows_no_key():
    """`plinth plan --json` of the configure stage, as a reviewer reads it: the offline engine's seed
    placeholder gives real derived keys, and none of them is in the output."""
    done = subprocess.run([str(Path(sys.executable).parent / "plinth"), "plan", "--stack", "regulated-prod.configure",
                           "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    teams = ("fraud", "credit")
    keys = [derive(SECRET, "regulated", name, kind) for name in identity_names("regulated", teams)
            for kind in ("access", "secret")]
    assert [key for key in keys if key in done.stdout] == []
    written = {r["inputs"]["name"]: r["inputs"]["dataJson"] for r in json.loads(done.stdout)["resources"]
               if r["type"] == "vault:kv/secretV2:SecretV2"}
    assert written == {"fraud/object-store": SECRET, "credit/object-store": SECRET}


def _delivery_rules(spec) -> list[tuple]:
    return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(spec) if "secrets-operator" in v.rule]


def test_the_store_refuses_teams_it_cannot_give_their_keys():
    found = [(("storage", "objectStore", "enabled"), "object-store-needs-secrets-operator",
              "each team's keys to the object store reach its namespace from Vault through the Vault Secrets "
              "Operator, which is off", "enable secrets.vault with secretsOperator: true (its default)")]
    assert _delivery_rules(platform_spec(ON)) == found
    assert _delivery_rules(platform_spec(ON, VAULT, {"secrets": {"vault": {"secretsOperator": False}}})) == found
    assert _delivery_rules(platform_spec(ON, VAULT)) == []
    assert _delivery_rules(platform_spec(ON, {"teams": []})) == []  # no team, no key to deliver


# --- TLS -----------------------------------------------------------------------------------------------------------


def test_the_s3_api_is_https_only_with_a_certificate_from_the_platform_ca(dev):
    filer = values(dev, "object-store")["filer"]
    # A certificate and key without -s3.port.https: SeaweedFS serves S3 over TLS on its S3 port, nothing in plain.
    assert filer["extraArgs"] == ["-s3.cert.file=/etc/plinth/s3-tls/tls.crt", "-s3.key.file=/etc/plinth/s3-tls/tls.key"]
    assert not any("port.https" in arg for arg in filer["extraArgs"]) and "httpsPort" not in filer["s3"]
    assert yaml.safe_load(filer["extraVolumeMounts"]) == [
        {"name": "s3-tls", "mountPath": "/etc/plinth/s3-tls", "readOnly": True}]
    [volume] = yaml.safe_load(filer["extraVolumes"])
    assert volume["secret"]["secretName"] == "object-store-s3-tls"
    certificate = dev["object-store-s3-tls"].inputs
    assert certificate["spec"]["issuerRef"]["name"] == "plinth-ca"
    assert certificate["spec"]["dnsNames"] == [
        "seaweedfs-s3.object-store.svc", "seaweedfs-s3.object-store.svc.cluster.local", "seaweedfs-s3.object-store",
        "seaweedfs-s3"]
    assert certificate["spec"]["usages"] == ["digital signature", "key encipherment", "server auth"]


def test_each_team_namespace_gets_the_platform_ca_its_s3_clients_trust():
    objects = by_key(plan(KEYED, "test"))
    for team in ("fraud", "fraud-2", "search"):
        trusted = objects[("Certificate", team, "object-store-ca")].inputs["spec"]
        assert (trusted["secretName"], trusted["issuerRef"]["name"], trusted["usages"][-1]) == \
            ("object-store-ca", "plinth-ca", "client auth")


def test_the_store_needs_cert_manager():
    found = {(v.rule, v.loc) for v in check_rules(platform_spec(ON, {"teams": []}))}
    assert ("object-store-needs-cert-manager", ("storage", "objectStore", "enabled")) in found


IN_STORE = "s3://https://seaweedfs-s3.object-store.svc:8333/test-models/fraud/scorer"
MODEL = {"name": "scorer", "team": "fraud", "runtime": "triton", "modelRepository": IN_STORE,
         "credentialsSecret": "object-store-credentials", "stable": {"version": "3"}}


def test_a_triton_model_served_from_the_store_needs_no_cidrs_and_trusts_the_platform_ca():
    spec = platform_spec(ON, VAULT, {"teams": [{"name": "fraud"}], "serving": {"models": [MODEL]}})
    assert [v for v in check_rules(spec) if v.rule.startswith("model-repository")] == []
    [deployment] = [r for r in plan(spec, "test").resources if r.type == "kubernetes:apps/v1:Deployment"
                    and r.inputs["metadata"]["namespace"] == "fraud"]
    pod = deployment.inputs["spec"]["template"]["spec"]
    assert {"name": "object-store-ca", "secret": {"secretName": "object-store-ca", "defaultMode": 0o444,
                                                  "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in pod["volumes"]
    mounts = pod["containers"][0]["volumeMounts"]
    # Triton's S3 client has no CA setting: the platform CA stands in for the image's system bundle.
    assert {"name": "object-store-ca", "mountPath": "/etc/ssl/certs/ca-certificates.crt", "subPath": "ca.crt",
            "readOnly": True} in mounts
    plain = {**MODEL, "modelRepository": IN_STORE.replace("s3://https://", "s3://http://")}
    refused = check_rules(platform_spec(ON, VAULT, {"teams": [{"name": "fraud"}], "serving": {"models": [plain]}}))
    assert [(v.rule, v.loc) for v in refused if v.rule.startswith("model-repository")] == [
        ("model-repository-tls", ("serving", "models", 0, "modelRepository"))]
