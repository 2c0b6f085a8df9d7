"""MLflow (registry.mlflow) under Pulumi's mock runtime: its database a platform CloudNativePG Cluster, its
artifacts in the target's bucket, the migration before a new version starts, exposure, HA, secrets, and the spec
rules around it."""

from __future__ import annotations

import json

import pulumi
import pytest

from support import ROOT, by_name, network_policies, of_kind, platform_spec
from plinth.catalog import CHARTS, mirror_image
from plinth.context import PlatformContext, StackSecrets
from plinth.engine.offline import plan, record
from plinth.mirror import mirror_list
from plinth.modules.featurestore import CloudNativePg
from plinth.modules.mlflow import GRANT, MIGRATE, Mlflow, s3_keys, team_token
from plinth.modules.objectstore.identities import s3_config
from plinth.plan import SECRET
from plinth.program import build_platform, needed_secrets
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules

GATEWAY = {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
           "loadBalancer": {"ranges": ["172.31.255.240/29"]}}
HOST = "mlflow.models.plinth.internal"
STORE = {"objectStore": {"enabled": True}}
VAULT = {"certificates": {"certManager": {"enabled": True}}, "secrets": {"vault": {"enabled": True}}}
"""The teams' keys to the store come from Vault (rule object-store-needs-secrets-operator)."""
MIRROR = {"enabled": True, "mirror": {"registry": "mirror.corp.internal/mirror",
                                      "charts": "oci://mirror.corp.internal/charts",
                                      "files": "https://files.corp.internal", "pullSecret": {"username": "robot"}}}


def spec(environment: str = "dev", **overrides) -> PlatformSpec:
    return platform_spec({"metadata": {"environment": environment}, "storage": STORE,
                          "registry": {"mlflow": {"enabled": True}}}, overrides)


def platform(environment: str = "dev", **overrides) -> dict:
    return by_name(plan(spec(environment, **overrides), "test"))


def values(resources) -> dict:
    return resources["mlflow"].inputs["values"]


@pytest.fixture(scope="module")
def routed():
    return platform("prod", network=GATEWAY, certificates={"certManager": {"enabled": True}},
                    monitoring={"enabled": True}, registry={"mlflow": {"enabled": True, "hostname": HOST}})


@pytest.fixture(scope="module")
def plain():
    return platform("dev")


# --- the database -------------------------------------------------------------------------------------


