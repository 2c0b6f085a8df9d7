"""The workflow archive (pipelines.argo.archive) under Pulumi's mock runtime: Argo Workflows' persistence in a
platform CloudNativePG Cluster of namespace argo, HA in staging and prod, backed up like every Cluster (the
backups-required policy and the report's data-protection section include it), its credentials from the
operator's Secret, verified TLS, the TTL from the spec, and who reaches the database."""

from __future__ import annotations

import json

import pytest
from support import MINIMAL, by_key, network_policies, platform_spec
from test_backups import EKS, GKE

from plinth.engine.offline import plan
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.report import data_protection
from plinth.program import cloud_identities
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec
from plinth.targets import Identity

TEAMS = [{"name": "fraud"}]
ARCHIVE = {"enabled": True, "archive": {"enabled": True}}
BACKED_UP = {"certificates": {"certManager": {"enabled": True}},
             "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}}}
"""On an existing cluster, backups go to the object store (and the plugin's TLS comes from cert-manager)."""
RELEASE = ("Release", "argo", "argo-workflows")


def document(environment: str = "dev", argo: dict | None = None, **overrides) -> dict:
    return {"metadata": {"environment": environment}, "teams": TEAMS,
            "pipelines": {"argo": argo if argo is not None else ARCHIVE}, **overrides}


def planned(environment: str = "dev", argo: dict | None = None, **overrides):
    result = plan(platform_spec(document(environment, argo, **overrides)), "test")
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "argo-workflows"]
    return result, {**by_key(result), RELEASE: release}


@pytest.fixture(scope="module")
def prod():
    return planned("prod", **BACKED_UP, monitoring={"enabled": True})


def values(objects: dict) -> dict:
    return objects[RELEASE].inputs["values"]


def test_off_by_default_no_database_and_no_persistence():
    spec = platform_spec(document(argo={"enabled": True}))
    assert spec.pipelines.argo.archive.enabled is False and spec.pipelines.argo.archive.ttl == "30d"
    result, objects = planned(argo={"enabled": True})
    assert not [k for k in objects if k[0] == "Cluster"]
    assert "persistence" not in values(objects)["controller"]
    # Nothing else needs the CloudNativePG operator here: it is not planned.
    assert not [r for r in result.resources if r.name == "postgres-operator"]


