"""Registry-backed serving against the REAL MLflow server (started as planned, tests/test_mlflow_server.py's
fixtures: one server for this module): the planned init step fetches exactly a registered version's files (and a
real Bento per track, `bentoml serve` from $PLINTH_SERVING_PYTHON's environment, serves exactly them), `plinth
lineage` traces every served track to its run, params, metrics and datasets, `plinth promote` moves the spec
and the registry's aliases together, and examples/promotion moves them after a promotion's pull request is merged.

MLflow's own client (in $PLINTH_MLFLOW_PYTHON's environment) logs the runs and registers the versions; without
that environment the module skips, like the server test.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import spec_document
from test_mlflow_server import database, objects, python, s3, server  # noqa: F401  (module-scoped: one server)
from test_drift_job import PROGRAM as DRIFT_PROGRAM
from test_drift_job import table
from test_serving import PLATFORM, TRITON
from test_serving import objects as objects_of
from plinth.engine.offline import plan
from plinth.spec.models import PlatformSpec

pytestmark = pytest.mark.toolchain  # weed and helm (the MLflow server's fixtures): runs after the other tests

CLIENT_SECONDS = 300
CLI_SECONDS = 120

REGISTER = r"""
import json, os, sys, tempfile
import numpy as np, pandas as pd
import mlflow
from mlflow import MlflowClient

url, name, reference = sys.argv[1:4]
mlflow.set_tracking_uri(url)
client = MlflowClient(url)
experiment = mlflow.set_experiment(name)
frame = pd.DataFrame({"amount": np.arange(20, dtype=float), "label": np.arange(20) % 2})
dataset = mlflow.data.from_pandas(frame, name="transactions", targets="label")


def repository(weights):
    # A Triton model repository: what the init step fetches and Triton serves.
    root = tempfile.mkdtemp()
    os.makedirs(f"{root}/scorer/1")
    with open(f"{root}/scorer/config.pbtxt", "w") as f:
        f.write('name: "scorer"\nbackend: "python"\n')
    with open(f"{root}/scorer/1/model.txt", "w") as f:
        f.write(weights)
    return root


runs = {}
for key, with_dataset in (("a", True), ("b", False)):
    tags = {"mlflow.source.git.commit": f"{key * 40}", "plinth.feature_service": f"fraud_features_v{key}"}
    with mlflow.start_run(experiment_id=experiment.experiment_id, tags=tags) as run:
        mlflow.log_params({"learning_rate": "0.1" if key == "a" else "0.05", "depth": "6"})
        mlflow.log_metric("auc", 0.91 if key == "a" else 0.93)
        if with_dataset:
            mlflow.log_input(dataset, context="training")
            mlflow.log_artifact(reference, artifact_path="data")  # the drift job's reference
        mlflow.log_artifacts(repository(f"weights-{key}\n"), artifact_path="triton")
    runs[key] = run.info.run_id
client.create_registered_model(name)
one = client.create_model_version(name, f"runs:/{runs['a']}/triton", runs["a"])
two = client.create_model_version(name, f"runs:/{runs['b']}/triton", runs["b"])
# A version registered from files alone: no run behind it.
three = client.create_model_version(name, client.get_model_version(name, "1").source)
client.set_registered_model_alias(name, "champion", one.version)
client.set_registered_model_alias(name, "challenger", two.version)
print(json.dumps({"runs": runs, "versions": [one.version, two.version, three.version],
                  "digest": dataset.digest}))
