"""Velero (spec `backups.cluster`, modules/backups/velero.py): when it is planned, its release's values on each
target (the backup storage location, the plugin, the credentials or the cloud identity, the security contexts),
its Schedule, the object store's door for it, the policy backups-required and the report's rows."""

from __future__ import annotations

import copy
import json

import pulumi
import pytest
from pydantic import ValidationError
from support import by_key, by_name, platform_spec, spec_document, values

from plinth.context import StackSecrets
from plinth.engine.offline import plan, record
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.report import cluster_backups, schedule_interval
from plinth.modules.backups.velero import credentials_file
from plinth.modules.objectstore.identities import derive
from plinth.plan import SECRET
from plinth.program import build_platform, cloud_identities
from plinth.spec.models import PlatformSpec
from plinth.targets import Identity

ONPREM = {"storage": {"objectStore": {"enabled": True}}}
VAULT = {"certificates": {"certManager": {"enabled": True}}, "secrets": {"vault": {"enabled": True, "ha": True}}}
"""The teams' keys to the store come from Vault (rule object-store-needs-secrets-operator); prod: HA."""
PROD = {"metadata": {"environment": "prod"}}
EKS = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
       "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
GKE = {"type": "gke", "region": "europe-west4", "project": "acme-ml", "nodePools": [
    {"name": "cpu", "instanceType": "n2-standard-8"}]}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True}


@pytest.fixture(scope="module")
def prod_plan():
    return plan(platform_spec(ONPREM, PROD), "test")


def on(target: dict):
    return plan(PlatformSpec.model_validate(spec_document(PROD, {"target": target})), "test")


# --- the spec ----------------------------------------------------------------------------------------------------


def test_cluster_backups_default_to_daily_every_namespace_kept_longer_in_prod():
    cluster = platform_spec(PROD).backups.cluster
    assert (cluster.schedule, cluster.retention, cluster.namespaces, cluster.values) == ("0 4 * * *", None, [], {})
    assert (cluster.ttl_for("prod"), cluster.ttl_for("dev")) == ("720h0m0s", "168h0m0s")
    chosen = platform_spec({"backups": {"cluster": {"retention": "2w", "namespaces": ["fraud", "mlflow"]}}})
    assert chosen.backups.cluster.ttl_for("prod") == "336h0m0s"
    assert chosen.backups.cluster.namespaces == ["fraud", "mlflow"]


@pytest.mark.parametrize("field, value", [("retention", "30m"), ("retention", "0d"), ("schedule", "daily"),
                                          ("namespaces", ["Not_A_Namespace"])])
def test_a_bad_cluster_backup_setting_is_refused(field, value):
    with pytest.raises(ValidationError) as refused:
        platform_spec({"backups": {"cluster": {field: value}}})
    assert [e["loc"][:3] for e in refused.value.errors()] == [("backups", "cluster", field)]


def test_velero_is_planned_with_backups_on_and_a_bucket_to_write_to():
    names = lambda *layers: {r.name for r in plan(platform_spec(*layers), "test").resources}  # noqa: E731
    assert "velero" in names(ONPREM, PROD)
    assert "velero" in names(ONPREM, {"backups": {"enabled": True}})
    assert "velero" not in names(ONPREM)  # dev: backups off by default
    assert "velero" not in names(PROD)  # an existing cluster without the object store: no bucket
    off = {"backups": {"enabled": False, "reason": "rebuilt from git, nothing kept"}}
    assert "velero" not in names(ONPREM, PROD, off)


# --- on-prem -----------------------------------------------------------------------------------------------------