def test_mlflow_runs_on_a_platform_postgres_it_verifies(routed):
    mlflow, cluster = values(routed), routed["mlflow-postgres"]
    assert cluster.inputs["kind"] == "Cluster" and cluster.inputs["metadata"]["namespace"] == "mlflow"
    spec_ = cluster.inputs["spec"]
    # prod: a primary and two replicas, a commit acknowledged by one of them (the shared helper, as Harbor's).
    assert spec_["instances"] == 3 and spec_["postgresql"]["synchronous"] == {
        "method": "any", "number": 1, "dataDurability": "required"}
    assert spec_["bootstrap"]["initdb"] == {"database": "mlflow", "owner": "mlflow"}
    assert spec_["storage"] == {"size": "10Gi"}
    store = mlflow["backendStore"]
    assert store["postgres"] == {"enabled": True, "host": "mlflow-postgres-rw.mlflow.svc", "port": 5432,
                                 "database": "mlflow"}
    # The password is no value: the server and the migration read the operator's Secret.
    assert store["existingDatabaseSecret"] == {"name": "mlflow-postgres-app", "usernameKey": "username",
                                               "passwordKey": "password"}
    assert mlflow["extraEnvVars"]["PGSSLMODE"] == "verify-full"
    assert mlflow["extraEnvVars"]["PGSSLROOTCERT"] == "/etc/mlflow/postgres-ca/ca.crt"
    [ca] = [v for v in mlflow["extraVolumes"] if v["name"] == "postgres-ca"]
    assert ca["secret"] == {"secretName": "mlflow-postgres-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}
    # The Cluster exists before the release, and the operator before both.
    assert cluster.urn in routed["mlflow"].dependencies
    assert routed["postgres-operator"].urn in routed["mlflow"].dependencies


def test_dev_runs_one_instance(plain):
    spec_ = plain["mlflow-postgres"].inputs["spec"]
    assert spec_["instances"] == 1 and "postgresql" not in spec_


def test_the_postgres_operator_comes_with_mlflow_alone():
    alone = spec()
    assert not alone.feature_store.feast.enabled and not alone.registry.harbor.enabled
    assert CloudNativePg.enabled(alone)
    off = platform_spec({"storage": STORE})
    assert not CloudNativePg.enabled(off)


def test_the_bundled_databases_and_object_store_stay_off(plain):
    mlflow = values(plain)
    assert (mlflow["postgresql"], mlflow["mysql"], mlflow["minio"]) == ({"enabled": False},) * 3


def test_a_user_value_cannot_turn_a_bundled_database_on():
    found = check_rules(spec(registry={"mlflow": {"enabled": True, "values": {"postgresql": {"enabled": True}}}},
                             **VAULT))
    assert [(v.loc, v.rule) for v in found] == [
        (("registry", "mlflow", "values", "postgresql", "enabled"), "values-owned-key")]


# --- the schema migration -------------------------------------------------------------------------------


def test_the_schema_migrates_before_the_new_version_starts_and_never_beside_the_old(routed):
    mlflow = values(routed)
    # Every old pod stops before a new one starts: never two versions on one schema.
    assert mlflow["strategy"] == {"type": "Recreate"}
    # The chart's own migration container cannot mount the CA: Plinth's runs instead, the same step.
    assert mlflow["backendStore"]["databaseMigration"] is False
    [init] = mlflow["initContainers"]
    assert init["name"] == "db-migration" and init["command"] == ["python", "-c", MIGRATE]
    assert init["image"] == mirror_image(CHARTS["mlflow"].images[0], None)
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in init["env"]}
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "mlflow-postgres-app", "key": "password"}}
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "/etc/mlflow/postgres-ca/ca.crt")
    assert {m["name"] for m in init["volumeMounts"]} == {"tmp", "postgres-ca"}


# --- artifacts ----------------------------------------------------------------------------------------


def test_on_prem_artifacts_go_to_the_object_stores_artifacts_bucket_through_the_server(plain):
    mlflow = values(plain)
    root = mlflow["artifactRoot"]
    assert root["proxiedArtifactStorage"] is True  # clients upload through MLflow: no team holds a key
    assert root["s3"] == {"enabled": True, "bucket": "test-artifacts", "path": "",
                          "existingSecret": {"name": "mlflow-artifacts-s3", "keyOfAccessKeyId": "AWS_ACCESS_KEY_ID",
                                             "keyOfSecretAccessKey": "AWS_SECRET_ACCESS_KEY"}}
    assert mlflow["extraEnvVars"]["MLFLOW_S3_ENDPOINT_URL"] == "https://seaweedfs-s3.object-store.svc:8333"
    # boto3 trusts the platform CA the store's certificate comes from (certs.trust_bundle in MLflow's namespace).
    assert mlflow["extraEnvVars"]["AWS_CA_BUNDLE"] == "/etc/plinth/object-store-ca/ca.crt"
    assert {"name": "object-store-ca", "mountPath": "/etc/plinth/object-store-ca", "readOnly": True} in \
        mlflow["extraVolumeMounts"]
    trusted = plain["mlflow-object-store-ca"].inputs
    assert (trusted["kind"], trusted["metadata"]["namespace"], trusted["spec"]["secretName"]) == \
        ("Certificate", "mlflow", "object-store-ca")
    secret = plain["mlflow-artifacts-s3"]
    assert secret.inputs["stringData"] == SECRET
    assert secret.inputs["metadata"]["annotations"]["plinth.dev/secret-source"].startswith(
        "derived from plinth:objectStoreSeed")
    assert secret.urn in plain["mlflow"].dependencies


