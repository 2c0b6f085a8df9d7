"""The feature store: Feast with its PostgreSQL (CloudNativePG) and Redis (OT redis-operator).

Under Pulumi's mock runtime: what each environment gets, where credentials come from, and that none
reaches a plan. Then the generated feature_store.yaml loaded by the real Feast SDK, which lives in an
environment of its own (its pins are not the Pulumi SDK's): `$PLINTH_FEAST_PYTHON`, an interpreter
with `feast[postgres,redis]` installed (`.ci/run` puts it in `.venv-tools`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pulumi
import pytest
import yaml
from pydantic import ValidationError

from support import PROD_BACKUPS, by_name, feast_python, free_port, platform_spec, spec_document
from plinth.catalog import CHARTS
from plinth.context import StackSecrets
from plinth.engine.offline import plan, record
from plinth.mirror import mirror_list
from plinth.modules.featurestore import (
    ENV_POSTGRES_PASSWORD, ENV_POSTGRES_USER, ENV_REDIS_PASSWORD, SENTINEL_MASTER, checked_redis_password,
    feature_store_yaml, redis_acl, team_feature_store_yaml, team_redis_password,
)
from plinth.plan import SECRET, Plan
from plinth.program import build_platform
from plinth.spec.models import PlatformSpec
from plinth.spec.rules import check_rules
from plinth.stackconfig import required_secrets

CANARY = "canary-Redis-pw-7f3a9"
"""A Redis password that must never show up in a plan."""


def spec(environment: str = "dev", **feast) -> PlatformSpec:
    return platform_spec(PROD_BACKUPS if environment == "prod" else {}, {
        "metadata": {"environment": environment},
        "monitoring": {"enabled": True},
        "featureStore": {"feast": {"enabled": True, **feast}},
    })


def platform(environment: str = "dev", **feast) -> dict:
    return by_name(plan(spec(environment, **feast), "test"))


def with_password(the_spec: PlatformSpec, password: str) -> Plan:
    """The program with a real-looking Redis password (the offline engine otherwise uses placeholders)."""
    def program() -> None:
        secrets = {field: pulumi.Output.secret(SECRET) for field in required_secrets(the_spec)}
        secrets["feast_redis_password"] = pulumi.Output.secret(password)
        build_platform(the_spec, StackSecrets(**secrets))

    return Plan("test", the_spec.metadata.environment, "test", record(program))


@pytest.fixture(scope="module")
def dev():
    return platform("dev")


@pytest.fixture(scope="module")
def prod():
    return platform("prod", offlineStore="postgres")


def server_yaml(resources: dict) -> str:
    return base64.b64decode(resources["feast"].inputs["values"]["feature_store_yaml_base64"]).decode()


def test_postgres_has_three_synchronous_instances_in_staging_and_prod_and_one_in_dev(dev, prod):
    assert dev["feast-postgres"].inputs["spec"]["instances"] == 1
    assert "postgresql" not in dev["feast-postgres"].inputs["spec"]
    staging = platform("staging")["feast-postgres"].inputs["spec"]
    for cluster in (prod["feast-postgres"].inputs["spec"], staging):
        assert cluster["instances"] == 3
        assert cluster["postgresql"]["synchronous"] == {"method": "any", "number": 1, "dataDurability": "required"}
    cluster = dev["feast-postgres"].inputs
    assert (cluster["apiVersion"], cluster["kind"], cluster["metadata"]["namespace"]) == \
        ("postgresql.cnpg.io/v1", "Cluster", "feast")
    # Pinned operand image, default StorageClass, no superuser password anywhere.
    assert cluster["spec"]["imageName"] == CHARTS["cloudnative-pg"].images[1]
    assert cluster["spec"]["storage"] == {"size": "10Gi"} and cluster["spec"]["enableSuperuserAccess"] is False
    assert dev["feast"].inputs["values"]["replicaCount"] == 1 and prod["feast"].inputs["values"]["replicaCount"] == 2


def test_the_stores_exist_before_feast_and_the_operators_before_their_resources(dev):
    release = dev["feast"]
    for store in ("feast-postgres", "feast-redis", "feast-redis-password", "feast-offline"):
        assert dev[store].urn in release.dependencies, store
    # The operators' releases (with their CRDs) come first: the custom resources wait for them.
    for operator in ("postgres-operator", "redis-operator"):
        assert dev[operator].urn in dev["feast-postgres"].dependencies
        assert dev[operator].urn in dev["feast-redis"].dependencies
    assert dev["feast-redis-password"].urn in dev["feast-redis"].dependencies


def test_the_redis_password_never_reaches_a_plan():
    result = with_password(spec("prod"), CANARY)
    assert CANARY not in result.to_json()
    resources = by_name(result)
    assert resources["feast-redis-password"].inputs["stringData"] == SECRET
    assert resources["feast-redis"].inputs["spec"]["kubernetesConfig"]["redisSecret"] == {
        "name": "feast-redis-password", "key": "password"}


def test_prod_redis_is_a_replication_behind_sentinels_with_disruption_budgets(dev, prod):
    assert dev["feast-redis"].inputs["kind"] == "Redis" and "feast-redis-sentinel" not in dev
    replication, sentinel = prod["feast-redis"].inputs, prod["feast-redis-sentinel"].inputs
    assert (replication["kind"], sentinel["kind"]) == ("RedisReplication", "RedisSentinel")
    assert replication["spec"]["clusterSize"] == 3 and sentinel["spec"]["clusterSize"] == 3
    # The operator makes a PodDisruptionBudget for each (`<name>-replication`, `<name>-sentinel`).
    assert replication["spec"]["pdb"] == sentinel["spec"]["pdb"] == {"enabled": True, "maxUnavailable": 1}
    secret = {"name": "feast-redis-password", "key": "password"}
    config = sentinel["spec"]["redisSentinelConfig"]
    assert config["redisReplicationName"] == "feast-redis" and config["redisReplicationPassword"] == {
        "secretKeyRef": secret}
    assert sentinel["spec"]["kubernetesConfig"]["redisSecret"] == secret  # the Sentinels require the password
    assert prod["feast-redis"].urn in prod["feast-redis-sentinel"].dependencies
    online = yaml.safe_load(server_yaml(prod))["online_store"]
    assert (online["redis_type"], online["sentinel_master"]) == ("redis_sentinel", config["masterGroupName"])
    assert online["connection_string"].startswith("feast-redis-sentinel.feast.svc:26379,")
    # The feature server and the operators keep one pod through a drain.
    budgets = {r.inputs["metadata"]["name"]: r.inputs for r in prod.values() if r.type.endswith(":PodDisruptionBudget")}
    assert budgets["feast-feature-server"]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {
        "app.kubernetes.io/name": "feast-feature-server", "app.kubernetes.io/instance": "feast-feature-server"}}}
    assert budgets["redis-operator"]["metadata"]["namespace"] == "redis-operator"
    assert budgets["cloudnative-pg"]["metadata"]["namespace"] == "cnpg-system"
    assert prod["redis-operator"].inputs["values"]["replicas"] == 2
    assert not [r for r in dev.values() if r.type.endswith(":PodDisruptionBudget")]


def test_a_redis_password_that_would_break_the_connection_string_is_refused_without_echo():
    assert checked_redis_password("Aa0-._~!@#$%^&*()+=:;'<>?/|") == "Aa0-._~!@#$%^&*()+=:;'<>?/|"
    for bad in ("with space", "a,b", 'a"b', "a\\b"):
        with pytest.raises(ValueError) as caught:
            checked_redis_password(bad)
        assert bad not in str(caught.value)
    with pytest.raises(ValueError):
        checked_redis_password("")
    # The program fails at the Secret, naming the stack secret, not its value. (In a process of its
    # own: a failed run leaves pending outputs in the mock runtime that later runs would trip over.)
    script = "import sys; sys.path[:0] = sys.argv[1:]; import test_featurestore as t; " \
             "t.with_password(t.spec('dev'), 'bad pw,x')"
    proc = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    assert "plinth:feastRedisPassword must be" in proc.stderr and "bad pw,x" not in proc.stderr


def test_the_server_takes_every_credential_from_secret_key_refs(dev):
    values = dev["feast"].inputs["values"]
    env = {e["name"]: e for e in values["extraEnvs"]}
    assert set(env) == {ENV_POSTGRES_USER, ENV_POSTGRES_PASSWORD, ENV_REDIS_PASSWORD}
    assert all(set(e) == {"name", "valueFrom"} for e in env.values())
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items()}
    # The Secret CloudNativePG generates for the Cluster's database owner, and the one Plinth makes for Redis.
    app_secret = dev["feast-postgres"].inputs["metadata"]["name"] + "-app"
    assert refs[ENV_POSTGRES_USER] == {"name": app_secret, "key": "username"}
    assert refs[ENV_POSTGRES_PASSWORD] == {"name": app_secret, "key": "password"}
    assert refs[ENV_REDIS_PASSWORD] == {"name": dev["feast-redis-password"].inputs["metadata"]["name"],
                                        "key": "password"}


def test_feature_store_yaml_names_only_environment_variables_the_server_has(dev):
    text = server_yaml(dev)
    the_spec = spec("dev")
    assert text == feature_store_yaml(the_spec.feature_store.feast)  # what `plinth render` shows
    env = {e["name"] for e in dev["feast"].inputs["values"]["extraEnvs"]}
    assert set(re.findall(r"\$\{([A-Z_]+)\}", text)) == env
    config = yaml.safe_load(text)
    assert config["online_store"]["connection_string"] == \
        "feast-redis.feast.svc:6379,password=${FEAST_REDIS_PASSWORD}"
    assert config["registry"]["path"].startswith(
        "postgresql+psycopg://${FEAST_POSTGRES_USER}:${FEAST_POSTGRES_PASSWORD}@feast-postgres-rw.feast.svc:5432/")
    # No value of a credential field is anything but a placeholder.
    leaves = [(k, v) for block in config.values() if isinstance(block, dict) for k, v in block.items()]
    assert all(re.fullmatch(r"\$\{[A-Z_]+\}", v) for k, v in leaves if k in ("user", "password"))
    assert CANARY not in server_yaml(by_name(with_password(the_spec, CANARY)))


def test_postgres_online_store_needs_no_redis(prod):
    postgres = platform("dev", onlineStore="postgres")
    assert not {"redis-operator", "feast-redis", "feast-redis-password"} & set(postgres)
    assert "feast_redis_password" not in required_secrets(spec("dev", onlineStore="postgres"))
    config = yaml.safe_load(server_yaml(postgres))
    assert config["online_store"]["type"] == "postgres" and config["online_store"]["sslmode"] == "verify-full"
    assert {e["name"] for e in postgres["feast"].inputs["values"]["extraEnvs"]} == {ENV_POSTGRES_USER,
                                                                                  ENV_POSTGRES_PASSWORD}
    # A postgres offline store needs no offline volume.
    assert "feast-offline" not in prod and yaml.safe_load(server_yaml(prod))["offline_store"]["type"] == "postgres"


def test_the_file_offline_store_is_a_shared_volume_mounted_in_the_server(dev):
    claim = dev["feast-offline"].inputs["spec"]
    assert claim == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "50Gi"}}}
    values = dev["feast"].inputs["values"]
    assert {"name": "offline", "mountPath": "/feast/offline"} in values["volumeMounts"]
    assert {"name": "offline", "persistentVolumeClaim": {"claimName": "feast-offline"}} in values["volumes"]


def test_the_server_runs_restricted_and_scraped(dev):
    values = dev["feast"].inputs["values"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert values["metrics"] == {"enabled": True}
    monitors = {r.inputs["kind"]: r for r in dev.values() if r.inputs.get("kind") in ("ServiceMonitor", "PodMonitor")
                and r.inputs["metadata"]["namespace"] == "feast"}
    assert monitors["ServiceMonitor"].inputs["spec"]["endpoints"][0]["port"] == "metrics"


def test_spec_values_reach_the_feast_chart_only():
    resources = by_name(plan(platform_spec({
        "featureStore": {"feast": {"enabled": True, "values": {"logLevel": "INFO"}}}}), "test"))
    assert resources["feast"].inputs["values"]["logLevel"] == "INFO"
    assert "logLevel" not in resources["postgres-operator"].inputs["values"]
    assert "logLevel" not in resources["redis-operator"].inputs["values"]
    owned = platform_spec({
        "featureStore": {"feast": {"enabled": True, "values": {"replicaCount": 5}}}})
    assert [v.rule for v in check_rules(owned)] == ["values-owned-key"]


def two_teams(environment: str = "dev") -> dict:
    doc = spec_document(PROD_BACKUPS if environment == "prod" else {}, {
        "metadata": {"environment": environment}, "monitoring": {"enabled": True},
        "featureStore": {"feast": {"enabled": True}}})
    doc["teams"].append({"name": "credit"})
    return by_name(plan(PlatformSpec.model_validate(doc), "test"))


@pytest.fixture(scope="module")
def teams():
    return two_teams()


def test_each_team_reaches_its_own_feature_server_only(teams):
    policies = {(r.inputs["metadata"]["namespace"], r.inputs["metadata"]["name"]): r.inputs["spec"]
                for r in teams.values() if r.type.endswith(":NetworkPolicy")}
    for team in ("fraud", "credit"):
        server = {"app.kubernetes.io/name": "feast-team-server", "plinth.dev/feast-team": team}
        assert policies[(team, "allow-to-feast")]["egress"] == [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "feast"}},
                    "podSelector": {"matchLabels": server}}],
            "ports": [{"protocol": "TCP", "port": 6566}]}]
        ingress = policies[("feast", f"allow-from-{team}")]
        assert ingress["podSelector"] == {"matchLabels": server}
        assert ingress["ingress"] == [{"from": [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": team}}}], "ports": [{"protocol": "TCP", "port": 6566}]}]
        # The team's server: its own project and Redis user, its own password Secret.
        deployment = next(r.inputs for r in teams.values() if r.type.endswith(":Deployment")
                          and r.inputs["metadata"]["name"] == f"feast-{team}")
        container, = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        config = yaml.safe_load(base64.b64decode(env["FEATURE_STORE_YAML_BASE64"]["value"]).decode())
        assert config["project"] == f"features_{team}"
        assert config["online_store"]["connection_string"] == (
            f"feast-redis.feast.svc:6379,username=team-{team},password=${{FEAST_REDIS_PASSWORD}}")
        assert env[ENV_REDIS_PASSWORD]["valueFrom"]["secretKeyRef"] == {"name": f"feast-{team}-redis",
                                                                         "key": "password"}
        assert deployment["spec"]["template"]["metadata"]["labels"] == server
    # No team reaches the feast namespace as a whole (the platform's own server, Redis, PostgreSQL).
    assert ("feast", "allow-from-teams") not in policies
    # The operators reach their instances; nothing else of the platform gets in.
    assert policies[("feast", "allow-from-postgres-operator")]["ingress"][0]["ports"] == [
        {"protocol": "TCP", "port": 8000}, {"protocol": "TCP", "port": 5432}]
    assert policies[("feast", "allow-from-redis-operator")]["ingress"][0]["ports"] == [
        {"protocol": "TCP", "port": 6379}]
    # Redis knows one user per team, and the ACL Secret lists only digests.
    assert teams["feast-redis"].inputs["spec"]["acl"] == {"secret": {"secretName": "feast-redis-acl"}}
    assert teams["feast-redis-acl"].inputs["stringData"] == SECRET


def test_team_servers_are_replicated_with_budgets_in_prod():
    prod_teams = two_teams("prod")
    for team in ("fraud", "credit"):
        deployment = next(r.inputs for r in prod_teams.values() if r.type.endswith(":Deployment")
                          and r.inputs["metadata"]["name"] == f"feast-{team}")
        assert deployment["spec"]["replicas"] == 2
        budget = next(r.inputs for r in prod_teams.values() if r.type.endswith(":PodDisruptionBudget")
                      and r.inputs["metadata"]["name"] == f"feast-{team}")
        assert budget["spec"]["selector"] == deployment["spec"]["selector"]
        container, = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        config = yaml.safe_load(base64.b64decode(env["FEATURE_STORE_YAML_BASE64"]["value"]).decode())
        # The operator's master Service: the Sentinels answer only to the platform's password.
        assert config["online_store"]["connection_string"].startswith(
            f"feast-redis-master.feast.svc:6379,username=team-{team},")


def test_air_gap_every_image_comes_from_the_mirror_and_is_listed():
    doc = spec_document({
        "airgap": {"enabled": True, "mirror": {"registry": "mirror.corp.internal/plinth",
                                               "charts": "oci://mirror.corp.internal/charts"}},
        "monitoring": {"enabled": True},
        "featureStore": {"feast": {"enabled": True}}})
    the_spec = PlatformSpec.model_validate(doc)
    resources = by_name(plan(the_spec, "test"))
    mirror = "mirror.corp.internal/plinth/"
    assert resources["feast-postgres"].inputs["spec"]["imageName"].startswith(mirror)
    redis = resources["feast-redis"].inputs["spec"]
    assert redis["kubernetesConfig"]["image"].startswith(mirror) and redis["redisExporter"]["image"].startswith(mirror)
    assert resources["feast"].inputs["values"]["image"]["repository"] == mirror + "feastdev/feature-server"
    assert resources["postgres-operator"].inputs["values"]["image"]["repository"].startswith(mirror)
    assert resources["redis-operator"].inputs["values"]["redisOperator"]["imageName"].startswith(mirror)
    listed = {i.target for i in mirror_list(the_spec).images}
    for chart in ("feast", "cloudnative-pg", "redis-operator"):
        for image in CHARTS[chart].images:
            # dev runs a standalone Redis: no Sentinels to mirror.
            assert (mirror + image.split("/", 1)[1] in listed) == ("/redis-sentinel:" not in image), image


def test_cloud_offline_stores_are_not_accepted_before_their_targets():
    for store in ("bigquery", "redshift"):
        with pytest.raises(ValidationError, match="'file' or 'postgres'"):
            spec("dev", offlineStore=store)


# --- the real Feast SDK ---------------------------------------------------------------------------

LOADER = textwrap.dedent("""\
    import json, sys
    from pathlib import Path
    import feast
    from feast.repo_config import load_repo_config
    print(json.dumps({"repo": "version", "version": feast.__version__}))
    for repo in sys.argv[1:]:
        try:
            config = load_repo_config(Path(repo), Path(repo) / "feature_store.yaml")
            print(json.dumps({"repo": repo, "project": config.project,
                              "registry": type(config.registry).__name__, "registry_path": config.registry.path,
                              "online": type(config.online_store).__name__,
                              "online_store": config.online_store.model_dump(mode="json"),
                              "offline": type(config.offline_store).__name__}))
        except Exception as exc:
            print(json.dumps({"repo": repo, "error": type(exc).__name__, "message": str(exc)[:500]}))