def test_on_prem_velero_writes_to_the_object_stores_backups_bucket_with_the_backups_identity(prod_plan):
    resources = by_name(prod_plan)
    release = resources["velero"].inputs
    assert (release["name"], release["namespace"], release["version"]) == ("velero", "velero", "12.1.0")
    got = values(resources, "velero")
    # The location is Plinth's own object: the chart's would take the CA's text, which the plan never has.
    assert got["configuration"] == {"backupStorageLocation": [], "volumeSnapshotLocation": []}
    location = by_key(prod_plan)[("BackupStorageLocation", "velero", "default")].inputs
    assert location["spec"] == {
        "default": True, "provider": "aws", "accessMode": "ReadWrite",
        "objectStorage": {"bucket": "test-backups", "prefix": "velero",
                          "caCertRef": {"name": "object-store-ca", "key": "ca.crt"}},
        "config": {"region": "us-east-1", "s3ForcePathStyle": "true",
                   "s3Url": "https://seaweedfs-s3.object-store.svc:8333"}}
    trusted = by_key(prod_plan)[("Certificate", "velero", "object-store-ca")].inputs
    assert trusted["spec"]["secretName"] == "object-store-ca"
    assert got["credentials"] == {"useSecret": True, "existingSecret": "velero-backup-s3"}
    assert got["serviceAccount"] == {"server": {"create": True, "name": "velero-server"}}
    [plugin] = got["initContainers"]
    assert (plugin["name"], plugin["image"]) == ("velero-plugin-for-aws",
                                                  "docker.io/velero/velero-plugin-for-aws:v1.14.2")
    assert plugin["volumeMounts"] == [{"mountPath": "/target", "name": "plugins"}]
    assert plugin["securityContext"] == RESTRICTED_CONTAINER == got["containerSecurityContext"]
    assert got["podSecurityContext"] == {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                                         "fsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
    assert (got["deployNodeAgent"], got["snapshotsEnabled"], got["upgradeCRDs"], got["schedules"]) == \
        (False, False, True, {})
    assert got["image"] == {"repository": "docker.io/velero/velero", "tag": "v1.18.1", "imagePullSecrets": []}
    namespace = by_key(prod_plan)[("Namespace", None, "velero")].inputs
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_credentials_file_is_the_backups_identity_and_never_in_the_plan():
    seed = "object-store-seed-of-the-stack"
    spec = platform_spec(ONPREM, PROD)

    def program() -> None:
        build_platform(spec, StackSecrets(object_store_seed=pulumi.Output.secret(seed)))

    resources = {r.name: r for r in sorted(record(program, "test"), key=lambda r: r.custom)}
    keys = [derive(seed, "test", "backups", kind) for kind in ("access", "secret")]
    assert credentials_file(seed, "test") == \
        f"[default]\naws_access_key_id={keys[0]}\naws_secret_access_key={keys[1]}\n"
    everything = json.dumps([r.inputs for r in resources.values()])
    assert [value for value in [seed, *keys] if value in everything] == []
    secret = resources["velero-backup-s3"].inputs
    assert (secret["metadata"]["namespace"], secret["metadata"]["name"], secret["stringData"]) == \
        ("velero", "velero-backup-s3", SECRET)
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"] == \
        "derived from plinth:objectStoreSeed (the object store's `backups` identity)"
    # The Secret and the object store's door exist before the release that reads them.
    for made in ("velero-backup-s3", "velero-backup-ingress"):
        assert resources[made].urn in resources["velero"].dependencies


def test_the_object_store_admits_velero_on_its_s3_port_only(prod_plan):
    policy = by_key(prod_plan)[("NetworkPolicy", "object-store", "allow-from-velero-velero")].inputs["spec"]
    assert policy["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "velero"}},
                  "podSelector": {"matchLabels": {"app.kubernetes.io/instance": "velero",
                                                  "app.kubernetes.io/name": "velero"}}}],
        "ports": [{"protocol": "TCP", "port": 8333}]}]


def test_the_schedule_backs_up_every_namespace_into_the_default_location_with_a_ttl(prod_plan):
    resources = by_name(prod_plan)
    schedule = by_key(prod_plan)[("Schedule", "velero", "plinth-cluster")]
    assert schedule.type == "kubernetes:velero.io/v1:Schedule"
    assert schedule.inputs["spec"] == {
        "schedule": "0 4 * * *",
        "template": {"includedNamespaces": ["*"], "includeClusterResources": True, "storageLocation": "default",
                     "ttl": "720h0m0s", "snapshotVolumes": False, "defaultVolumesToFsBackup": False},
        "useOwnerReferencesInBackup": False}
    # After the release (its CRDs).
    assert resources["velero"].urn in schedule.dependencies
    chosen = plan(platform_spec(ONPREM, PROD, {"backups": {"cluster": {"namespaces": ["fraud"], "schedule":
                                                                       "30 */6 * * *"}}}), "test")
    spec = by_key(chosen)[("Schedule", "velero", "plinth-cluster")].inputs["spec"]
    assert (spec["schedule"], spec["template"]["includedNamespaces"]) == ("30 */6 * * *", ["fraud"])