def test_the_artifacts_keys_are_the_object_stores_artifacts_identity():
    [identity] = [i for i in s3_config("p1", ("fraud",), "seed")["identities"] if i["name"] == "artifacts"]
    [credential] = identity["credentials"]
    assert s3_keys("seed", "p1") == {"AWS_ACCESS_KEY_ID": credential["accessKey"],
                                     "AWS_SECRET_ACCESS_KEY": credential["secretKey"]}
    assert identity["actions"] == ["Read:p1-artifacts", "Write:p1-artifacts", "List:p1-artifacts",
                                   "Tagging:p1-artifacts"]


def test_the_object_store_admits_the_mlflow_server_on_its_s3_port_only(plain):
    policies = network_policies(plain)
    _, allow = policies["object-store"]["allow-from-mlflow-mlflow"]
    assert allow["podSelector"] == {"matchLabels": {"app.kubernetes.io/component": "filer",
                                                    "app.kubernetes.io/instance": "seaweedfs",
                                                    "app.kubernetes.io/name": "seaweedfs"}}
    assert allow["ingress"] == [{"from": [{
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}},
        "podSelector": {"matchLabels": {"app": "mlflow", "app.kubernetes.io/instance": "mlflow",
                                        "app.kubernetes.io/name": "mlflow"}}}],
        "ports": [{"protocol": "TCP", "port": 8333}]}]


def test_on_prem_mlflow_needs_the_object_store():
    found = check_rules(platform_spec({"registry": {"mlflow": {"enabled": True}}}))
    assert [(v.loc, v.rule, v.message, v.fix) for v in found] == [
        (("registry", "mlflow", "enabled"), "mlflow-needs-object-store",
         "MLflow keeps its artifacts in the object store's artifacts bucket on an existing cluster, which is off",
         "enable storage.objectStore")]


def _cloud(stack: str):
    from plinth.stackconfig import load_stack_spec
    from test_cluster import CloudMocks

    doc = load_stack_spec(ROOT, stack).model_dump(by_alias=True, exclude_none=True)
    doc["registry"]["mlflow"] = {"enabled": True}
    cloud = PlatformSpec.model_validate(doc)
    assert check_rules(cloud) == []
    return cloud, by_name(plan(cloud, f"stack:{stack}", stack=stack, mocks=CloudMocks()))


@pytest.mark.parametrize("stack, scheme", [("eks-gpu-dev", "s3"), ("gke-gpu-dev", "gcs")])
def test_on_a_cloud_artifacts_go_to_its_bucket_as_the_servers_own_identity(stack, scheme):
    cloud, resources = _cloud(stack)
    mlflow = values(resources)
    bucket = f"{cloud.metadata.name}-{cloud.metadata.environment}-artifacts"
    assert mlflow["artifactRoot"][scheme] == {"enabled": True, "bucket": bucket, "path": ""}
    assert "mlflow-artifacts-s3" not in resources and "MLFLOW_S3_ENDPOINT_URL" not in mlflow["extraEnvVars"]
    # The chart's ServiceAccount carries the annotation of the identity the target creates for it.
    [identity] = Mlflow.identities(cloud)
    assert (identity.namespace, identity.service_account, identity.access) == ("mlflow", "mlflow",
                                                                               "bucket-rw:artifacts")
    annotations = mlflow["serviceAccount"]["annotations"]
    assert annotations and annotations == PlatformContext.from_spec(
        cloud, identities=(identity,)).target.annotations("mlflow", "mlflow")
    # The bucket exists on the cloud: every purpose of the target, artifacts among them.
    names = json.dumps([r.inputs for r in resources.values() if "bucket" in r.type.lower()])
    assert bucket in names


