"""Backups (spec `backups`, modules/backups): the spec's defaults and rules, every CloudNativePG cluster's WAL
archiving, ObjectStore and ScheduledBackup under mocks, the Barman Cloud plugin's release, and the policy
backups-required."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
from support import MINIMAL, ROOT, by_key, by_name, platform_spec, spec_document, values

from plinth.catalog import CHARTS
from plinth.context import StackSecrets
from plinth.engine.offline import plan, record
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.report import data_protection
from plinth.modules.backups.alerts import longest_gap_seconds, stale_after
from plinth.modules.objectstore.identities import derive
from plinth.plan import SECRET
from plinth.program import build_platform, cloud_identities
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.targets import Identity

SERVICES = {
    "certificates": {"certManager": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}},
    "monitoring": {"enabled": True},
    "featureStore": {"feast": {"enabled": True}},
}
"""Two CloudNativePG clusters (Grafana's in staging and prod, Feast's registry) and the object store."""
PROD = {"metadata": {"environment": "prod"}}
OFF = {"backups": {"enabled": False, "reason": "restored from the upstream system of record"}}
PLINTH = [str(Path(sys.executable).parent / "plinth")]


def rules(*layers: dict) -> list[tuple[tuple, str, str]]:
    return [(v.loc, v.rule, v.message) for v in check_rules(platform_spec(*layers))
            if v.rule.startswith(("prod-backups", "backups-"))]


def planned(*layers: dict):
    return plan(platform_spec(SERVICES, *layers), "test")


# --- the spec ------------------------------------------------------------------------------------------------


def test_backups_are_on_in_prod_only_by_default_with_a_longer_retention_there():
    for environment, on, retention in (("dev", False, "7d"), ("staging", False, "7d"), ("prod", True, "30d")):
        backups = platform_spec({"metadata": {"environment": environment}}).backups
        assert (backups.active(environment), backups.retention_for(environment)) == (on, retention)
        assert backups.databases.schedule == "0 2 * * *"
    chosen = platform_spec({"backups": {"enabled": True, "databases": {"retention": "2w"}}}).backups
    assert (chosen.active("dev"), chosen.retention_for("prod")) == (True, "2w")


def test_backups_off_in_prod_without_a_reason_is_refused():
    assert rules(PROD, {"storage": {"objectStore": {"enabled": True}}}, {"backups": {"enabled": False}}) == [
        (("backups", "enabled"), "prod-backups",
         "prod keeps backups on: backups.enabled is false without a backups.reason")]
    assert rules(PROD, OFF) == []
    assert rules({"metadata": {"environment": "staging"}}, {"backups": {"enabled": False}}) == []


def test_backups_on_an_existing_cluster_need_the_object_store_and_cert_manager():
    # Prod with a database (Grafana's) and neither: both needs, each with its way out.
    found = [(v.rule, v.message, v.fix) for v in check_rules(platform_spec(PROD, {"monitoring": {"enabled": True}}))
             if v.rule.startswith("backups-")]
    assert found == [
        ("backups-needs-cert-manager", "the Barman Cloud plugin's TLS (the operator talks to it over mutual TLS) "
         "comes from cert-manager, which is off", "enable certificates.certManager"),
        ("backups-needs-object-store", "on an existing cluster, backups go to the object store's backups bucket, "
         "which is off", "enable storage.objectStore, or set backups.enabled: false with a backups.reason"),
    ]
    # Nothing to back up (no CloudNativePG cluster): nothing needed.
    assert rules(PROD) == []


def test_the_cli_refuses_backups_off_in_prod_with_exit_2(tmp_path):
    doc = MINIMAL.replace("environment: dev", "environment: prod") + "backups:\n  enabled: false\n" + \
        "identity:\n  reason: people sign on with the company CA's client certificates\n"
    (tmp_path / "prod.yaml").write_text(doc)
    result = subprocess.run([*PLINTH, "validate", "prod.yaml"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == (
        "prod.yaml:18:3: backups.enabled: prod keeps backups on: backups.enabled is false without a backups.reason "
        "[rule prod-backups; fix: remove backups.enabled: false, or say why in backups.reason]")
    assert "Traceback" not in result.stderr


# --- every CloudNativePG cluster, on-prem ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod_plan():
    return planned(PROD)


def test_every_cluster_archives_its_wal_into_its_own_prefix_of_the_backups_bucket(prod_plan):
    objects = by_key(prod_plan)
    clusters = sorted((ns, name) for kind, ns, name in objects if kind == "Cluster")
    assert clusters == [("feast", "feast-postgres"), ("monitoring", "grafana-postgres")]
    for ns, name in clusters:
        cluster = objects[("Cluster", ns, name)].inputs["spec"]
        assert cluster["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                       "parameters": {"barmanObjectName": f"{name}-backup"}}]
        store = objects[("ObjectStore", ns, f"{name}-backup")].inputs
        assert store["apiVersion"] == "barmancloud.cnpg.io/v1"
        assert store["spec"] == {
            "configuration": {
                "destinationPath": f"s3://test-backups/postgres/{ns}",
                "endpointURL": "https://seaweedfs-s3.object-store.svc:8333",
                "endpointCA": {"name": f"{name}-backup-ca", "key": "ca.crt"},
                "s3Credentials": {"accessKeyId": {"name": f"{name}-backup-s3", "key": "ACCESS_KEY_ID"},
                                  "secretAccessKey": {"name": f"{name}-backup-s3", "key": "ACCESS_SECRET_KEY"}},
                "wal": {"compression": "gzip"}, "data": {"compression": "gzip"}},
            "retentionPolicy": "30d"}
        backup = objects[("ScheduledBackup", ns, f"{name}-backup")].inputs["spec"]
        assert backup == {"schedule": "0 0 2 * * *", "cluster": {"name": name}, "method": "plugin",
                          "pluginConfiguration": {"name": "barman-cloud.cloudnative-pg.io"}, "immediate": True,
                          "backupOwnerReference": "self"}


def test_the_keys_are_the_object_stores_backups_identity_and_never_in_the_plan():
    seed = "object-store-seed-of-the-stack"
    spec = platform_spec(SERVICES, PROD)

    def program() -> None:
        build_platform(spec, StackSecrets(object_store_seed=pulumi.Output.secret(seed),
                                          grafana_admin_password=pulumi.Output.secret("grafana"),
                                          feast_redis_password=pulumi.Output.secret("redis")))

    resources = {r.name: r for r in sorted(record(program, "test"), key=lambda r: r.custom)}
    everything = json.dumps([r.inputs for r in resources.values()])
    keys = [derive(seed, "test", "backups", kind) for kind in ("access", "secret")]
    assert [value for value in [seed, *keys] if value in everything] == []
    secret = resources["feast-postgres-backup-s3"].inputs
    assert secret["metadata"]["name"] == "feast-postgres-backup-s3" and secret["stringData"] == SECRET
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"] == \
        "derived from plinth:objectStoreSeed (the object store's `backups` identity)"
    # The keys, the door and the store exist before the Cluster that archives through them.
    cluster = resources["feast-postgres"]
    for made in ("feast-postgres-backup-s3", "feast-postgres-backup-ingress", "feast-postgres-backup-store"):
        assert resources[made].urn in cluster.dependencies


def test_the_object_store_admits_each_database_on_its_s3_port_only(prod_plan):
    objects = by_key(prod_plan)
    policy = objects[("NetworkPolicy", "object-store", "allow-from-feast-feast-postgres")].inputs["spec"]
    assert policy == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "filer", "app.kubernetes.io/instance":
                                        "seaweedfs", "app.kubernetes.io/name": "seaweedfs"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "feast"}},
                               "podSelector": {"matchLabels": {"cnpg.io/cluster": "feast-postgres"}}}],
                     "ports": [{"protocol": "TCP", "port": 8333}]}]}


def test_the_plugin_runs_in_the_operators_namespace_with_mirrored_images(prod_plan):
    resources = by_name(prod_plan)
    release = resources["barman-cloud"].inputs
    assert (release["name"], release["namespace"]) == ("plugin-barman-cloud", "cnpg-system")
    assert values(resources, "barman-cloud") == {
        "crds": {"create": True},
        "image": {"registry": "ghcr.io", "repository": "cloudnative-pg/plugin-barman-cloud", "tag": "v0.13.0"},
        "imagePullSecrets": [],
        "replicaCount": 2,
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
        "sidecarImage": {"registry": "ghcr.io", "repository": "cloudnative-pg/plugin-barman-cloud-sidecar",
                         "tag": "v0.13.0"},
    }
    # One namespace, the operator's: the plugin creates none of its own.
    namespaces = [r for r in prod_plan.resources if r.inputs.get("kind") == "Namespace"
                  and r.inputs["metadata"]["name"] == "cnpg-system"]
    assert len(namespaces) == 1
    mirrored = planned(PROD, {"airgap": {"enabled": True, "mirror": {"registry": "mirror.corp/m",
                                                                      "charts": "oci://mirror.corp/charts"}}})
    image = values(by_name(mirrored), "barman-cloud")["sidecarImage"]
    assert image == {"registry": "mirror.corp/m", "repository": "cloudnative-pg/plugin-barman-cloud-sidecar",
                     "tag": "v0.13.0"}


def test_plinth_images_lists_the_plugin_and_its_sidecar():
    result = subprocess.run([*PLINTH, "images", "blueprints/onprem-airgap-regulated.yaml"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert result.returncode == 0, result.stderr
    for image in CHARTS["plugin-barman-cloud"].images:
        assert image.split("/", 1)[1] in result.stdout


def test_dev_and_backups_off_plan_no_backup(prod_plan):
    for layers in ((), (PROD, OFF)):
        objects = by_key(planned(*layers))
        assert not [key for key in objects if key[0] in ("ObjectStore", "ScheduledBackup")]
        assert not [c for k, c in objects.items() if k[0] == "Cluster" and "plugins" in c.inputs["spec"]]
        assert "barman-cloud" not in {r.name for r in planned(*layers).resources}


# --- the clouds ------------------------------------------------------------------------------------------------

EKS = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
       "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
GKE = {"type": "gke", "region": "europe-west4", "project": "acme-ml", "nodePools": [
    {"name": "cpu", "instanceType": "n2-standard-8"}]}


@pytest.mark.parametrize("target, credentials, url, annotation", [
    (EKS, {"s3Credentials": {"inheritFromIAMRole": True}}, "s3://test-prod-backups/postgres/monitoring",
     {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test-prod-grafana-postgres"}),
    (GKE, {"googleCredentials": {"gkeEnvironment": True}}, "gs://test-prod-backups/postgres/monitoring",
     {"iam.gke.io/gcp-service-account": "test-prod-grafana-postgres@acme-ml.iam.gserviceaccount.com"}),
])
def test_on_a_cloud_the_databases_use_the_clouds_backups_bucket_and_their_pods_identity(target, credentials, url,
                                                                                          annotation):
    doc = spec_document({"certificates": {"certManager": {"enabled": True}}, "monitoring": {"enabled": True}},
                        PROD, {"target": target})
    objects = by_key(plan(PlatformSpec.model_validate(doc), "test"))
    store = objects[("ObjectStore", "monitoring", "grafana-postgres-backup")].inputs["spec"]
    assert store == {"configuration": {"destinationPath": url, **credentials, "wal": {"compression": "gzip"},
                                       "data": {"compression": "gzip"}}, "retentionPolicy": "30d"}
    assert not [key for key in objects if key[0] == "Secret" and key[2].endswith("-backup-s3")]
    # The identity the target creates for the Cluster's ServiceAccount (CloudNativePG names it after the cluster).
    cluster = objects[("Cluster", "monitoring", "grafana-postgres")].inputs["spec"]
    assert cluster["serviceAccountTemplate"] == {"metadata": {"annotations": annotation}}
    spec = PlatformSpec.model_validate(doc)
    assert Identity("grafana-postgres", "monitoring", "grafana-postgres", "bucket-rw:backups") in \
        cloud_identities(spec)


# --- the policy ------------------------------------------------------------------------------------------------


def violations(found, name="backups-required") -> list[tuple[str, str]]:
    [(_, _, result)] = [r for r in evaluate(found) if r[0].name == name]
    return [(v.subject, v.message) for v in result]


def test_backups_required_passes_on_the_regulated_blueprint():
    found = subjects(plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))
    assert len([s for s in found if s.type.endswith("postgresql.cnpg.io/v1:ScheduledBackup")]) == 4  # with MLflow's
    assert violations(found) == []


def test_backups_required_fails_on_a_prod_plan_without_backups():
    found = subjects(planned(PROD, OFF))
    assert violations(found) == [
        ("Cluster feast/feast-postgres", "no WAL archiving: spec.plugins has no barman-cloud.cloudnative-pg.io entry "
         "with isWALArchiver: true"),
        ("Cluster feast/feast-postgres", "no ScheduledBackup (method plugin, with a schedule) takes its base backups"),
        ("Cluster monitoring/grafana-postgres", "no WAL archiving: spec.plugins has no barman-cloud.cloudnative-pg.io "
         "entry with isWALArchiver: true"),
        ("Cluster monitoring/grafana-postgres", "no ScheduledBackup (method plugin, with a schedule) takes its base "
         "backups"),
        ("Release longhorn", "Longhorn has no backup target (defaultBackupStore.backupTarget)"),
        ("Release longhorn", "no RecurringJob (task backup, group default, with a cron and a retain) backs up its "
         "volumes"),
        # The platform has a backups bucket (the object store's) and no Velero backs the namespaces up into it.
        ("", "no Velero release backs up the namespaces' objects into the backups bucket"),
    ]


def test_backups_required_sees_a_missing_store_retention_or_schedule(prod_plan):
    found = subjects(prod_plan)
    assert violations(found) == []
    bad = copy.deepcopy(found)
    bad = [s for s in bad if not (s.type.endswith(":ScheduledBackup") and s.metadata["namespace"] == "feast")]
    for s in bad:
        if s.type.endswith(":ObjectStore") and s.metadata["namespace"] == "monitoring":
            s.props["spec"].pop("retentionPolicy")
        if s.type.endswith(":Cluster") and s.metadata["namespace"] == "feast":
            s.props["spec"]["plugins"][0]["parameters"]["barmanObjectName"] = "elsewhere"
    assert violations(bad) == [
        ("Cluster feast/feast-postgres", "its WAL archiver's ObjectStore 'elsewhere' is not in namespace feast"),
        ("Cluster feast/feast-postgres", "no ScheduledBackup (method plugin, with a schedule) takes its base backups"),
        ("Cluster monitoring/grafana-postgres", "its ObjectStore monitoring/grafana-postgres-backup has no "
         "retentionPolicy"),
    ]
    # Only prod is held to it.
    dev = [s for s in bad if not (s.kind == "ConfigMap" and s.metadata.get("name") == "plinth-ledger")]
    assert violations(dev) == []


# --- the report ------------------------------------------------------------------------------------------------


def test_plinth_report_has_a_data_protection_section(tmp_path):
    run = subprocess.run([*PLINTH, "report", "--stack", "regulated-prod", "--out", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    rpo = "5 minutes (WAL archived continuously)"
    assert report["protection"] == [
        {"cluster": f"{ns}/{name}", "where": f"s3://regulated-backups/postgres/{ns}/{name}",
         "schedule": "0 0 2 * * *", "retention": "30d", "rpo": rpo}
        for ns, name in (("feast", "feast-postgres"), ("harbor", "harbor-postgres"), ("mlflow", "mlflow-postgres"),
                         ("monitoring", "grafana-postgres"))]
    assert [(a["name"], a["rule"], a["severity"]) for a in report["protectionAlerts"]] == [
        ("LonghornBackupFailed", "longhorn-system/volume-backups", "warning"),
        ("LonghornVolumeBackupStale", "longhorn-system/volume-backups", "critical"),
        ("PostgresBaseBackupFailed", "cnpg-system/postgres-backups", "warning"),
        ("PostgresBaseBackupStale", "cnpg-system/postgres-backups", "critical"),
        ("PostgresWalArchivingFailing", "cnpg-system/postgres-backups", "critical"),
        ("VaultSnapshotFailed", "vault/vault-snapshot-backups", "warning"),
        ("VaultSnapshotStale", "vault/vault-snapshot-backups", "critical"),
        ("VeleroBackupFailed", "velero/plinth-cluster-backups", "warning"),
        ("VeleroBackupStale", "velero/plinth-cluster-backups", "critical")]
    text = (tmp_path / "report.md").read_text()
    assert "## Data protection" in text
    assert ("| VeleroBackupStale | velero/plinth-cluster-backups | critical | The last successful Velero backup of "
            "schedule plinth-cluster is older than 27 hours (schedule `0 4 * * *` plus 3 hours) |") in text
    assert ("| LonghornVolumeBackupStale | longhorn-system/volume-backups | critical | Longhorn volume "
            "{{ $labels.volume }} ({{ $labels.pvc_namespace }}/{{ $labels.pvc }}): no successful backup for 27 hours "
            "(RecurringJob longhorn-system/plinth-volume-backup, schedule `0 3 * * *` plus 3 hours) |") in text
    assert "Longhorn's volume backups have none" not in text
    assert "| feast/feast-postgres | s3://regulated-backups/postgres/feast/feast-postgres | 0 0 2 * * * | 30d | " \
        f"{rpo} |" in text


def test_a_database_without_backups_reads_so_in_the_report():
    assert data_protection(planned(PROD, OFF)) == [
        {"cluster": "feast/feast-postgres", "where": None, "schedule": None, "retention": None, "rpo": "no backup"},
        {"cluster": "monitoring/grafana-postgres", "where": None, "schedule": None, "retention": None,
         "rpo": "no backup"}]


def test_the_drill_restores_from_exactly_the_destination_planned_for_feast(prod_plan):
    from test_backup_drill import CLUSTER, DESTINATION

    store = by_key(prod_plan)[("ObjectStore", "feast", f"{CLUSTER}-backup")].inputs["spec"]
    assert store["configuration"]["destinationPath"] == DESTINATION  # both platforms are named `test`


# --- alerts --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron, hours", [
    ("0 2 * * *", 24), ("15 * * * *", 1), ("*/20 * * * *", 1 / 3), ("0 6,18 * * *", 12), ("0 4 * * 0", 168),
    ("0 4 * * sun", 168), ("0 4 * * 7", 168), ("30 2 * * 1-5", 72), ("0 1 1 * *", 31 * 24), ("0 0 29 2 *", 1461 * 24),
    # Day of month and weekday both restricted: either runs it (cron's rule), so the 1st, the 15th and Mondays.
    ("0 0 1,15 * mon", 7 * 24), ("0 9-17/4 * * *", 16),
])
def test_the_longest_gap_between_two_runs_of_a_schedule(cron, hours):
    assert longest_gap_seconds(cron) == round(hours * 3600)
    assert stale_after(cron) == round(hours * 3600) + 3 * 3600


@pytest.mark.parametrize("cron", ["0 2 * *", "x 2 * * *", "0 25 * * *", "0 0 31 2 *", "0 2 * * */0"])
def test_a_schedule_the_alerts_cannot_read_counts_as_weekly(cron):
    assert longest_gap_seconds(cron) == 7 * 86400


def test_with_monitoring_every_database_is_scraped_and_alerted_on_from_its_schedule():
    objects = by_key(planned(PROD, {"backups": {"databases": {"schedule": "0 */6 * * *"}}}))
    for ns, cluster in (("feast", "feast-postgres"), ("monitoring", "grafana-postgres")):
        assert objects[("PodMonitor", ns, cluster)].inputs["spec"] == {
            "selector": {"matchLabels": {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance"}},
            "podMetricsEndpoints": [{"port": "metrics", "interval": "30s"}]}
    [group] = objects[("PrometheusRule", "cnpg-system", "postgres-backups")].inputs["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert sorted(rules) == ["PostgresBaseBackupFailed", "PostgresBaseBackupStale", "PostgresWalArchivingFailing"]
    assert rules["PostgresBaseBackupStale"]["expr"].endswith("> 0) > 32400")  # 6 hours between runs, plus 3
    assert "9 hours (schedule `0 */6 * * *` plus 3 hours)" in rules["PostgresBaseBackupStale"]["annotations"][
        "summary"]
    assert {rule["labels"]["severity"] for rule in rules.values()} <= {"critical", "warning"}


def test_without_backups_or_monitoring_no_backup_alert_is_planned():
    for layers in ((), (PROD, OFF), (PROD, {"monitoring": {"enabled": False}})):
        assert not [key for key in by_key(planned(*layers)) if key[0] == "PrometheusRule"
                    and key[2].endswith("-backups")], layers