def test_air_gapped_velero_pulls_its_server_and_plugin_from_the_mirror():
    mirrored = plan(platform_spec(ONPREM, PROD, {"airgap": {"enabled": True, "mirror": {
        "registry": "mirror.corp/m", "charts": "oci://mirror.corp/charts"}}}), "test")
    got = values(by_name(mirrored), "velero")
    assert got["image"] == {"repository": "mirror.corp/m/velero/velero", "tag": "v1.18.1",
                            "imagePullSecrets": []}
    assert got["initContainers"][0]["image"] == "mirror.corp/m/velero/velero-plugin-for-aws:v1.14.2"


def test_the_release_names_the_chart_values_keys_plinth_owns_so_the_user_cannot_set_them():
    from plinth.spec.rules import check_rules

    found = [(v.loc, v.rule) for v in check_rules(platform_spec(ONPREM, PROD, VAULT, {"backups": {"cluster": {
        "values": {"deployNodeAgent": True, "tolerations": []}}}})) if v.rule != "prod-identity"]
    assert found == [(("backups", "cluster", "values", "deployNodeAgent"), "values-owned-key")]


# --- the clouds --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("target, location, annotation", [
    (EKS, {"provider": "aws", "bucket": "test-prod-backups", "config": {"region": "eu-west-1"}},
     {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test-prod-velero"}),
    (GKE, {"provider": "gcp", "bucket": "test-prod-backups",
           "config": {"serviceAccount": "test-prod-velero@acme-ml.iam.gserviceaccount.com"}},
     {"iam.gke.io/gcp-service-account": "test-prod-velero@acme-ml.iam.gserviceaccount.com"}),
])
def test_on_a_cloud_velero_uses_the_clouds_backups_bucket_and_its_pods_identity(target, location, annotation):
    result = on(target)
    got = values(by_name(result), "velero")
    spec = by_key(result)[("BackupStorageLocation", "velero", "default")].inputs["spec"]
    rest = {key: value for key, value in location.items() if key != "bucket"}
    assert spec == {"default": True, "accessMode": "ReadWrite",
                    "objectStorage": {"bucket": location["bucket"], "prefix": "velero"}, **rest}
    assert got["credentials"] == {"useSecret": False}
    assert got["serviceAccount"] == {"server": {"create": True, "name": "velero-server", "annotations": annotation}}
    plugin = "velero-plugin-for-aws" if target is EKS else "velero-plugin-for-gcp"
    assert got["initContainers"][0]["image"] == f"docker.io/velero/{plugin}:v1.14.2"
    assert not [k for k in by_key(result) if k[0] == "Secret" and k[2] == "velero-backup-s3"]
    spec = PlatformSpec.model_validate(spec_document(PROD, {"target": target}))
    assert Identity("velero", "velero", "velero-server", "bucket-rw:backups") in cloud_identities(spec)


def test_plinth_images_lists_the_server_and_only_the_targets_plugin():
    from plinth.mirror import mirror_list

    for layers, plugin, other in (((ONPREM, PROD), "aws", "gcp"), (({"target": GKE}, PROD), "gcp", "aws")):
        listed = {i.source for i in mirror_list(PlatformSpec.model_validate(spec_document(*layers))).images}
        assert {"docker.io/velero/velero:v1.18.1", f"docker.io/velero/velero-plugin-for-{plugin}:v1.14.2"} <= listed
        assert f"docker.io/velero/velero-plugin-for-{other}:v1.14.2" not in listed


# --- the policy and the report -----------------------------------------------------------------------------------


def violations(found) -> list[tuple[str, str]]:
    [(_, _, result)] = [r for r in evaluate(found) if r[0].name == "backups-required"]
    return [(v.subject, v.message) for v in result]