def test_on_a_cloud_mlflow_needs_no_object_store_seed():
    cloud, _ = _cloud("eks-gpu-dev")
    assert [s.key for s in needed_secrets(cloud) if s.key.startswith(("mlflow", "objectStore"))] == [
        "mlflowFlaskSecretKey"]
    assert [s.key for s in needed_secrets(spec()) if s.key.startswith(("mlflow", "objectStore"))] == [
        "objectStoreSeed", "mlflowFlaskSecretKey"]


# --- secrets --------------------------------------------------------------------------------------------


def test_no_secret_reaches_the_plan_in_clear():
    flask, seed = "flask-key-of-the-stack-4242", "object-store-seed-of-the-stack"
    mlflow_spec = spec("prod")

    def program() -> None:
        build_platform(mlflow_spec, StackSecrets(mlflow_flask_secret_key=pulumi.Output.secret(flask),
                                                 object_store_seed=pulumi.Output.secret(seed)))

    resources = {r.name: r for r in sorted(record(program, "test"), key=lambda r: r.custom)}
    everything = json.dumps([r.inputs for r in resources.values()])
    assert [value for value in [flask, seed, *s3_keys(seed, "test").values()] if value in everything] == []
    # The Flask key is the stack secret, a secret Output in the values: the chart never draws one at render time.
    assert values(resources)["flaskServerSecretKey"] == SECRET
    assert resources["mlflow-artifacts-s3"].inputs["stringData"] == SECRET


def test_without_its_stack_secret_mlflow_refuses_to_plan():
    with pytest.raises(Exception, match="plinth:mlflowFlaskSecretKey"):
        list(record(lambda: build_platform(spec(), StackSecrets(
            object_store_seed=pulumi.Output.secret("seed"))), "test"))


# --- exposure -------------------------------------------------------------------------------------------


def test_an_httproute_on_the_platform_gateway_with_a_hostname(routed):
    [route] = of_kind(routed, "HTTPRoute", "mlflow")
    assert route.inputs["spec"]["parentRefs"][0]["sectionName"] == "mlflow"
    assert route.inputs["spec"]["hostnames"] == [HOST]
    assert route.inputs["spec"]["rules"][0]["backendRefs"] == [{"name": "mlflow", "port": 80}]
    [allow] = [r for r in routed.values() if r.name == "mlflow-allow-from-gateway"]
    assert allow.inputs["spec"]["ingress"][0]["fromEntities"] == ["ingress"]
    mlflow = values(routed)
    # MLflow refuses Host headers and cross-origin writes it does not know: the Gateway's are allowed.
    assert HOST in mlflow["serverAllowedHosts"] and "*" not in mlflow["serverAllowedHosts"]
    assert mlflow["corsAllowedOrigins"] == [f"https://{HOST}"]
    assert Mlflow.endpoints(Mlflow.block(spec("prod", network=GATEWAY, registry={"mlflow": {
        "enabled": True, "hostname": HOST}})), PlatformContext.from_spec(spec())) == {
        "trackingUri": "http://mlflow.mlflow.svc", "url": f"https://{HOST}"}


def test_without_a_hostname_mlflow_is_its_cluster_ip_service(plain):
    assert of_kind(plain, "HTTPRoute") == []
    mlflow = values(plain)
    assert {"mlflow.mlflow.svc", "mlflow.mlflow.svc:*"} <= set(mlflow["serverAllowedHosts"])
    assert mlflow["corsAllowedOrigins"] == []


def test_a_hostname_needs_the_gateway_and_a_name_its_listener_serves():
    unrouted = spec(registry={"mlflow": {"enabled": True, "hostname": HOST}}, **VAULT)
    assert [v.rule for v in check_rules(unrouted)] == ["mlflow-needs-gateway"]
    outside = spec(network=GATEWAY, **VAULT,
                   registry={"mlflow": {"enabled": True, "hostname": "mlflow.elsewhere.internal"}})
    assert [(v.loc, v.rule) for v in check_rules(outside)] == [
        (("registry", "mlflow", "hostname"), "mlflow-hostname")]