"""


def client_env(python_: Path, home: Path) -> dict[str, str]:
    return {"PATH": f"{python_.parent}:/usr/bin:/bin", "HOME": str(home), "LC_ALL": "C.UTF-8",
            "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true"}


def register(running: tuple, home: Path, name: str) -> dict:
    """Two runs (one with an input dataset and data/reference.csv, one without) registered as versions 1 and 2 of
    `name`, a version 3 without a run; aliases champion -> 1, challenger -> 2."""
    url, python_, *_ = running
    reference = table(home / "reference.csv", seed=1)
    done = subprocess.run([str(python_), "-c", REGISTER, url, name, reference], capture_output=True, text=True,
                          timeout=CLIENT_SECONDS, env=client_env(python_, home), cwd=home)
    assert done.returncode == 0, done.stderr[-4000:]
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "reference": reference}


@pytest.fixture(scope="module")
def registered(server, tmp_path_factory):  # noqa: F811  (the imported fixture)
    return register(server, tmp_path_factory.mktemp("client"), "fraud-scorer")


SCORER = {**{k: v for k, v in TRITON.items() if k not in ("modelRepository", "repositoryCidrs")},
          "registry": {"model": "fraud-scorer"}, "stable": {"version": "1", "replicas": 2},
          "canary": {"version": "challenger", "weight": 10}, "shadow": {"version": "3"}}
MLFLOW = {"registry": {"mlflow": {"enabled": True}}, "storage": {"objectStore": {"enabled": True}},
          "secrets": {"vault": {"enabled": True}}}  # the teams' keys to the store come from Vault


def document(models: list[dict]) -> dict:
    """The serving test's platform with MLflow, serving `models` (replacing its own)."""
    found = spec_document({k: v for k, v in PLATFORM.items() if k != "serving"}, MLFLOW)
    found["serving"] = {**PLATFORM["serving"], "models": models}
    return found


def blueprint(directory: Path, models: list[dict]) -> Path:
    path = directory / "platform.yaml"
    path.write_text(json.dumps(document(models), indent=1))  # JSON is YAML
    return path


def plinth(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from plinth.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=CLI_SECONDS,
                          env={**os.environ, "NO_COLOR": "1"})


def init_step(pod: dict, running: tuple, mount: str, local: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """A planned init step, run against the real server: only the Service's address and the volume's path
    (`mount`, here `local`) are local. Without MLflow's sign-on the team's credentials Secret is absent (its keys
    are optional)."""
    url, python_, *_ = running
    [step] = pod["initContainers"]
    env = {e["name"]: e["value"] for e in step["env"] if "value" in e}
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc"
    env |= {"MLFLOW_TRACKING_URI": url, "HOME": str(tmp_path), "PATH": f"{python_.parent}:/usr/bin:/bin"}
    command = [str(python_.parent / step["command"][0]),
               *(str(local) if a == mount else a for a in step["command"][1:])]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=CLIENT_SECONDS, cwd=tmp_path)


