"""The real MLflow server (registry.mlflow), started exactly as Plinth's Deployment starts it, against a real
PostgreSQL and SeaweedFS's real S3 gateway (`weed`, tests/s3server.py), driven by MLflow's own Python client.

The server's command, arguments and environment, and its migration init container's, come from the real chart
(1.11.5) rendered with the values Plinth plans: the container `env`, the chart's ConfigMap and Secrets (`envFrom`)
and the mounted volumes. What differs from a cluster, and nothing else:

- the executables (`mlflow`, `python`) are those of $PLINTH_MLFLOW_PYTHON's environment, the image's MLflow
  version (the catalog's image tag) with the image's PostgreSQL driver (psycopg2) and boto3;
- PGHOST and PGPORT are the local server's (`localhost`, a free port), `--port` a free port, and
  MLFLOW_S3_ENDPOINT_URL the local S3 gateway;
- each mounted volume is a local directory (the CA Secret's `ca.crt`, the metrics emptyDir), and the paths in
  arguments and environment under a mount point point there;
- the values of the Secrets the pod reads: the database owner's password (the operator's `-app` Secret), the
  Flask key (the stack secret), and the object store's `artifacts` identity derived from a test seed exactly as
  the object store derives it.

TLS is on as planned (`verify-full` against the Cluster's CA): the local server has a certificate for `localhost`
signed by a test CA. The bucket is `<platform>-artifacts` with the `artifacts` identity's planned actions. The
client holds no S3 key: every artifact goes through the server (`--serve-artifacts`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from pgserver import Postgres, postgres_account
from s3server import Identity, S3Server, weed
from support import CHARTS_DIR, external_tool, free_port, make_tls, packaged_charts_helm, platform_spec
from plinth.catalog import CHARTS, ImageRef
from plinth.engine.charts import chart_archive, template
from plinth.engine.offline import plan
from plinth.modules.mlflow import DATABASE, DATABASE_NAME, ENV_CONFIGMAP, S3_IDENTITY, S3_SECRET, SERVICE, \
    s3_keys
from plinth.modules.mlflow import client_env as mlflow_client_env
from plinth.modules.objectstore import CA_SECRET
from plinth.modules.objectstore.identities import bucket, s3_config

pytestmark = pytest.mark.toolchain  # weed and helm: runs after the other tests (tests/conftest.py)

PLATFORM = "test"
SEED = "mlflow-server-seed"
KUBE = "1.34"
ARTIFACTS = bucket(PLATFORM, S3_IDENTITY)
START_SECONDS = 120
"""How long the server may take to answer /health (it loads its Flask app and checks the schema first)."""
MIGRATE_SECONDS = 300
CLIENT_SECONDS = 300
ADMIN = Identity("admin", ("Admin", "Read", "List", "Write", "Tagging"))
[_PLANNED] = [entry for entry in s3_config(PLATFORM, (), SEED)["identities"] if entry["name"] == S3_IDENTITY]
ARTIFACTS_RW = Identity(S3_IDENTITY, tuple(_PLANNED["actions"]), _PLANNED["credentials"][0]["accessKey"],
                        _PLANNED["credentials"][0]["secretKey"])


@pytest.fixture(scope="module")
def python() -> Path:
    """The MLflow environment's interpreter (absent: skip, before any server starts)."""
    return Path(external_tool("PLINTH_MLFLOW_PYTHON", "no MLflow environment: set PLINTH_MLFLOW_PYTHON to a Python "
                              f"with mlflow=={ImageRef.parse(CHARTS['mlflow'].images[0]).tag}, psycopg2-binary, "
                              "sqlalchemy<2.1, prometheus-flask-exporter and boto3 installed, in its own environment "
                              "(see .ci/run)"))


@pytest.fixture(scope="module")
def objects() -> tuple[dict, ...]:
    """The mlflow release of an on-prem dev platform with the object store and monitoring (`--expose-prometheus`),
    rendered from the real chart."""
    helm = packaged_charts_helm(f"MLflow's real chart and helm are needed to start the server as planned: "
                                f"packaged charts at {CHARTS_DIR} (or PLINTH_CHARTS_DIR) and helm "
                                "(tests/e2e/toolchain/build.sh, or PLINTH_HELM)")
    spec = platform_spec({"storage": {"objectStore": {"enabled": True}}, "monitoring": {"enabled": True},
                          "registry": {"mlflow": {"enabled": True}}})
    [release] = [r for r in plan(spec, "mlflow-server").resources
                 if r.type.endswith("helm.sh/v3:Release") and r.name == "mlflow"]
    return template(release, chart_archive(release, CHARTS_DIR), KUBE, helm)