def test_teams_reach_mlflow_through_their_egress_policy_on_its_port_only(plain):
    egress = plain["tenancy-fraud-allow-to-mlflow"].inputs["spec"]["egress"][0]
    assert egress["ports"] == [{"protocol": "TCP", "port": 5000}]
    assert egress["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "mlflow"}}}]
    _, allow = network_policies(plain)["mlflow"]["allow-from-teams"]
    assert allow["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 5000}]


# --- HA, security, metrics, images ---------------------------------------------------------------------


def test_staging_and_prod_run_two_spread_servers_under_a_budget(routed, plain):
    mlflow = values(routed)
    assert mlflow["replicaCount"] == 2
    term = mlflow["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    [pdb] = of_kind(routed, "PodDisruptionBudget", "mlflow")
    assert pdb.inputs["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app": "mlflow", "app.kubernetes.io/instance": "mlflow", "app.kubernetes.io/name": "mlflow"}}}
    assert values(plain)["replicaCount"] == 1 and of_kind(plain, "PodDisruptionBudget", "mlflow") == []
    assert values(platform("dev", registry={"mlflow": {"enabled": True, "replicas": 3}}))["replicaCount"] == 3


def test_the_namespace_enforces_restricted_and_the_pods_satisfy_it(plain):
    [ns] = [r for r in of_kind(plain, "Namespace") if r.inputs["metadata"]["name"] == "mlflow"]
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    mlflow = values(plain)
    assert mlflow["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert mlflow["podSecurityContext"]["runAsNonRoot"] is True
    for context in (mlflow["securityContext"], mlflow["initContainers"][0]["securityContext"]):
        assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
        assert context["readOnlyRootFilesystem"] is True
    assert mlflow["serviceAccount"]["automount"] is False


def test_metrics_with_monitoring(routed, plain):
    mlflow = values(routed)
    assert mlflow["serviceMonitor"] == {"enabled": True, "namespace": "mlflow", "useServicePort": True}
    assert {"name": "metrics", "mountPath": "/mlflow/metrics"} in mlflow["extraVolumeMounts"]
    [monitor] = of_kind(routed, "PodMonitor", "mlflow")
    assert monitor.inputs["spec"]["selector"]["matchLabels"]["cnpg.io/cluster"] == "mlflow-postgres"
    assert values(plain)["serviceMonitor"]["enabled"] is False and of_kind(plain, "PodMonitor", "mlflow") == []


def test_the_image_comes_through_the_mirror_and_is_listed():
    air = spec(airgap=MIRROR)
    mlflow = values(by_name(plan(air, "test")))
    mirrored = mirror_image(CHARTS["mlflow"].images[0], MIRROR["mirror"]["registry"])
    assert f"{mlflow['image']['repository']}:{mlflow['image']['tag']}" == mirrored
    assert mlflow["initContainers"][0]["image"] == mirrored
    assert mlflow["imagePullSecrets"] == [{"name": "mirror-pull"}]
    listed = mirror_list(air)
    assert mirrored in {image.target for image in listed.images if image.service == "mlflow"}
    assert ("mlflow", "1.11.5") in {(chart.name, chart.version) for chart in listed.charts}


def test_telemetry_stays_off(plain):
    assert values(plain)["telemetry"] == {"enabled": False}


# --- per-team permissions (identity.oidc.clients.mlflow) ----------------------------------------------------

ISSUER = "https://login.corp.internal/realms/ml-platform"
CA_PEM = ("-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZ2F0ZXdheS1jYQ==\n-----END CERTIFICATE-----\n")
SIGN_ON = {"oidc": {"issuer": ISSUER, "certificateAuthority": CA_PEM,
                    "clients": {"kubernetes": "plinth-kubernetes", "mlflow": "plinth-mlflow"}}}
TEAMS = [{"name": "fraud", "groups": {"mlEngineer": ["fraud-ml-engineers"], "dataScientist": ["fraud-ds"],
                                      "viewer": ["auditors"]}},
         {"name": "risk", "groups": {"mlEngineer": ["risk-ml-engineers"], "viewer": ["auditors"]}}]


@pytest.fixture(scope="module")
def signed_on():
    return platform("prod", network=GATEWAY, certificates={"certManager": {"enabled": True}}, identity=SIGN_ON,
                    teams=TEAMS, rbac={"platformAdminGroup": "ml-platform-admins"},
                    registry={"mlflow": {"enabled": True, "hostname": HOST}})


def test_with_a_client_mlflow_signs_on_through_the_provider_and_denies_by_default(signed_on):
    mlflow = values(signed_on)
    assert mlflow["oidcAuth"] == {
        "enabled": True, "discoveryUrl": f"{ISSUER}/.well-known/openid-configuration", "clientId": "plinth-mlflow",
        "existingSecret": {"name": "mlflow-oidc", "clientSecretKey": "client-secret"},
        "redirectUri": f"https://{HOST}/callback", "scope": "openid,email,profile,groups",
        "audience": "plinth-mlflow", "providerDisplayName": "Single sign-on", "groupsAttribute": "groups",
        # Every team's groups sign on; the platform admins administer; nobody reaches what nobody granted.
        "groupName": ["auditors", "fraud-ds", "fraud-ml-engineers", "risk-ml-engineers"],
        "adminGroupName": ["ml-platform-admins"], "defaultPermission": "NO_PERMISSIONS",
        "sessionCookieSecure": True, "sessionCookieSamesite": "lax", "cache": {"enabled": False},
        "database": {"uri": "postgresql://", "postgres": {"enabled": False}}}
    env = mlflow["extraEnvVars"]
    assert {k: env[k] for k in ("OIDC_ISSUER", "OIDC_PROVISION_ON_BEARER_AUTH", "OIDC_TRUST_BEARER_GROUP_CLAIMS",
                                "RESTRICT_RESOURCE_CREATION", "OIDC_ALEMBIC_VERSION_TABLE", "REQUESTS_CA_BUNDLE",
                                "SSL_CERT_FILE")} == {
        "OIDC_ISSUER": ISSUER, "OIDC_PROVISION_ON_BEARER_AUTH": "true", "OIDC_TRUST_BEARER_GROUP_CLAIMS": "true",
        "RESTRICT_RESOURCE_CREATION": "true", "OIDC_ALEMBIC_VERSION_TABLE": "oidc_auth_alembic_version",
        "REQUESTS_CA_BUNDLE": "/etc/mlflow/oidc-ca/ca.crt", "SSL_CERT_FILE": "/etc/mlflow/oidc-ca/ca.crt"}
    # The provider's CA (public) in a ConfigMap; the client secret in a Secret from the stack secret.
    assert signed_on["mlflow-oidc-ca"].inputs["data"] == {"ca.crt": CA_PEM}
    secret = signed_on["mlflow-oidc"].inputs
    assert secret["stringData"] == SECRET
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"] == "plinth:mlflowOidcClientSecret"


def test_each_teams_groups_and_workloads_are_granted_their_teams_names_only(signed_on):
    mlflow = values(signed_on)
    migration, grants = mlflow["initContainers"]
    assert (migration["name"], grants["name"]) == ("db-migration", "team-permissions")
    assert grants["command"] == ["python", "-c", GRANT]
    env = {e["name"]: e.get("value") for e in grants["env"]}
    assert json.loads(env["PLINTH_TEAM_GRANTS"]) == [
        {"group": "auditors", "regex": "^fraud\\.", "permission": "READ"},
        {"group": "fraud-ds", "regex": "^fraud\\.", "permission": "EDIT"},
        {"group": "fraud-ml-engineers", "regex": "^fraud\\.", "permission": "MANAGE"},
        {"group": "plinth:fraud:workloads", "regex": "^fraud\\.", "permission": "EDIT"},
        {"group": "auditors", "regex": "^risk\\.", "permission": "READ"},
        {"group": "plinth:risk:workloads", "regex": "^risk\\.", "permission": "EDIT"},
        {"group": "risk-ml-engineers", "regex": "^risk\\.", "permission": "MANAGE"}]
    # The server's database credentials, from the operator's Secret; the teams' tokens from Plinth's.
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in grants["env"] if "valueFrom" in e} == {
        "PGUSER": "mlflow-postgres-app", "PGPASSWORD": "mlflow-postgres-app"}
    assert {"name": "team-tokens", "secret": {"secretName": "mlflow-team-tokens"}} in mlflow["extraVolumes"]
    assert signed_on["mlflow-team-tokens"].inputs["stringData"] == SECRET


def test_a_teams_workloads_get_its_service_accounts_credentials_in_its_namespace(signed_on):
    credentials = signed_on["mlflow-fraud-credentials"].inputs
    assert credentials["metadata"]["namespace"] == "fraud" and credentials["metadata"]["name"] == "mlflow-credentials"
    assert credentials["stringData"] == SECRET
    assert credentials["metadata"]["annotations"]["plinth.dev/secret-source"] == (
        "derived from plinth:mlflowFlaskSecretKey (HMAC-SHA256 per team)")
    # Each team's token is its own and reveals neither the key nor another team's.
    tokens = {team: team_token("flask-key", "test", team) for team in ("fraud", "risk")}
    assert len(set(tokens.values())) == 2 and all(len(t) == 64 and "flask-key" not in t for t in tokens.values())
    assert team_token("flask-key", "test", "fraud") == tokens["fraud"]  # the same at every plan


def test_without_a_client_mlflow_has_no_sign_on(plain):
    mlflow = values(plain)
    assert mlflow["oidcAuth"] == {"enabled": False}
    assert [c["name"] for c in mlflow["initContainers"]] == ["db-migration"]
    assert "mlflow-fraud-credentials" not in plain and "mlflow-team-tokens" not in plain


def test_the_client_secret_is_needed_only_with_a_client():
    keys = [s.key for s in needed_secrets(spec(identity=SIGN_ON))]
    assert "mlflowOidcClientSecret" in keys
    assert "mlflowOidcClientSecret" not in [s.key for s in needed_secrets(spec())]


def test_prod_mlflow_isolates_the_teams_or_says_why_not():
    def rules(**overrides):
        return [(v.loc, v.rule, v.message, v.fix) for v in check_rules(spec("prod", **overrides))
                if v.rule.startswith("mlflow-")]

    assert rules() == [(("registry", "mlflow", "enabled"), "mlflow-team-isolation",
                        "MLflow in prod without per-team permissions: every team could read and write every "
                        "experiment and registered model",
                        "set identity.oidc.clients.mlflow (and the stack secret plinth:mlflowOidcClientSecret), or "
                        "say why not in registry.mlflow.reason")]
    assert rules(registry={"mlflow": {"enabled": True, "reason": "one team only, until the provider is up"}}) == []
    assert rules(identity=SIGN_ON) == []
    assert rules(identity=SIGN_ON, registry={"mlflow": {"enabled": True, "reason": "one team only for now"}}) == [
        (("registry", "mlflow", "reason"), "mlflow-reason-unused", "a reason for MLflow without per-team "
         "permissions, but identity.oidc.clients.mlflow is set", "remove registry.mlflow.reason")]
    assert [(v.loc, v.rule, v.fix) for v in check_rules(spec("dev", identity=SIGN_ON,
                                                                registry={"mlflow": {"enabled": False}}))
            if v.rule.startswith("mlflow-")] == [
        (("identity", "oidc", "clients", "mlflow"), "mlflow-sign-on-unused",
         "enable registry.mlflow, or remove clients.mlflow")]
    # dev and staging may run MLflow open.
    assert [v.rule for v in check_rules(spec("staging")) if v.rule.startswith("mlflow-")] == []