def test_the_controller_archives_into_the_clusters_database_as_its_owner_over_verified_tls():
    _, objects = planned()
    controller = values(objects)["controller"]
    assert controller["persistence"] == {
        "archive": True,
        "archiveTTL": "30d",
        "postgresql": {
            "host": "argo-postgres-rw.argo.svc", "port": 5432, "database": "argo", "tableName": "argo_workflows",
            "userNameSecret": {"name": "argo-postgres-app", "key": "username"},
            "passwordSecret": {"name": "argo-postgres-app", "key": "password"},
            "ssl": True, "sslMode": "verify-full"}}
    # The driver verifies the server against the Cluster's own CA: mounted, and named by PGSSLROOTCERT.
    assert controller["extraEnv"] == [{"name": "PGSSLROOTCERT", "value": "/etc/argo/postgres-ca/ca.crt"}]
    assert controller["volumes"] == [{"name": "postgres-ca", "secret": {
        "secretName": "argo-postgres-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
    assert controller["volumeMounts"] == [{"name": "postgres-ca", "mountPath": "/etc/argo/postgres-ca",
                                           "readOnly": True}]
    cluster = objects["Cluster", "argo", "argo-postgres"].inputs["spec"]
    assert cluster["bootstrap"] == {"initdb": {"database": "argo", "owner": "argo"}}
    assert cluster["instances"] == 1 and cluster["storage"] == {"size": "10Gi"}
    assert cluster["enableSuperuserAccess"] is False


def test_the_server_reads_the_archive_the_same_way_and_keeps_its_sign_on_mounts():
    from test_identity import CA

    _, plain = planned(argo={**ARCHIVE, "server": True})
    server = values(plain)["server"]
    assert server["extraEnv"] == [{"name": "PGSSLROOTCERT", "value": "/etc/argo/postgres-ca/ca.crt"}]
    assert [v["name"] for v in server["volumes"]] == ["postgres-ca"]
    # With the server's sign-on and a private CA: the provider's CA and the database's, side by side.
    from test_pipelines import HOST, SIGN_ON

    sso = planned(argo={**ARCHIVE, "server": True, "hostname": HOST}, **{**SIGN_ON, "identity": {"oidc": {
        **SIGN_ON["identity"]["oidc"], "certificateAuthority": CA}}})[1]
    server = values(sso)["server"]
    assert [v["name"] for v in server["volumes"]] == ["oidc-ca", "postgres-ca"]
    assert [e["name"] for e in server["extraEnv"]] == ["SSO_DELEGATE_RBAC_TO_NAMESPACE", "SSL_CERT_DIR",
                                                       "PGSSLROOTCERT"]


def test_no_credential_in_the_plan():
    result, objects = planned()
    text = json.dumps(values(objects))
    assert "argo-postgres-app" in text and "password\": \"" not in text.replace("\"key\": \"password\"", "")
    assert not [r for r in result.resources if r.inputs.get("kind") == "Secret"
                and r.inputs.get("metadata", {}).get("namespace") == "argo"]


def test_the_ttl_comes_from_the_spec_in_whole_days():
    _, objects = planned(argo={"enabled": True, "archive": {"enabled": True, "ttl": "90d", "databaseSize": "20Gi",
                                                             "storageClass": "fast"}})
    assert values(objects)["controller"]["persistence"]["archiveTTL"] == "90d"
    assert objects["Cluster", "argo", "argo-postgres"].inputs["spec"]["storage"] == {"size": "20Gi",
                                                                                      "storageClass": "fast"}


@pytest.mark.parametrize("ttl", ["0d", "12h", "1w", "30 d"])
def test_a_ttl_other_than_whole_days_names_its_file_line_and_field(ttl, write):
    write("base.yaml", MINIMAL)
    bad = write("bad.yaml", f"extends: base.yaml\npipelines:\n  argo:\n    enabled: true\n    archive:\n"
                            f"      enabled: true\n      ttl: {ttl}\n")
    with pytest.raises(SpecInvalid) as caught:
        load_spec(bad)
    assert [str(e) for e in caught.value.errors] == [
        f'bad.yaml:7:7: pipelines.argo.archive.ttl: expected a string matching ^[1-9][0-9]*d$, got "{ttl}"']


def test_prod_runs_three_instances_backed_up_and_policed(prod):
    result, objects = prod
    cluster = objects["Cluster", "argo", "argo-postgres"].inputs["spec"]
    assert cluster["instances"] == 3 and cluster["storage"] == {"size": "10Gi", "storageClass": "longhorn"}
    assert cluster["postgresql"]["synchronous"] == {"method": "any", "number": 1, "dataDurability": "required"}
    assert cluster["plugins"] == [{"name": "barman-cloud.cloudnative-pg.io", "isWALArchiver": True,
                                   "parameters": {"barmanObjectName": "argo-postgres-backup"}}]
    store = objects["ObjectStore", "argo", "argo-postgres-backup"].inputs["spec"]
    assert store["configuration"]["destinationPath"] == "s3://test-backups/postgres/argo"
    assert store["retentionPolicy"] == "30d"
    assert objects["ScheduledBackup", "argo", "argo-postgres-backup"].inputs["spec"]["cluster"] == {
        "name": "argo-postgres"}
    # The object store admits the archive's instances on its S3 port.
    assert ("NetworkPolicy", "object-store", "allow-from-argo-argo-postgres") in objects
    # With monitoring, its instances are scraped (WAL archiving and backup metrics the backup alerts read).
    monitor = objects["PodMonitor", "argo", "argo-postgres"].inputs["spec"]
    assert monitor["selector"] == {"matchLabels": {"cnpg.io/cluster": "argo-postgres", "cnpg.io/podRole": "instance"}}
    # Every policy passes, backups-required and prod-high-availability among them.
    assert [(policy.name, v.subject, v.message) for policy, _, found in evaluate(subjects(result))
            for v in found] == []
    assert {"cluster": "argo/argo-postgres", "where": "s3://test-backups/postgres/argo/argo-postgres",
            "schedule": "0 0 2 * * *", "retention": "30d",
            "rpo": "5 minutes (WAL archived continuously)"} in data_protection(result)


def test_backups_required_sees_the_archive_without_its_backup(prod):
    result, _ = prod
    found = [s for s in subjects(result) if not (s.type.endswith(":ScheduledBackup")
                                                  and s.metadata.get("namespace") == "argo")]
    [(_, _, violations)] = [r for r in evaluate(found) if r[0].name == "backups-required"]
    assert [(v.subject, v.message) for v in violations] == [
        ("Cluster argo/argo-postgres", "no ScheduledBackup (method plugin, with a schedule) takes its base backups")]


def test_the_controller_and_the_server_alone_reach_the_databases_port():
    _, objects = planned()
    policies = network_policies(objects)["argo"]
    assert set(policies) == {"default-deny-ingress", "allow-same-namespace", "allow-from-postgres-operator",
                             "allow-archive-clients"}
    # The namespace's own pods reach one another, the database's instances excepted.
    assert policies["allow-same-namespace"][1]["podSelector"] == {
        "matchExpressions": [{"key": "cnpg.io/cluster", "operator": "DoesNotExist"}]}
    # Those admit the controller and the server on 5432, and one another (replication, the instance manager).
    kind, clients = policies["allow-archive-clients"]
    pods = {"podSelector": {"matchLabels": {"cnpg.io/cluster": "argo-postgres"}}}
    assert kind == "NetworkPolicy" and clients == {**pods, "policyTypes": ["Ingress"], "ingress": [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "argo-workflows",
                                                   "app.kubernetes.io/name": "argo-workflows-workflow-controller"}}},
                  {"podSelector": {"matchLabels": {"app.kubernetes.io/instance": "argo-workflows",
                                                   "app.kubernetes.io/name": "argo-workflows-server"}}}],
         "ports": [{"protocol": "TCP", "port": 5432}]},
        {"from": [pods], "ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 5432}]}]}
    # The operator on its manager's and PostgreSQL's ports only; no team namespace is admitted.
    _, operator = policies["allow-from-postgres-operator"]
    assert operator["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "cnpg-system"}}}],
        "ports": [{"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 5432}]}]
    # Without the archive, the namespace's own pods reach one another as in every platform namespace.
    _, without = planned(argo={"enabled": True})
    plain = network_policies(without)["argo"]
    assert "allow-from-postgres-operator" not in plain and "allow-archive-clients" not in plain
    assert plain["allow-same-namespace"][1]["podSelector"] == {}


@pytest.mark.parametrize("target, annotation", [
    (EKS, {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/test-prod-argo-postgres"}),
    (GKE, {"iam.gke.io/gcp-service-account": "test-prod-argo-postgres@acme-ml.iam.gserviceaccount.com"}),
])
def test_on_a_cloud_the_archive_backs_up_with_its_own_identity(target, annotation):
    spec = platform_spec(document("prod", target=target, certificates={"certManager": {"enabled": True}}))
    assert Identity("argo-postgres", "argo", "argo-postgres", "bucket-rw:backups") in cloud_identities(spec)
    cluster = by_key(plan(spec, "test"))["Cluster", "argo", "argo-postgres"].inputs["spec"]
    assert cluster["serviceAccountTemplate"] == {"metadata": {"annotations": annotation}}


def test_plinth_images_lists_the_database_and_its_operator():
    from plinth.catalog import CHARTS
    from plinth.mirror import mirror_list

    listed = {(i.service, str(i.source)) for i in mirror_list(platform_spec(document())).images}
    assert {("postgres-operator", ref) for ref in CHARTS["cloudnative-pg"].images} <= listed