""")

DUMMIES = {ENV_POSTGRES_USER: "feast", ENV_POSTGRES_PASSWORD: "Pg0dummy0Password",
           # Characters YAML would read as a comment or a mapping unless the scalar is quoted.
           ENV_REDIS_PASSWORD: "r3dis #pw: it's"}

CASES = {
    "redis-file-dev": ("dev", {}),
    "redis-postgres-prod": ("prod", {"offlineStore": "postgres"}),
    "postgres-file-prod": ("prod", {"onlineStore": "postgres"}),
    "postgres-postgres-dev": ("dev", {"onlineStore": "postgres", "offlineStore": "postgres"}),
}


def load_in_feast(repos: list[Path]) -> dict[str, dict]:
    proc = subprocess.run([feast_python(), "-c", LOADER, *map(str, repos)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **DUMMIES})
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return {Path(r["repo"]).name: r for r in results}


def test_feast_loads_every_generated_feature_store_yaml(tmp_path):
    repos = []
    for case, (environment, feast) in CASES.items():
        repo = tmp_path / case
        repo.mkdir()
        text = server_yaml(platform(environment, **feast))
        (repo / "feature_store.yaml").write_text(text, encoding="utf-8")
        repos.append(repo)
    broken = tmp_path / "broken"
    broken.mkdir()
    text = feature_store_yaml(spec("dev").feature_store.feast)
    (broken / "feature_store.yaml").write_text(text.replace("type: redis", "type: rediss"), encoding="utf-8")
    typo = tmp_path / "typo"
    typo.mkdir()
    (typo / "feature_store.yaml").write_text(text.replace("connection_string:", "connection_strin:"), encoding="utf-8")

    loaded = load_in_feast([*repos, broken, typo])
    # The same Feast as the server image runs.
    assert loaded["version"]["version"] == CHARTS["feast"].version

    expected_online = {"redis": "RedisOnlineStoreConfig", "postgres": "PostgreSQLOnlineStoreConfig"}
    # Feast's `file` offline store is its Dask store.
    expected_offline = {"file": "DaskOfflineStoreConfig", "postgres": "PostgreSQLOfflineStoreConfig"}
    for case, (environment, feast) in CASES.items():
        result = loaded[case]
        assert "error" not in result, result
        assert result["project"] == "features" and result["registry"] == "SqlRegistryConfig"
        assert result["registry_path"].startswith("postgresql+psycopg://feast:Pg0dummy0Password@feast-postgres-rw.")
        assert result["online"] == expected_online[feast.get("onlineStore", "redis")]
        assert result["offline"] == expected_offline[feast.get("offlineStore", "file")]
        store = result["online_store"]
        if result["online"] == "RedisOnlineStoreConfig" and environment == "dev":
            assert store["connection_string"] == "feast-redis.feast.svc:6379,password=r3dis #pw: it's"
            assert store["redis_type"] == "redis"
        elif result["online"] == "RedisOnlineStoreConfig":
            # Replicated: the Sentinels, which need the password too (sentinel_kwargs).
            assert store["connection_string"] == ("feast-redis-sentinel.feast.svc:26379,password=r3dis #pw: it's,"
                                                  'sentinel_kwargs={"password":"r3dis #pw: it\'s"}')
            assert (store["redis_type"], store["sentinel_master"]) == ("redis_sentinel", "feast")
        else:
            assert (store["user"], store["password"], store["sslmode"]) == ("feast", "Pg0dummy0Password",
                                                                           "verify-full")
    # Feast itself refuses what it cannot load: the check can fail.
    assert loaded["broken"]["error"] == "FeastOnlineStoreInvalidName", loaded["broken"]
    assert "error" in loaded["typo"] and "connection_strin" in loaded["typo"]["message"], loaded["typo"]


# --- team isolation: the real Feast SDK against a real Redis with Plinth's ACL ------------------------

CROSS_TEAM = textwrap.dedent('''\
import json, sys, os
from datetime import datetime, timedelta, timezone
from pathlib import Path
import pandas as pd
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Int64
from feast.value_type import ValueType

work, port = Path(sys.argv[1]), int(sys.argv[2])
configs = json.loads(sys.argv[3])  # team -> feature_store.yaml text (Plinth's), password env already set
results = {}

def store(team_yaml: str, password: str, project: str | None = None) -> FeatureStore:
    config = yaml.safe_load(team_yaml.replace("${FEAST_REDIS_PASSWORD}", password))
    online = config["online_store"]
    # The cluster's Service name becomes the loopback server; user and password stay Plinth's.
    online["connection_string"] = f"127.0.0.1:{port}," + online["connection_string"].split(",", 1)[1]
    config["registry"] = {"registry_type": "sql", "path": f"sqlite:///{work}/registry.db"}
    config["offline_store"] = {"type": "file"}
    if project:
        config["project"] = project
    return FeatureStore(config=RepoConfig(**config), repo_path=str(work))

parquet = work / "stats.parquet"
now = datetime.now(timezone.utc)
pd.DataFrame({"driver_id": [1], "trips": [7], "event_timestamp": [now], "created": [now]}).to_parquet(parquet)
driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
view = lambda: FeatureView(name="stats", entities=[driver], ttl=timedelta(days=1),  # noqa: E731
                           schema=[Field(name="driver_id", dtype=Int64), Field(name="trips", dtype=Int64)],
                           source=FileSource(path=str(parquet), timestamp_field="event_timestamp"), online=True)

def outcome(fn):
    try:
        return {"ok": fn()}
    except Exception as exc:  # what Redis answers a user outside its keys
        return {"error": type(exc).__name__, "message": str(exc)[:200]}

passwords = json.loads(os.environ["TEAM_PASSWORDS"])
for team in configs:
    own = store(configs[team], passwords[team])
    own.apply([driver, view()])
    row = pd.DataFrame({"driver_id": [1], "trips": [100 if team == "fraud" else 200], "event_timestamp": [now],
                        "created": [now]})
    results[f"{team}-write-own"] = outcome(lambda: own.write_to_online_store("stats", row) or True)
    results[f"{team}-read-own"] = outcome(lambda: own.get_online_features(
        features=["stats:trips"], entity_rows=[{"driver_id": 1}]).to_dict()["trips"])

# credit, with its own credentials, points its config at fraud's project.
fraud_project = yaml.safe_load(configs["fraud"])["project"]
thief = store(configs["credit"], passwords["credit"], project=fraud_project)
results["credit-read-fraud"] = outcome(lambda: thief.get_online_features(
    features=["stats:trips"], entity_rows=[{"driver_id": 1}]).to_dict()["trips"])
row = pd.DataFrame({"driver_id": [1], "trips": [-1], "event_timestamp": [now], "created": [now]})
results["credit-write-fraud"] = outcome(lambda: thief.write_to_online_store("stats", row) or True)
own = store(configs["fraud"], passwords["fraud"])
results["fraud-read-after"] = outcome(lambda: own.get_online_features(
    features=["stats:trips"], entity_rows=[{"driver_id": 1}]).to_dict()["trips"])
print(json.dumps(results))
''')


def wait_for(port: int) -> None:
    for _ in range(100):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        subprocess.run(["sleep", "0.1"])
    raise AssertionError(f"nothing listens on {port}")


SENTINEL_CLIENT = textwrap.dedent('''\
import json, sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
import pandas as pd
import yaml
from feast import Entity, FeatureStore, FeatureView, Field, FileSource, RepoConfig
from feast.types import Int64
from feast.value_type import ValueType

work, port, text, password = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]

def store(connection: str) -> FeatureStore:
    config = yaml.safe_load(text)
    online = config["online_store"]
    # The Sentinels' Service becomes the loopback Sentinel; everything after the host stays Plinth's.
    online["connection_string"] = f"127.0.0.1:{port}," + connection.split(",", 1)[1]
    config["registry"] = {"registry_type": "sql", "path": f"sqlite:///{work}/registry.db"}
    config["offline_store"] = {"type": "file"}
    return FeatureStore(config=RepoConfig(**config), repo_path=str(work))

def outcome(fn):
    try:
        return {"ok": fn()}
    except Exception as exc:
        return {"error": type(exc).__name__, "message": str(exc)[:200]}

# Feast substitutes ${VAR}s in the file's text before parsing it (the server's env holds the password).
connection = yaml.safe_load(text.replace("${FEAST_REDIS_PASSWORD}", password))["online_store"]["connection_string"]
parquet = work / "stats.parquet"
now = datetime.now(timezone.utc)
row = pd.DataFrame({"driver_id": [1], "trips": [42], "event_timestamp": [now], "created": [now]})
row.to_parquet(parquet)
driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
view = FeatureView(name="stats", entities=[driver], ttl=timedelta(days=1),
                   schema=[Field(name="driver_id", dtype=Int64), Field(name="trips", dtype=Int64)],
                   source=FileSource(path=str(parquet), timestamp_field="event_timestamp"), online=True)
results = {}
plinth = store(connection)
plinth.apply([driver, view])
results["write"] = outcome(lambda: plinth.write_to_online_store("stats", row) or True)
results["read"] = outcome(lambda: plinth.get_online_features(
    features=["stats:trips"], entity_rows=[{"driver_id": 1}]).to_dict()["trips"])
# Without sentinel_kwargs redis-py asks the Sentinels unauthenticated: they refuse.
bare = store(",".join(part for part in connection.split(",") if not part.startswith("sentinel_kwargs=")))
results["read-without-sentinel-password"] = outcome(lambda: bare.get_online_features(
    features=["stats:trips"], entity_rows=[{"driver_id": 1}]).to_dict()["trips"])
print(json.dumps(results))
''')


def test_the_prod_config_reaches_redis_through_password_protected_sentinels(tmp_path):
    """Plinth's staging/prod feature_store.yaml against a real redis-server and redis-sentinel configured as the
    operator configures them (the password on Redis and on the Sentinel, auth-pass towards Redis): Feast finds
    the master, writes and reads; without `sentinel_kwargs` the Sentinel refuses it."""
    python = feast_python()
    server, sentinel = shutil.which("redis-server"), shutil.which("redis-sentinel")
    if server is None or sentinel is None:
        pytest.skip("no redis-server/redis-sentinel on PATH (Debian: apt-get install redis-server redis-sentinel)")
    seed, rport, sport = "Platform-pw-1", free_port(), free_port()
    (tmp_path / "user.acl").write_text(redis_acl(seed, "test", ("fraud",)), encoding="utf-8")
    (tmp_path / "redis.conf").write_text(f"port {rport}\nbind 127.0.0.1\nrequirepass {seed}\nmasterauth {seed}\n"
                                         f"aclfile {tmp_path}/user.acl\nsave \"\"\nappendonly no\ndir {tmp_path}\n")
    (tmp_path / "sentinel.conf").write_text(f"port {sport}\nbind 127.0.0.1\nrequirepass {seed}\ndir {tmp_path}\n"
                                            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {rport} 1\n"
                                            f"sentinel auth-pass {SENTINEL_MASTER} {seed}\n")
    processes = [subprocess.Popen([server, str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL),
                 subprocess.Popen([sentinel, str(tmp_path / "sentinel.conf")], stdout=subprocess.DEVNULL)]
    try:
        wait_for(rport)
        wait_for(sport)
        text = feature_store_yaml(spec("prod").feature_store.feast, replicated=True)
        proc = subprocess.run([python, "-c", SENTINEL_CLIENT, str(tmp_path), str(sport), text, seed],
                              capture_output=True, text=True, timeout=300)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["write"] == {"ok": True} and results["read"] == {"ok": [42]}, results
    assert results["read-without-sentinel-password"]["error"] == "MasterNotFoundError"


def test_a_team_can_neither_read_nor_write_another_teams_online_features(tmp_path):
    """Each team's server config (Plinth's, as generated) against a redis-server loaded with Plinth's ACL file:
    fraud and credit write and read their own features; credit, pointing its config at fraud's project with its
    own credentials, is refused on read and write, and fraud's value is unchanged."""
    python = feast_python()
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("no redis-server on PATH (Debian: apt-get install redis-server)")
    block = spec("dev").feature_store.feast
    seed, teams = "Platform-pw-1", ("fraud", "credit")
    (tmp_path / "user.acl").write_text(redis_acl(seed, "test", teams), encoding="utf-8")
    port = free_port()
    # The operator's configuration: the platform's password (requirepass) and the ACL file.
    (tmp_path / "redis.conf").write_text(f"port {port}\nbind 127.0.0.1\nrequirepass {seed}\n"
                                         f"aclfile {tmp_path}/user.acl\nsave \"\"\nappendonly no\ndir {tmp_path}\n")
    redis = subprocess.Popen([server, str(tmp_path / "redis.conf")], stdout=subprocess.DEVNULL)
    try:
        wait_for(port)
        configs = {team: team_feature_store_yaml(block, team, False) for team in teams}
        passwords = {team: team_redis_password(seed, "test", team) for team in teams}
        proc = subprocess.run([python, "-c", CROSS_TEAM, str(tmp_path), str(port), json.dumps(configs)],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "TEAM_PASSWORDS": json.dumps(passwords)})
    finally:
        redis.terminate()
        redis.wait(timeout=30)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["fraud-write-own"] == results["credit-write-own"] == {"ok": True}
    assert results["fraud-read-own"] == {"ok": [100]} and results["credit-read-own"] == {"ok": [200]}
    for attempt in ("credit-read-fraud", "credit-write-fraud"):
        assert results[attempt]["error"] == "NoPermissionError", results[attempt]
        assert "no permissions to access one of the keys" in results[attempt]["message"]
    assert results["fraud-read-after"] == {"ok": [100]}


def test_the_acl_file_holds_digests_and_each_team_only_its_own_keys():
    acl = redis_acl("Platform-pw-1", "test", ("fraud", "credit"))
    assert "Platform-pw-1" not in acl and team_redis_password("Platform-pw-1", "test", "fraud") not in acl
    lines = acl.splitlines()
    assert lines[0].startswith("user default on #") and lines[0].endswith(" ~* &* +@all")
    assert [line.split()[1] for line in lines] == ["default", "team-credit", "team-fraud"]
    assert " ~*_fraud " in lines[2] and "-scan" in lines[2] and "-@dangerous" in lines[2]
    # Deterministic per team, different across teams and platforms.
    assert team_redis_password("s", "p", "fraud") == team_redis_password("s", "p", "fraud")
    assert len({team_redis_password("s", "p", "fraud"), team_redis_password("s", "p", "credit"),
                team_redis_password("s", "q", "fraud")}) == 3