def run_fetch(pod: dict, running: tuple, models: Path, tmp_path: Path) -> None:
    """The planned fetch of a registered version's files into `models`."""
    done = init_step(pod, running, "/models", models, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_planned_init_step_fetches_exactly_the_registered_version(server, registered, tmp_path):  # noqa: F811
    spec = PlatformSpec.model_validate(document([SCORER]))
    served = objects_of(plan(spec, "registry-server"))
    for track, weights in (("stable", "weights-a\n"), ("canary", "weights-b\n"), ("shadow", "weights-a\n")):
        pod = served[("Deployment", "fraud", f"scorer-{track}")].inputs["spec"]["template"]["spec"]
        models = tmp_path / track
        run_fetch(pod, server, models, tmp_path)
        # The version's files are the model repository Triton is pointed at.
        assert pod["containers"][0]["args"][0] == "--model-repository=/models"
        assert sorted(str(p.relative_to(models)) for p in models.rglob("*")) == [
            "scorer", "scorer/1", "scorer/1/model.txt", "scorer/config.pbtxt"]
        assert (models / "scorer/1/model.txt").read_text() == weights


DRIFTING = {**SCORER, "stable": {"version": "champion"}, "canary": None, "shadow": None,
            "drift": {"reference": "run:data/reference.csv", "window": "pvc://fraud-logs/window.csv"}}


def drift_job(model: dict) -> dict:
    """The pod of `model`'s planned drift job."""
    spec = PlatformSpec.model_validate(document([model]))
    job = objects_of(plan(spec, "registry-server"))[("CronJob", "fraud", f"{model['name']}-drift")]
    return job.inputs["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_the_drift_job_compares_with_the_reference_of_the_served_versions_run(server, registered, tmp_path):  # noqa: F811
    """The planned init step resolves the stable release (alias champion -> version 1) to its run and downloads
    that run's data/reference.csv; the drift program, with the planned arguments, reads it: a window like it scores
    0, a shifted one above the threshold."""
    from support import drift_python

    pod = drift_job(DRIFTING)
    reference = tmp_path / "reference"
    done = init_step(pod, server, "/reference", reference, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip().splitlines()[-1] == (
        f"reference: data/reference.csv of run {registered['runs']['a']} (version 1 of fraud-scorer, champion)")
    assert (reference / "reference.csv").read_bytes() == Path(registered["reference"]).read_bytes()
    [job] = pod["containers"]
    for shift, expected in ((0.0, 0.0), (1.0, 0.75)):
        window = table(tmp_path / f"window-{shift}.csv", seed=3, shift=shift)
        out = tmp_path / f"drift-{shift}.prom"
        args = [a.replace("/reference/", f"{reference}/").replace("/data/fraud-logs/window.csv", window)
                for a in job["args"] if not a.startswith("--serve=")]
        done = subprocess.run([drift_python(), str(DRIFT_PROGRAM), *args, f"--out={out}"], capture_output=True,
                              text=True, timeout=CLIENT_SECONDS)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"plinth_model_drift_score{{model=\"scorer\",team=\"fraud\"}} {expected:g}\n" in out.read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"stable": {"version": "3"}}, "reference: version 3 of fraud-scorer has no run: no data/reference.csv to "
     "compare with"),
    ({"drift": {**DRIFTING["drift"], "reference": "run:data/train.parquet"}},
     "reference: run {run} (version 1 of fraud-scorer) has no file data/train.parquet; its artifacts there: "
     "data/reference.csv"),
    ({"stable": {"version": "retired"}}, "reference: fraud-scorer retired: INVALID_PARAMETER_VALUE: Registered "
     "model alias retired not found."),
], ids=["version-without-run", "no-such-artifact", "no-such-alias"])
def test_the_reference_fetch_names_what_is_missing(server, registered, tmp_path, change, message):  # noqa: F811
    done = init_step(drift_job({**DRIFTING, **change}), server, "/reference", tmp_path / "reference", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == message.format(run=registered["runs"]["a"])
    assert not (tmp_path / "reference").exists()


RANKER = {"name": "ranker", "team": "fraud", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker:2.0.1",
          "registry": {"model": "fraud-scorer"}, "stable": {"version": "champion"},
          "canary": {"version": "2", "weight": 10}}
BENTO_SECONDS = 240


def test_a_registered_bento_serves_exactly_the_fetched_version(server, registered, tmp_path):  # noqa: F811
    """The planned init step fetches each track's version, then a real `bentoml serve` per track, with the planned
    server's environment ($PLINTH_MODEL_DIR), loads it and answers with it."""
    from support import free_port, serving_python
    from test_verify import Server

    python = serving_python()
    spec = PlatformSpec.model_validate(document([RANKER]))
    served = objects_of(plan(spec, "registry-server"))
    running = {}
    try:
        for track, weights in (("stable", "weights-a\n"), ("canary", "weights-b\n")):  # champion -> 1, then 2
            pod = served[("Deployment", "fraud", f"ranker-{track}")].inputs["spec"]["template"]["spec"]
            models = tmp_path / track
            run_fetch(pod, server, models, tmp_path)
            [bento] = pod["containers"]
            env = {e["name"]: str(models) if e["value"] == "/models" else e["value"] for e in bento["env"]}
            assert env == {"PLINTH_MODEL_DIR": str(models)}
            port = free_port()
            running[track] = (Server(
                f"bentoml ranker-{track}", [str(Path(python).parent / "bentoml"), "serve",
                                            "registered_bento:Registered", "--host", "127.0.0.1", "--port", str(port)],
                port, bento["readinessProbe"]["httpGet"]["path"], tmp_path / f"ranker-{track}.log",
                {**os.environ, **env, "BENTOML_HOME": str(tmp_path / f"bentoml-{track}"),
                 "BENTOML_DO_NOT_TRACK": "True", "PYTHONDONTWRITEBYTECODE": "1"},
                Path(__file__).parent / "verify"), weights)
        started = time.monotonic()
        while not all(s.is_ready() for s, _ in running.values()):
            assert time.monotonic() - started < BENTO_SECONDS, "the Bentos did not get ready"
            time.sleep(0.5)
        for track, (bento_server, weights) in running.items():
            conn = http.client.HTTPConnection("127.0.0.1", bento_server.port, timeout=30)
            conn.request("POST", "/weights", body="{}", headers={"Content-Type": "application/json"})
            answer = conn.getresponse()
            assert (answer.status, json.loads(answer.read())) == (200, {"weights": weights}), track
    finally:
        for bento_server, _ in running.values():
            bento_server.stop()


def test_lineage_traces_every_served_track_and_reports_what_is_missing(server, registered, tmp_path):  # noqa: F811
    url = server[0]
    other = {**SCORER, "name": "scorer-eu", "gpu": 0, "stable": {"version": "champion"}, "canary": None,
             "shadow": {"version": "9"}}
    bento = {"name": "ranker", "team": "search", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker",
             "stable": {"version": "1.2.0"}}
    path = blueprint(tmp_path, [SCORER, other, bento])
    done = plinth("lineage", str(path), "--url", url, "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    tracks = {(t["model"], t["track"]): t for t in report["tracks"]}
    assert list(tracks) == [("scorer", "stable"), ("scorer", "canary"), ("scorer", "shadow"),
                            ("scorer-eu", "stable"), ("scorer-eu", "shadow")]
    run_a, run_b = registered["runs"]["a"], registered["runs"]["b"]
    stable = tracks[("scorer", "stable")]
    assert (stable["resolved_version"], stable["run_id"], stable["commit"], stable["feature_service"]) == (
        "1", run_a, "a" * 40, "fraud_features_va")
    assert stable["params"] == {"depth": "6", "learning_rate": "0.1"} and stable["metrics"] == {"auc": 0.91}
    assert stable["datasets"] == [{"name": "transactions", "digest": registered["digest"], "context": "training",
                                   "source_type": "code"}]
    assert stable["findings"] == [] and stable["error"] == ""
    # An alias resolves to the version it names now; the same version is the same lineage.
    canary, eu = tracks[("scorer", "canary")], tracks[("scorer-eu", "stable")]
    assert (canary["version"], canary["resolved_version"], canary["run_id"]) == ("challenger", "2", run_b)
    assert canary["findings"] == [{"rule": "run-without-dataset", "message": f"run {run_b} logged no input dataset"}]
    assert (eu["resolved_version"], eu["run_id"], eu["datasets"]) == ("1", run_a, stable["datasets"])
    assert tracks[("scorer", "shadow")]["findings"] == [
        {"rule": "served-version-without-run", "message": "version 3 records no run"}]
    assert tracks[("scorer-eu", "shadow")]["findings"] == [
        {"rule": "served-version-not-registered", "message": "version '9' of registered model 'fraud-scorer' does "
         "not exist in MLflow (Model Version (name=fraud-scorer, version=9) not found)"}]
    assert report["not_registered"] == ["search/ranker"] and report["passed"] is False
    assert report["spec"]["commit"] is None  # a file outside any git checkout
    assert done.stderr.strip().endswith("5 tracks traced in " + done.stderr.split(" traced in ")[1].split("s,")[0]
                                        + "s, 3 findings")


def test_lineage_finds_each_traced_run_without_the_drift_reference(server, registered, tmp_path):  # noqa: F811
    """drift.reference run:data/reference.csv: run a has the file (stable, version 1), run b not (the canary,
    challenger -> 2): the job would fail on it once promoted. Version 3 has no run, which is its finding."""
    path = blueprint(tmp_path, [{**SCORER, "drift": DRIFTING["drift"]}])
    done = plinth("lineage", str(path), "--url", server[0], "--json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    findings = {t["track"]: [f["rule"] for f in t["findings"]] for t in json.loads(done.stdout)["tracks"]}
    assert findings == {"stable": [], "canary": ["run-without-dataset", "run-without-drift-reference"],
                        "shadow": ["served-version-without-run"]}
    text = plinth("lineage", str(path), "--url", server[0], cwd=tmp_path).stdout
    assert (f"  finding [run-without-drift-reference]: run {registered['runs']['b']} has no file data/reference.csv: "
            "the drift job (drift.reference run:data/reference.csv) fails on this version once it is stable") in text


def test_lineage_of_a_fully_traced_model_passes_and_reads_as_text(server, registered, tmp_path):  # noqa: F811
    url = server[0]
    path = blueprint(tmp_path, [{**SCORER, "stable": {"version": "champion"}, "canary": None, "shadow": None}])
    done = plinth("lineage", str(path), "--url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    run_a = registered["runs"]["a"]
    assert lines[:2] == [f"plinth lineage {url}", "spec commit: unknown (not in git)"]
    assert lines[2:9] == [
        "", "fraud/scorer stable: fraud-scorer champion -> version 1",
        f"  run: {run_a} (experiment {lines[4].split('(experiment ')[1]}",
        f"  commit: {'a' * 40}  feature service: fraud_features_va",
        "  params: depth=6, learning_rate=0.1", "  metrics: auc=0.91",
        f"  dataset: transactions digest {registered['digest']} (training)"]
    assert lines[-1].startswith("1 track traced in ")


def test_lineage_bad_input_and_an_unreachable_server(tmp_path):
    path = blueprint(tmp_path, [SCORER])
    done = plinth("lineage", str(path), "--url", "ftp://x", "--timeout", "0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "--timeout: expected seconds above 0 and at most 3600, got 0",
        "--url: 'ftp://x': expected http(s)://HOST[:PORT][/PATH], e.g. http://127.0.0.1:5000", "2 errors"]
    done = plinth("lineage", str(path), cwd=tmp_path)
    assert (done.returncode, done.stderr.splitlines()[0]) == (2, "--url: MLflow has no host name on the Gateway "
                                                              "(registry.mlflow.hostname) and no URL was given: pass "
                                                              "--url, e.g. http://127.0.0.1:5000 (a port-forward to "
                                                              "svc/mlflow in namespace mlflow)")
    from support import free_port

    done = plinth("lineage", str(path), "--url", f"http://127.0.0.1:{free_port()}", "--json", "--timeout", "5",
                  cwd=tmp_path)
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert {t["error"].split(":")[0] for t in report["tracks"]} == {"ConnectionRefusedError"}
    assert done.stderr.strip().endswith("3 not readable from MLflow")


# --- plinth promote ------------------------------------------------------------------------------------

PROMO_BASE = """\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata: {name: promo, environment: dev, costCenter: cc-1}
target: {type: existing}
rbac: {platformAdminGroup: admins}
network:
  cilium: {enabled: true, apiServer: {host: api.k8s.internal}}
  loadBalancer: {ranges: [172.31.255.240/29]}
  gateway: {hostname: "*.models.internal"}
certificates: {certManager: {enabled: true}}
monitoring: {enabled: true}
storage: {objectStore: {enabled: true}}
secrets: {vault: {enabled: true}}   # the team's keys to the store come from Vault
registry: {mlflow: {enabled: true}}
teams:
  - name: fraud
serving:
  hostname: serving.models.internal
  models:
    - name: scorer
      team: fraud
      runtime: triton
      registry: {model: promo-scorer}
      stable: {version: "1"}
"""
PROD = """\
# Production: what runs for customers.
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    metadata: {name: promo-prod}   # its own name
"""


def staging(version: str) -> str:
    return ("config:\n  plinth:blueprint: blueprints/base.yaml\n  plinth:overrides:\n    serving:\n      models:\n"
            f"        - name: scorer\n          stable: {{version: \"{version}\"}}\n")


def aliases_of(url: str, name: str) -> dict[str, str]:
    from plinth.lineage import client
    from plinth.promote import aliases

    return aliases(client(url, 10), name)


def test_promote_moves_the_spec_and_the_aliases_together_and_refuses_a_disagreement(server, tmp_path):  # noqa: F811
    url = server[0]
    register(server, tmp_path, "promo-scorer")
    root = Path(__file__).resolve().parent.parent
    (tmp_path / "Pulumi.yaml").write_text((root / "Pulumi.yaml").read_text())
    for name, text in {"blueprints/base.yaml": PROMO_BASE, "stacks/Pulumi.prod.yaml": PROD,
                       "stacks/Pulumi.staging.yaml": staging("3")}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    prod = tmp_path / "stacks/Pulumi.prod.yaml"

    # The registry has a challenger (version 2) that prod does not serve: they disagree, nothing changes.
    done = plinth("promote", "scorer", "--from", "staging", "--to", "prod", "--canary", "20", "--url", url,
                  cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "stacks/Pulumi.prod.yaml: not changed: the registry and the spec already disagree: alias 'challenger' of "
        "'promo-scorer' names version 2, but the track it stands for serves nothing; set the alias or the spec "
        "right first", "1 error"]
    assert prod.read_text() == PROD and aliases_of(url, "promo-scorer") == {"champion": "1", "challenger": "2"}

    # Staging's stable (2) is the registry's challenger already: prod gets it as its canary, comments kept.
    (tmp_path / "stacks/Pulumi.staging.yaml").write_text(staging("2"))
    done = plinth("promote", "scorer", "--from", "staging", "--to", "prod", "--canary", "20", "--url", url,
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert prod.read_text() == PROD + (
        '    serving:\n      models:\n        - name: scorer\n          canary: {version: "2", weight: 20}\n'), \
        prod.read_text()
    assert "+ Deployment fraud/scorer-canary" in done.stdout
    assert aliases_of(url, "promo-scorer") == {"champion": "1", "challenger": "2"}

    # `canary promote`: champion follows the canary's version, challenger (that version) goes.
    done = plinth("canary", "promote", "scorer", "--stack", "prod", "--url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["wrote stacks/Pulumi.prod.yaml", "alias champion of promo-scorer -> version 2",
                                        "alias challenger of promo-scorer removed"]
    assert aliases_of(url, "promo-scorer") == {"champion": "2"}

    # A new canary: challenger points at it.
    (tmp_path / "stacks/Pulumi.staging.yaml").write_text(staging("3"))
    done = plinth("promote", "scorer", "--from", "staging", "--to", "prod", "--canary", "10", "--url", url,
                  cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["wrote stacks/Pulumi.prod.yaml", "alias challenger of promo-scorer -> "
                                        "version 3"]
    assert aliases_of(url, "promo-scorer") == {"champion": "2", "challenger": "3"}

    # Straight to stable: the canary of that version goes, champion moves, challenger (that version) goes.
    done = plinth("promote", "scorer", "--from", "staging", "--to", "prod", "--url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    from plinth.spec.load import load_stack_spec

    served = load_stack_spec(tmp_path, "prod").serving.models[0]
    assert (served.stable.version, served.canary) == ("3", None)
    assert aliases_of(url, "promo-scorer") == {"champion": "3"}
    assert prod.read_text().startswith(PROD)


def test_the_promotion_example_moves_the_aliases_after_the_merge(server, tmp_path):  # noqa: F811
    """examples/promotion: the request opens the pull request and leaves the registry alone; after the merge,
    after-merge.sh replays the promotion on the merged commit's parent, the spec the registry agrees with, and the
    aliases follow (plinth promote on the merged spec itself would find them disagreeing)."""
    import shutil

    url, name = server[0], "gitops-scorer"
    (tmp_path / "client").mkdir()
    register(server, tmp_path / "client", name)  # champion -> 1, challenger -> 2
    work, remote, tools = tmp_path / "work", tmp_path / "remote.git", tmp_path / "bin"
    root = Path(__file__).resolve().parent.parent
    for path, text in {"Pulumi.yaml": (root / "Pulumi.yaml").read_text(),
                       "blueprints/base.yaml": PROMO_BASE.replace("promo-scorer", name),
                       "stacks/Pulumi.prod.yaml": PROD, "stacks/Pulumi.staging.yaml": staging("2")}.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    tools.mkdir()
    (tools / "gh").write_text("#!/bin/sh\nexit 0\n")  # the pull request itself: tests/test_promotion_example.py
    (tools / "gh").chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHON": sys.executable, "NO_COLOR": "1", "PULUMI_HOME": str(tmp_path / "pulumi-home"),
           **{f"GIT_{who}_{what}": value for who in ("AUTHOR", "COMMITTER")
              for what, value in (("NAME", "Promoter"), ("EMAIL", "promoter@example.com"))}}
    env.pop("MLFLOW_URL", None)

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=work, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def script(name_: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(root / "examples" / "promotion" / name_), *args], cwd=work, capture_output=True,
                              text=True, timeout=CLI_SECONDS * 3, env={**env, **extra})

    assert shutil.which("git")
    subprocess.run(["git", "init", "--quiet", "--bare", "--initial-branch=main", str(remote)], check=True)
    git("init", "--quiet", "--initial-branch=main")
    git("add", ".")
    git("commit", "--quiet", "-m", "The platform")
    git("remote", "add", "origin", str(remote))
    git("push", "--quiet", "origin", "main")

    done = script("promote-pr.sh", "scorer", "staging", "prod")
    assert done.returncode == 0, done.stderr
    assert aliases_of(url, name) == {"champion": "1", "challenger": "2"}  # the request leaves the registry alone
    before = git("rev-parse", "main").strip()
    git("push", "--quiet", "origin", "promote/prod/scorer-2-stable:main")
    git("fetch", "--quiet", "origin")
    after = git("rev-parse", "origin/main").strip()

    # On the merged spec, prod serves 2 while champion still names 1: promote itself refuses to move them.
    direct = plinth("promote", "scorer", "--from", "staging", "--to", "prod", "--url", url, cwd=work)
    assert direct.returncode == 2 and "already disagree: alias 'champion'" in direct.stderr
    merged = script("after-merge.sh", before, after, MLFLOW_URL=url)
    assert merged.returncode == 0, merged.stderr
    assert merged.stderr.splitlines() == ["wrote stacks/Pulumi.prod.yaml", f"alias champion of {name} -> version 2",
                                          f"alias challenger of {name} removed"]
    assert aliases_of(url, name) == {"champion": "2"}
    assert git("status", "--porcelain") == ""
    # Again (a rerun of the job): nothing left to move.
    again = script("after-merge.sh", before, after, MLFLOW_URL=url)
    assert (again.returncode, again.stderr) == (0, "wrote stacks/Pulumi.prod.yaml\n"), again.stderr
    assert aliases_of(url, name) == {"champion": "2"}