def test_backups_required_wants_velero_wherever_there_is_a_backups_bucket(prod_plan):
    found = subjects(prod_plan)
    assert violations(found) == []
    no_schedule = [s for s in copy.deepcopy(found) if not s.type.endswith("velero.io/v1:Schedule")]
    assert violations(no_schedule) == [
        ("Release velero", "no Schedule of namespace velero backs up on a schedule, with a ttl, into one of "
         "Velero's locations (default)")]
    elsewhere = copy.deepcopy(found)
    for s in elsewhere:
        if s.type.endswith("velero.io/v1:Schedule"):
            s.props["spec"]["template"]["storageLocation"] = "nowhere"
    assert [m for _, m in violations(elsewhere)] == [
        "no Schedule of namespace velero backs up on a schedule, with a ttl, into one of Velero's locations (default)"]
    no_ttl = copy.deepcopy(found)
    for s in no_ttl:
        if s.type.endswith("velero.io/v1:Schedule"):
            del s.props["spec"]["template"]["ttl"]
    assert len(violations(no_ttl)) == 1
    no_location = copy.deepcopy(found)
    for s in no_location:
        if s.type.endswith("velero.io/v1:BackupStorageLocation"):
            s.props["spec"]["objectStorage"]["bucket"] = ""
    assert violations(no_location) == [
        ("Release velero", "Velero has no BackupStorageLocation in namespace velero with a provider and a bucket")]
    no_release = [s for s in found if not (s.type.endswith("helm.sh/v3:Release") and s.props.get("name") == "velero")]
    assert ("", "no Velero release backs up the namespaces' objects into the backups bucket") in violations(no_release)


def test_backups_required_does_not_ask_for_velero_without_a_bucket_or_outside_prod(prod_plan):
    assert violations(subjects(plan(platform_spec(PROD), "test"))) == []
    dev = [s for s in subjects(prod_plan) if not (s.kind == "ConfigMap" and s.metadata.get("name") == "plinth-ledger")
           and not s.type.endswith("velero.io/v1:Schedule")]
    assert violations(dev) == []


def test_the_report_lists_velero_with_where_schedule_retention_and_rpo(prod_plan):
    assert cluster_backups(prod_plan) == [{
        "what": "Velero: namespaces all and cluster-scoped objects (velero/plinth-cluster)",
        "where": "s3://test-backups/velero", "schedule": "0 4 * * *", "retention": "720h0m0s", "rpo": "24 hours"}]
    assert cluster_backups(on(GKE))[0]["where"] == "gs://test-prod-backups/velero"
    assert cluster_backups(plan(platform_spec(ONPREM), "test")) == []


@pytest.mark.parametrize("cron, interval", [("0 4 * * *", "24 hours"), ("15 * * * *", "1 hour"),
                                            ("0 4 * * 0", "7 days"), ("*/5 * * * *", "the gap between two runs"),
                                            (None, "no schedule")])
def test_the_rpo_is_the_schedules_interval(cron, interval):
    assert schedule_interval(cron) == interval


def test_with_monitoring_the_schedule_is_alerted_on_when_it_fails_or_goes_stale(prod_plan):
    assert ("PrometheusRule", "velero", "plinth-cluster-backups") not in by_key(prod_plan)  # no monitoring
    weekly = {"monitoring": {"enabled": True}, "backups": {"cluster": {"schedule": "0 4 * * 6"}}}
    objects = by_key(plan(platform_spec(ONPREM, PROD, weekly), "test"))
    [group] = objects[("PrometheusRule", "velero", "plinth-cluster-backups")].inputs["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert rules["VeleroBackupFailed"]["expr"] == (
        'increase(velero_backup_failure_total{schedule="plinth-cluster"}[1h]) > 0 or '
        'increase(velero_backup_partial_failure_total{schedule="plinth-cluster"}[1h]) > 0')
    # A week between runs, plus the 3-hour margin.
    assert rules["VeleroBackupStale"]["expr"] == (
        'time() - velero_backup_last_successful_timestamp{schedule="plinth-cluster"} > 615600')
    assert [rules[a]["labels"]["severity"] for a in ("VeleroBackupFailed", "VeleroBackupStale")] == [
        "warning", "critical"]