class Pod:
    """The Deployment's pod as the chart rendered it, run as local processes: `secrets` stand for the Secrets
    it reads (name -> key -> value), `volumes` for its volumes (name -> local directory), `substitute` for the
    ConfigMap's and the container env's values that name cluster addresses (name -> local value)."""

    def __init__(self, objects: tuple[dict, ...], secrets_: dict[str, dict[str, str]], volumes: dict[str, Path],
                 substitute: dict[str, str], bin_dir: Path):
        [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == SERVICE]
        self.spec = deployment["spec"]["template"]["spec"]
        self.configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "ConfigMap"}
        rendered = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o["kind"] == "Secret"}
        # A Secret the chart renders: its keys as rendered (values are placeholders or absent in a plan).
        for name, data in rendered.items():
            assert sorted(data) == sorted(secrets_.get(name, {})), (name, sorted(data))
        self.secrets, self.volumes, self.substitute, self.bin_dir = secrets_, volumes, substitute, bin_dir

    def container(self, name: str) -> dict:
        [found] = [c for c in self.spec.get("initContainers", []) + self.spec["containers"] if c["name"] == name]
        return found

    def _local(self, container: dict, value: str) -> str:
        """A path under one of the container's mount points, moved to the volume's local directory."""
        for mount in container.get("volumeMounts") or []:
            for prefix in ("", "--expose-prometheus="):  # the one argument that names a mounted path
                point = prefix + mount["mountPath"]
                if value == point or value.startswith(point + "/"):
                    return prefix + str(self.volumes[mount["name"]]) + value[len(point):]
        return value

    def env(self, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            if "configMapRef" in source:
                env.update(self.configmaps[source["configMapRef"]["name"]])
            else:
                env.update(self.secrets[source["secretRef"]["name"]])
        for entry in container.get("env") or []:
            if "value" in entry:
                env[entry["name"]] = entry["value"]
            else:
                ref = entry["valueFrom"]["secretKeyRef"]
                env[entry["name"]] = self.secrets[ref["name"]][ref["key"]]
        env.update({k: v for k, v in self.substitute.items() if k in env})
        return {k: self._local(container, v) for k, v in env.items()}

    def command(self, container: dict, port_substitute: dict[str, str] | None = None) -> list[str]:
        command, *rest = container["command"]
        args = [*rest, *container.get("args", [])]
        args = [(port_substitute or {}).get(a, a) for a in args]
        # Kubernetes would expand `$(VAR)` in arguments; none is expected, so none is expanded here.
        assert [a for a in args if "$(" in a] == []
        return [str(self.bin_dir / command), *(self._local(container, a) for a in args)]

    def process_env(self, container: dict) -> dict[str, str]:
        return {"PATH": f"{self.bin_dir}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LC_ALL": "C.UTF-8",
                **self.env(container)}


def local_volumes(objects: tuple[dict, ...], secrets_: dict[str, dict[str, str]], work: Path) -> dict[str, Path]:
    """Each volume of the Deployment's pod as a local directory: a Secret or ConfigMap volume holds its items from
    `secrets_` (by name), an emptyDir is empty."""
    [deployment] = [o for o in objects if o["kind"] == "Deployment" and o["metadata"]["name"] == SERVICE]
    found = {}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        directory = found[volume["name"]] = work / "volumes" / volume["name"]
        directory.mkdir(parents=True)
        source = volume.get("secret") or volume.get("configMap")
        if source:
            data = secrets_[source.get("secretName") or source.get("name")]
            for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                (directory / item["path"]).write_text(data[item["key"]])
        else:
            assert "emptyDir" in volume, volume
    return found


@pytest.fixture(scope="module")
def database():
    """A PostgreSQL server with TLS and the planned database and owner (the operator's `-app` credentials)."""
    user = postgres_account()
    password = secrets.token_urlsafe(18)
    # Not under pytest's temp dir: that is private to the account running the tests, and the server may not be.
    with tempfile.TemporaryDirectory(prefix="plinth-mlflow-pg-") as scratch:
        run = Path(scratch)
        if user:
            os.chown(run, user.pw_uid, user.pw_gid)
        pg = Postgres(run / "data", run, user, {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "TZ": "UTC"})
        ca, cert, key = make_tls(run, user)
        pg.command("initdb", "-D", pg.data, "-U", "postgres", "--auth-local=trust", "--auth-host=reject",
                   "--no-instructions")
        with (pg.data / "postgresql.conf").open("a") as conf:
            conf.write(f"listen_addresses = 'localhost'\nunix_socket_directories = '{run}'\nfsync = off\n"
                       f"ssl = on\nssl_cert_file = '{cert}'\nssl_key_file = '{key}'\n")
        # Only TLS with a password from the network, as CloudNativePG's own rules for the application user.
        (pg.data / "pg_hba.conf").write_text(f"local all postgres trust\nhostssl {DATABASE_NAME} {DATABASE_NAME} "
                                             "localhost scram-sha-256\n")
        try:
            pg.start()
            pg.sql(f"CREATE ROLE {DATABASE_NAME} LOGIN PASSWORD '{password}'")
            pg.sql(f"CREATE DATABASE {DATABASE_NAME} OWNER {DATABASE_NAME}")
            yield pg, ca, {"username": DATABASE_NAME, "password": password}
        finally:
            pg.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with S3Server(weed(), tmp_path_factory.mktemp("seaweedfs"), ADMIN, [ARTIFACTS_RW], [ARTIFACTS]) as server:
        yield server


@pytest.fixture(scope="module")
def server(python, objects, database, s3, tmp_path_factory):
    """The migration init container, then the server container, as the chart rendered them."""
    pg, ca, owner = database
    work = tmp_path_factory.mktemp("mlflow")
    stand_ins = {
        f"{DATABASE}-app": owner,
        f"{DATABASE}-ca": {"ca.crt": ca.read_text()},
        S3_SECRET: s3_keys(SEED, PLATFORM),  # what Plinth's Secret holds: the keys the object store plans
        CA_SECRET: {"ca.crt": s3.ca.read_text()},  # the platform CA, as certs.trust_bundle leaves it
        f"{SERVICE}-flask-server-secret-key": {"MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_urlsafe(32)},
        f"{SERVICE}-env-secret": {},
    }
    volumes = local_volumes(objects, stand_ins, work)
    pod = Pod(objects, stand_ins, volumes,
              {"PGHOST": "localhost", "PGPORT": str(pg.port), "MLFLOW_S3_ENDPOINT_URL": s3.endpoint}, python.parent)
    # The chart's ConfigMap, as Plinth planned it.
    assert set(pod.configmaps[ENV_CONFIGMAP]) >= {"PGHOST", "PGPORT", "PGDATABASE"}

    with running(pod, work) as (url, command):
        yield url, python, pod, command, volumes


@contextlib.contextmanager
def running(pod: Pod, work: Path, init: tuple[str, ...] = ("db-migration",)):
    """The pod's init containers `init`, in order, then its server container, as local processes on a free port:
    yields (url, command)."""
    for name in init:
        step = pod.container(name)
        t = time.monotonic()
        done = subprocess.run(pod.command(step), env=pod.process_env(step), capture_output=True, text=True,
                              timeout=MIGRATE_SECONDS, cwd=work)
        assert done.returncode == 0, (name, done.stderr[-4000:])
        print(f"\n[mlflow] init container {name} {time.monotonic() - t:.1f}s")

    port = free_port()
    container = pod.container("mlflow")
    [planned_port] = [a for a in container["args"] if a.startswith("--port=")]
    command = pod.command(container, {planned_port: f"--port={port}"})
    log = work / "server.log"
    t = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=pod.process_env(container), cwd=work, stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"mlflow server exited {process.returncode}:\n{log.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() - t > START_SECONDS:
                pytest.fail(f"mlflow server not healthy within {START_SECONDS}s:\n"
                            f"{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.5)
        print(f"\n[mlflow] server healthy after {time.monotonic() - t:.1f}s")
        yield url, command
    finally:
        os.killpg(process.pid, 15)
        try:  # its workers finish open requests first, for up to 30 s: nothing is left to finish here
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(10)


CLIENT = r"""
import json, sys
import numpy as np, pandas as pd
import mlflow
from mlflow import MlflowClient

url, artifact = sys.argv[1:3]


class Scorer(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input["amount"] > 10


mlflow.set_tracking_uri(url)
experiment = mlflow.set_experiment("fraud-scoring")
frame = pd.DataFrame({"amount": np.arange(20, dtype=float), "label": np.arange(20) % 2})
dataset = mlflow.data.from_pandas(frame, name="transactions", targets="label")
with mlflow.start_run(experiment_id=experiment.experiment_id) as run:
    mlflow.log_params({"learning_rate": "0.1", "depth": "6"})
    for step, loss in enumerate([0.9, 0.5, 0.3]):
        mlflow.log_metric("loss", loss, step=step)
    mlflow.log_input(dataset, context="training")
    mlflow.log_artifact(artifact, artifact_path="notes")
    model = mlflow.pyfunc.log_model(name="scorer", python_model=Scorer(), pip_requirements=["pandas"])
    run_id = run.info.run_id
client = MlflowClient(url)
stored = client.get_run(run_id)
[inp] = stored.inputs.dataset_inputs
version = mlflow.register_model(model.model_uri, "fraud-scorer")
client.set_registered_model_alias("fraud-scorer", "champion", version.version)
champion = client.get_model_version_by_alias("fraud-scorer", "champion")
downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="notes/" + artifact.rsplit("/", 1)[-1])
print(json.dumps({
    "experiment_id": experiment.experiment_id, "run_id": run_id, "artifact_uri": stored.info.artifact_uri,
    "params": stored.data.params, "metrics": stored.data.metrics,
    "loss_history": [m.value for m in client.get_metric_history(run_id, "loss")],
    "dataset": {"name": inp.dataset.name, "digest": inp.dataset.digest, "expected_digest": dataset.digest,
                "context": [t.value for t in inp.tags if t.key == "mlflow.data.context"]},
    "model_id": model.model_id, "version": version.version,
    "champion": {"version": champion.version, "run_id": champion.run_id, "source": champion.source},
    "scored": mlflow.pyfunc.load_model("models:/fraud-scorer@champion").predict(frame).tolist(),
    "downloaded": open(downloaded).read(),
}))
"""


def test_a_run_an_artifact_and_a_registered_model_through_the_planned_server(server, database, s3, tmp_path):
    url, python, pod, command, volumes = server
    # The server as planned: the platform database, the artifacts bucket, proxied, with metrics.
    assert "--backend-store-uri=postgresql://" in command and "--serve-artifacts" in command
    assert f"--artifacts-destination=s3://{ARTIFACTS}/" in command
    env = pod.env(pod.container("mlflow"))
    assert (env["PGSSLMODE"], env["PGDATABASE"], env["PGUSER"]) == ("verify-full", DATABASE_NAME, DATABASE_NAME)
    artifact = tmp_path / "model-card.txt"
    artifact.write_text("fraud scorer trained on transactions\n")
    started = time.monotonic()
    # The client holds no S3 key, no endpoint and no CA: with the platform's client environment every artifact
    # goes through the server (which would otherwise hand out presigned URLs of the bucket itself).
    client_env = {"PATH": f"{python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
                  "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true",
                  **{k: v for k, v in mlflow_client_env().items() if k != "MLFLOW_TRACKING_URI"}}
    done = subprocess.run([str(python), "-c", CLIENT, url, str(artifact)], capture_output=True, text=True,
                          timeout=CLIENT_SECONDS, env=client_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    print(f"\n[mlflow] client {time.monotonic() - started:.1f}s")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    run_id, experiment_id = result["run_id"], result["experiment_id"]

    assert result["params"] == {"learning_rate": "0.1", "depth": "6"}
    assert result["metrics"] == {"loss": 0.3} and result["loss_history"] == [0.9, 0.5, 0.3]
    dataset = result["dataset"]
    assert dataset["name"] == "transactions" and dataset["context"] == ["training"]
    assert dataset["digest"] == dataset["expected_digest"] and len(dataset["digest"]) >= 8
    # The model's version 1, found by its alias, loads back from the registry (its files through the server).
    assert result["version"] == "1"
    assert result["champion"] == {"version": "1", "run_id": run_id, "source": f"models:/{result['model_id']}"}
    assert result["scored"] == [amount > 10 for amount in range(20)]
    assert result["downloaded"] == artifact.read_text()
    # Every file went through the server: it handed out no presigned URL of the bucket.
    server_log = next(iter(volumes.values())).parent.parent / "server.log"
    assert "/mlflow-artifacts/presigned/" not in server_log.read_text(errors="replace")

    # Proxied: the run's artifact URI is the server's, and the objects lie in the artifacts bucket under the
    # server's prefixes: the run's <experiment>/<run>/artifacts/, the logged model's <experiment>/models/<id>/.
    assert result["artifact_uri"] == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    key = f"{experiment_id}/{run_id}/artifacts/notes/model-card.txt"
    stored_objects = s3.objects(ARTIFACTS)
    assert stored_objects[key] == len(artifact.read_bytes())
    model_prefix = f"{experiment_id}/models/{result['model_id']}/artifacts/"
    assert f"{model_prefix}MLmodel" in stored_objects and f"{model_prefix}python_model.pkl" in stored_objects
    assert [k for k in stored_objects if k != key and not k.startswith(model_prefix)] == []
    stored = s3.request(ARTIFACTS_RW, "GET", ARTIFACTS, key)
    assert (stored.status, stored.body) == (200, artifact.read_bytes())

    # The rows are in the planned database, in tables its owner holds (the migration ran as that owner).
    pg = database[0]
    rows = pg.command("psql", "-X", "-q", "-A", "-t", "-h", pg.run, "-p", pg.port, "-U", "postgres", "-d",
                      DATABASE_NAME, "-c", "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM model_versions), "
                      "(SELECT tableowner FROM pg_tables WHERE tablename = 'runs')").stdout.strip()
    assert rows == f"1|1|{DATABASE_NAME}"
