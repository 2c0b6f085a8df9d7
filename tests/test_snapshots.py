"""Backups beyond the databases (spec `backups.volumes`, `backups.vault`): Longhorn's backup target and recurring
volume backup (modules/storage), Vault's raft snapshot CronJob (modules/secrets/snapshots.py) and its
snapshot-only role in the configure stage, and what the policy backups-required asks of both in prod."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import hcl
import pulumi
import pytest
from pydantic import ValidationError
from support import ROOT, by_key, by_name, platform_spec, values

from plinth.context import StackSecrets
from plinth.engine.offline import plan, record
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.report import volume_and_vault_backups
from plinth.modules.objectstore.identities import derive
from plinth.plan import SECRET
from plinth.modules.objectstore import CA_SECRET
from plinth.modules.storage.backuptarget import LonghornBackupTarget, credentials
from plinth.program import build_configuration, build_platform, needed_secrets
from plinth.spec.load import load_spec
from plinth.spec.rules import check_rules

PROD = {"metadata": {"environment": "prod"}}
OFF = {"backups": {"enabled": False, "reason": "restored from the upstream system of record"}}
ONPREM = {
    "certificates": {"certManager": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}},
    "secrets": {"vault": {"enabled": True, "ha": True}},
}
SNAPSHOT = 'path "sys/storage/raft/snapshot" {\n  capabilities = ["read"]\n}\n'


def planned(*layers: dict, stage: str | None = None):
    spec = platform_spec(ONPREM, *layers)
    return plan(spec, "test", stage=stage) if stage else plan(spec, "test")


@pytest.fixture(scope="module")
def prod_plan():
    return planned(PROD)


def violations(found) -> list[tuple[str, str]]:
    [(_, _, result)] = [r for r in evaluate(found) if r[0].name == "backups-required"]
    return [(v.subject, v.message) for v in result]


# --- the spec ----------------------------------------------------------------------------------------------------


def test_volume_and_vault_backups_default_to_daily_keeping_fourteen():
    backups = platform_spec(PROD).backups
    assert (backups.volumes.schedule, backups.volumes.retain) == ("0 3 * * *", 14)
    assert (backups.vault.schedule, backups.vault.retain) == ("0 1 * * *", 14)


@pytest.mark.parametrize("bad, loc", [({"volumes": {"retain": 0}}, ("volumes", "retain")),
                                      ({"volumes": {"retain": 101}}, ("volumes", "retain")),
                                      ({"vault": {"schedule": "daily"}}, ("vault", "schedule"))])
def test_a_bad_retain_or_schedule_is_refused(bad, loc):
    with pytest.raises(ValidationError) as refused:
        platform_spec({"backups": bad})
    assert [e["loc"] for e in refused.value.errors()] == [("backups", *loc)]


# --- Longhorn -----------------------------------------------------------------------------------------------------


def test_longhorn_backs_up_to_the_object_stores_backups_bucket_under_longhorn(prod_plan):
    assert values(by_name(prod_plan), "longhorn")["defaultBackupStore"] == {
        "backupTarget": "s3://test-backups@us-east-1/longhorn/", "backupTargetCredentialSecret": "longhorn-backup-s3"}
    objects = by_key(prod_plan)
    job = objects[("RecurringJob", "longhorn-system", "plinth-volume-backup")].inputs
    assert job["apiVersion"] == "longhorn.io/v1beta2"
    assert job["spec"] == {"name": "plinth-volume-backup", "task": "backup", "cron": "0 3 * * *", "retain": 14,
                           "concurrency": 2, "groups": ["default"], "labels": {}}
    # The store, installed after Longhorn, admits Longhorn's pods (the manager lists, the instance managers
    # write) on its S3 port only: Longhorn cannot make a policy in a namespace that does not exist yet.
    policy = objects[("NetworkPolicy", "object-store", "allow-from-longhorn")]
    assert policy.parent and "ObjectStore" in policy.parent
    assert policy.inputs["spec"]["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "longhorn-system"}}}], "ports": [{"protocol": "TCP", "port": 8333}]}]


def test_the_spec_chooses_the_volume_schedule_and_retain():
    objects = by_key(planned(PROD, {"backups": {"volumes": {"schedule": "30 4 * * 0", "retain": 5}}}))
    spec = objects[("RecurringJob", "longhorn-system", "plinth-volume-backup")].inputs["spec"]
    assert (spec["cron"], spec["retain"]) == ("30 4 * * 0", 5)


class _PlatformCa(pulumi.runtime.Mocks):
    """The cluster as the configure stage reads it: the trust bundle's Secret in Longhorn's namespace."""

    def new_resource(self, args):
        if args.resource_id == f"longhorn-system/{CA_SECRET}":
            return args.resource_id, {"data": {"ca.crt": base64.b64encode(PLATFORM_CA.encode()).decode()}}
        return None, args.inputs

    def call(self, args):
        return {}


PLATFORM_CA = "-----BEGIN CERTIFICATE-----\nMIIBplatformca\n-----END CERTIFICATE-----\n"


def test_longhorns_backup_target_is_the_backups_identity_with_the_platform_ca_from_the_configure_stage():
    seed = "object-store-seed-of-the-stack"
    spec = platform_spec(ONPREM, PROD)
    keys = [derive(seed, "test", "backups", kind) for kind in ("access", "secret")]

    # The platform stage leaves the platform CA in Longhorn's namespace, before the release; no keys.
    def secrets() -> StackSecrets:  # made inside each run: an Output belongs to its run's event loop
        return StackSecrets(object_store_seed=pulumi.Output.secret(seed))

    recorded = record(lambda: build_platform(spec, secrets()), "test")
    resources = {r.name: r for r in recorded if r.custom}
    [release] = [r for r in recorded if r.type == "kubernetes:helm.sh/v3:Release" and r.name == "longhorn"]
    assert "longhorn-backup-s3" not in resources
    trusted = resources["longhorn-object-store-ca"]
    assert (trusted.type, trusted.inputs["metadata"]["namespace"], trusted.inputs["spec"]["secretName"]) == \
        ("kubernetes:cert-manager.io/v1:Certificate", "longhorn-system", CA_SECRET)
    assert trusted.urn in release.dependencies

    # The configure stage reads its ca.crt and writes the target's Secret: keys and CA, a secret in the plan.
    configured = record(lambda: build_configuration(spec, secrets()), "test", mocks=_PlatformCa())
    [secret] = [r for r in configured if r.type == "kubernetes:core/v1:Secret"]
    assert (secret.inputs["metadata"]["namespace"], secret.inputs["metadata"]["name"], secret.inputs["stringData"]) \
        == ("longhorn-system", "longhorn-backup-s3", SECRET)
    assert [k for k in keys if k in repr([r.inputs for r in (*recorded, *configured)])] == []
    assert credentials(seed, "test", PLATFORM_CA) == {
        "AWS_ACCESS_KEY_ID": keys[0], "AWS_SECRET_ACCESS_KEY": keys[1],
        "AWS_ENDPOINTS": "https://seaweedfs-s3.object-store.svc:8333", "AWS_CERT": PLATFORM_CA}
    assert [s.key for s in needed_secrets(spec, "configure")] == ["objectStoreSeed"]
    # Without backups, or on a cloud (the bucket with the manager's own identity), the stage writes none.
    assert not LonghornBackupTarget.enabled(platform_spec(ONPREM, PROD, OFF))


def test_dev_and_backups_off_configure_no_volume_backup():
    for layers in ((), (PROD, OFF)):
        result = planned(*layers)
        assert "defaultBackupStore" not in values(by_name(result), "longhorn")
        kinds = {key[0] for key in by_key(result)}
        assert "RecurringJob" not in kinds and "CronJob" not in kinds
        assert "longhorn-backup-s3" not in by_name(result)


EKS = {"type": "eks", "region": "eu-west-1", "accountId": "123456789012",
       "availabilityZones": ["eu-west-1a", "eu-west-1b"], "adminRoleArn": "arn:aws:iam::123456789012:role/admins",
       "nodePools": [{"name": "cpu", "instanceType": "m7i.xlarge"}]}
GKE = {"type": "gke", "region": "europe-west4", "project": "acme-ml", "nodePools": [
    {"name": "cpu", "instanceType": "n2-standard-8"}]}
CLOUD = {"certificates": {"certManager": {"enabled": True}}, "storage": {"longhorn": {"enabled": True}}}


def test_on_eks_longhorn_keeps_its_iam_role_and_gets_the_recurring_job():
    result = plan(platform_spec(CLOUD, PROD, {"target": EKS}), "test")
    assert values(by_name(result), "longhorn")["defaultBackupStore"] == {
        "backupTarget": "s3://test-prod-backups@eu-west-1/"}  # no key: the manager's IAM role
    objects = by_key(result)
    assert ("RecurringJob", "longhorn-system", "plinth-volume-backup") in objects
    assert "longhorn-backup-s3" not in by_name(result)
    assert not [k for k in objects if k[0] == "NetworkPolicy" and k[1] == "object-store"]


def test_on_gke_longhorn_has_no_target_so_no_recurring_backup():
    result = plan(platform_spec(CLOUD, PROD, {"target": GKE}), "test")
    assert "defaultBackupStore" not in values(by_name(result), "longhorn")
    assert not [k for k in by_key(result) if k[0] == "RecurringJob"]
    # And prod's policy says so.
    assert ("Release longhorn", "Longhorn has no backup target (defaultBackupStore.backupTarget)") in \
        violations(subjects(result))


def test_longhorn_backups_on_an_existing_cluster_need_the_object_store():
    found = [(v.rule, v.message, v.fix) for v in check_rules(platform_spec(PROD, {
        "storage": {"longhorn": {"enabled": True}}})) if v.rule == "longhorn-backups-needs-object-store"]
    assert found == [("longhorn-backups-needs-object-store", "on an existing cluster, Longhorn backs up its volumes "
                      "to the object store's backups bucket, which is off",
                      "enable storage.objectStore, or set backups.enabled: false with a backups.reason")]
    assert [v for v in check_rules(platform_spec(PROD, OFF, {"storage": {"longhorn": {"enabled": True}}}))
            if v.rule == "longhorn-backups-needs-object-store"] == []


# --- Vault --------------------------------------------------------------------------------------------------------


def test_vault_on_raft_takes_a_snapshot_on_a_schedule_with_restricted_pods(prod_plan):
    objects = by_key(prod_plan)
    job = objects[("CronJob", "vault", "vault-snapshot")].inputs["spec"]
    assert (job["schedule"], job["timeZone"], job["concurrencyPolicy"]) == ("0 1 * * *", "Etc/UTC", "Forbid")
    pod = job["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == "docker.io/hashicorp/vault:2.0.4"  # the catalog's Vault image: it has the CLI
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10100, "runAsGroup": 1000, "fsGroup": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True}
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "500m", "memory": "256Mi"}}
    script = container["command"][2]
    assert "auth/kubernetes/login role=vault-snapshot jwt=@/var/run/secrets/vault/token" in script
    assert 'vault operator raft snapshot save "$file.partial"' in script
    assert "tail -n +$((RETAIN + 1)) " in script
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["RETAIN"] == "14"  # the newest 14 stay
    assert env["VAULT_ADDR"] == "https://vault-active.vault.svc:8200"
    # Only Vault's audience in the pod, and only the CA of the listener's Secret (never its key).
    assert pod["automountServiceAccountToken"] is False and pod["serviceAccountName"] == "vault-snapshot"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["token"]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == "vault"
    assert volumes["ca"]["secret"] == {"secretName": "vault-server-tls", "items": [{"key": "ca.crt",
                                                                                     "path": "ca.crt"}]}
    assert volumes["snapshots"]["persistentVolumeClaim"] == {"claimName": "vault-snapshots"}
    claim = objects[("PersistentVolumeClaim", "vault", "vault-snapshots")].inputs["spec"]
    assert claim == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    assert ("ServiceAccount", "vault", "vault-snapshot") in objects


def test_with_monitoring_the_snapshot_job_is_alerted_on_when_it_fails_or_goes_stale(prod_plan):
    assert ("PrometheusRule", "vault", "vault-snapshot-backups") not in by_key(prod_plan)  # no monitoring
    hourly = {"monitoring": {"enabled": True}, "backups": {"vault": {"schedule": "0 * * * *"}}}
    objects = by_key(planned(PROD, hourly))
    [group] = objects[("PrometheusRule", "vault", "vault-snapshot-backups")].inputs["spec"]["groups"]
    rules = {rule["alert"]: rule for rule in group["rules"]}
    since = ('max by (namespace, cronjob) (kube_cronjob_status_last_successful_time{namespace="vault", '
             'cronjob="vault-snapshot"} or kube_cronjob_created{namespace="vault", cronjob="vault-snapshot"})')
    assert rules["VaultSnapshotStale"]["expr"] == f"time() - {since} > 14400"  # an hour between runs, plus 3
    assert rules["VaultSnapshotFailed"]["expr"].endswith(f"> on (namespace) group_left (cronjob) {since}")
    assert ("PrometheusRule", "vault", "vault-snapshot-backups") not in by_key(
        planned(PROD, hourly, {"secrets": {"vault": {"ha": False}}}))  # no raft, no snapshot


def test_with_monitoring_longhorns_volume_backups_are_alerted_on_when_one_fails_or_goes_stale(prod_plan):
    key = ("PrometheusRule", "longhorn-system", "volume-backups")
    assert key not in by_key(prod_plan)  # no monitoring
    weekly = {"monitoring": {"enabled": True}, "backups": {"volumes": {"schedule": "0 3 * * 6"}}}
    [group] = by_key(planned(PROD, weekly))[key].inputs["spec"]["groups"]
    assert group["name"] == "plinth-backups-longhorn"
    rules = {rule["alert"]: rule for rule in group["rules"]}
    assert rules["LonghornBackupFailed"]["expr"] == "max by (volume, backup) (longhorn_backup_state >= 4)"
    after = 7 * 86400 + 3 * 3600  # a week between runs, plus 3 hours
    last = "longhorn_volume_last_backup_at"
    assert rules["LonghornVolumeBackupStale"]["expr"] == (
        f"(time() - max by (volume, pvc_namespace, pvc) ({last} > 0) > {after} "
        f"or max by (volume, pvc_namespace, pvc) (max_over_time({last}[{after}s])) == 0 "
        f"and on (volume) max by (volume) ({last} offset {after}s)) "
        'and on (volume) max by (volume) (longhorn_volume_state{state="attached"}) == 1')
    assert "for 171 hours (RecurringJob longhorn-system/plinth-volume-backup, schedule `0 3 * * 6` plus 3 " \
        "hours)" in rules["LonghornVolumeBackupStale"]["annotations"]["summary"]
    assert [(r["labels"]["severity"], r.get("for")) for r in group["rules"]] == [("warning", None),
                                                                                ("critical", "10m")]
    # The chart's ServiceMonitor brings the managers' metrics to Prometheus.
    assert values(by_name(planned(PROD, weekly)), "longhorn")["metrics"] == {"serviceMonitor": {"enabled": True}}
    # No recurring backup (backups off; gke: no target), no alert on it.
    monitored = {"monitoring": {"enabled": True}}
    assert key not in by_key(planned(PROD, OFF, monitored))
    assert key not in by_key(plan(platform_spec(CLOUD, PROD, monitored, {"target": GKE}), "test"))


def test_no_snapshot_without_raft_or_with_backups_off():
    for layers in ((PROD, {"secrets": {"vault": {"ha": False}}}), (PROD, OFF), ()):
        assert not [k for k in by_key(planned(*layers)) if k[0] == "CronJob"]


def test_the_air_gapped_blueprint_pulls_the_snapshot_image_from_the_mirror():
    objects = by_key(plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))
    pod = objects[("CronJob", "vault", "vault-snapshot")].inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    image = pod["containers"][0]["image"]
    assert image.endswith("/hashicorp/vault:2.0.4") and not image.startswith("docker.io/")
    assert pod["imagePullSecrets"]


def test_the_configure_stage_makes_a_snapshot_only_role():
    result = planned(PROD, {"secrets": {"vault": {"secretsOperator": False}}}, stage="configure")
    policies = {r.inputs["name"]: r.inputs["policy"] for r in result.resources if r.type.endswith(":Policy")}
    assert policies == {"vault-snapshot": SNAPSHOT}
    assert hcl.loads(SNAPSHOT)["path"] == {"sys/storage/raft/snapshot": {"capabilities": ["read"]}}
    [role] = [r.inputs for r in result.resources if r.type.endswith(":AuthBackendRole")]
    assert (role["roleName"], role["boundServiceAccountNames"], role["boundServiceAccountNamespaces"],
            role["audience"], role["tokenPolicies"]) == ("vault-snapshot", ["vault-snapshot"], ["vault"], "vault",
                                                          ["vault-snapshot"])
    # Off in dev: no configure stage for Vault at all without the operator or snapshots.
    assert not [r for r in planned({"secrets": {"vault": {"secretsOperator": False}}}, stage="configure").resources
                if r.type.endswith(":AuthBackendRole")]


# --- the policy in prod -------------------------------------------------------------------------------------------


def test_backups_required_asks_longhorn_and_vault_for_theirs(prod_plan):
    found = subjects(prod_plan)
    assert violations(found) == []
    bad = copy.deepcopy(found)
    bad = [s for s in bad if not (s.kind in ("CronJob", "RecurringJob"))]
    assert violations(bad) == [
        ("Release longhorn", "no RecurringJob (task backup, group default, with a cron and a retain) backs up its "
         "volumes"),
        ("Release vault", "Vault runs on raft but no CronJob of namespace vault saves a raft snapshot on a schedule "
         "(concurrencyPolicy: Forbid)"),
    ]
    racing = copy.deepcopy(found)
    for s in racing:
        if s.kind == "CronJob":
            s.props["spec"]["concurrencyPolicy"] = "Allow"
    assert [m for _, m in violations(racing)] == [
        "Vault runs on raft but no CronJob of namespace vault saves a raft snapshot on a schedule "
        "(concurrencyPolicy: Forbid)"]


def test_backups_required_passes_on_the_regulated_blueprint_with_its_vault_and_volumes():
    found = subjects(plan(load_spec(ROOT / "blueprints" / "onprem-airgap-regulated.yaml"), "test"))
    # Vault's raft snapshots and Longhorn's volume backups (the blueprint's other CronJob is a model's drift job).
    assert [(s.kind, s.props["metadata"]["namespace"]) for s in found if s.kind in ("CronJob", "RecurringJob")
            and s.props["metadata"]["namespace"] in ("vault", "longhorn-system")] == [
        ("CronJob", "vault"), ("RecurringJob", "longhorn-system")]
    assert violations(found) == []


# --- the report ---------------------------------------------------------------------------------------------------


def test_the_report_lists_the_volume_backups_and_vault_snapshots(prod_plan, tmp_path):
    assert volume_and_vault_backups(prod_plan) == [
        {"what": "Longhorn volumes, group default (longhorn-system/plinth-volume-backup)",
         "where": "s3://test-backups@us-east-1/longhorn/", "schedule": "0 3 * * *", "retention": "14 backups"},
        {"what": "Vault raft snapshot (vault/vault-snapshot)", "where": "volume vault/vault-snapshots",
         "schedule": "0 1 * * *", "retention": "14 snapshots"}]
    assert volume_and_vault_backups(planned(PROD, OFF)) == []


def test_plinth_report_shows_them_in_its_data_protection_section(tmp_path):
    run = subprocess.run([str(Path(sys.executable).parent / "plinth"), "report", "--stack", "regulated-prod", "--out",
                          str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PLINTH_DEBUG": ""})
    assert run.returncode == 0, run.stderr
    rows = json.loads((tmp_path / "report.json").read_text())["protectionOther"]
    assert [(r["what"], r["where"]) for r in rows] == [
        ("Longhorn volumes, group default (longhorn-system/plinth-volume-backup)",
         "s3://regulated-backups@us-east-1/longhorn/"),
        ("Vault raft snapshot (vault/vault-snapshot)", "volume vault/vault-snapshots")]
    assert "| Vault raft snapshot (vault/vault-snapshot) | volume vault/vault-snapshots | 0 1 * * * | 14 snapshots |" \
        in (tmp_path / "report.md").read_text()
