"""The documented retraining example (examples/retraining): its WorkflowTemplate takes exactly the parameters the
platform's Sensor passes, and its training script, run against the real MLflow server as Plinth plans it
(tests/test_mlflow_server.py starts it), trains, logs its run and registers each result as a new version with the
alias `challenger`."""

from __future__ import annotations

import csv
import json
import random
import subprocess

import pytest
import yaml
from test_mlflow_server import database, objects, python, s3, server  # noqa: F401  (fixtures)

from support import ROOT
from plinth.modules.mlflow import client_env as mlflow_client_env
from plinth.modules.pipelines.events import PARAMETERS

pytestmark = pytest.mark.toolchain  # the MLflow server's PostgreSQL, weed and helm

EXAMPLE = ROOT / "examples" / "retraining"
MODEL = "fraud-scorer"
CLIENT_SECONDS = 300

READ_BACK = r"""
import json, sys
from mlflow import MlflowClient
client = MlflowClient(sys.argv[1])
challenger = client.get_model_version_by_alias(sys.argv[2], "challenger")
run = client.get_run(challenger.run_id)
versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{sys.argv[2]}'"))
print(json.dumps({"version": challenger.version, "run_id": challenger.run_id, "tags": challenger.tags,
                  "versions": versions, "metrics": run.data.metrics, "run_tags": run.data.tags,
                  "alert": json.load(open(client.download_artifacts(challenger.run_id, "alert.json", sys.argv[3]))),
                  "reference": open(client.download_artifacts(challenger.run_id, "data/reference.csv",
                                                              sys.argv[3])).read().splitlines()}))
"""


def test_the_template_takes_the_sensors_parameters():
    template = yaml.safe_load((EXAMPLE / "workflowtemplate.yaml").read_text())
    assert template["kind"] == "WorkflowTemplate" and template["metadata"]["name"] == "retrain-scorer"
    assert template["spec"]["serviceAccountName"] == "argo-workflow"
    names = [p["name"] for p in template["spec"]["arguments"]["parameters"]]
    assert names[:len(PARAMETERS)] == [name for name, _ in PARAMETERS]
    [step] = template["spec"]["templates"]
    assert step["container"]["command"] == ["python", "/script/train.py"]
    context = step["container"]["securityContext"]
    assert context["runAsNonRoot"] is True and context["capabilities"] == {"drop": ["ALL"]}


def _data(path) -> None:
    """A small separable dataset: label 1 when the two features sum above 1."""
    rng = random.Random(0)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["amount", "velocity", "label"])
        for _ in range(200):
            a, b = rng.random(), rng.random()
            writer.writerow([f"{a:.4f}", f"{b:.4f}", int(a + b > 1)])


def test_the_script_registers_each_retrained_model_as_the_challenger(server, tmp_path):  # noqa: F811
    url, mlflow_python, *_ = server
    data = tmp_path / "train.csv"
    _data(data)
    # A generated retraining template's MLflow environment (every artifact through the server), the local server.
    env = {"PATH": f"{mlflow_python.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LC_ALL": "C.UTF-8",
           **mlflow_client_env(), "MLFLOW_TRACKING_URI": url, "MLFLOW_ENABLE_TELEMETRY": "false",
           "DO_NOT_TRACK": "true"}
    alert = {"status": "firing", "labels": {"alertname": "ModelDrift", "model": "scorer", "version": "3"}}
    results = []
    for served in ("3", "4"):
        done = subprocess.run([str(mlflow_python), str(EXAMPLE / "train.py"), f"--registered-model={MODEL}",
                               f"--data={data}", f"--served-version={served}", "--alertname=ModelDrift",
                               f"--alert={json.dumps(alert)}"],
                              capture_output=True, text=True, timeout=CLIENT_SECONDS, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-4000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    # Each run a new version; the alias follows the newest.
    assert [r["version"] for r in results] == ["1", "2"]
    assert all(r["accuracy"] >= 0.9 for r in results), results
    done = subprocess.run([str(mlflow_python), "-c", READ_BACK, url, MODEL, str(tmp_path / "read")],
                          capture_output=True, text=True, timeout=CLIENT_SECONDS, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["version"] == "2" and found["run_id"] == results[1]["run_id"] and found["versions"] == [1, 2]
    assert found["tags"] == {"plinth.dev/retrained-from": "4"}
    assert found["metrics"] == {"accuracy": results[1]["accuracy"]}
    assert found["run_tags"]["plinth.dev/trigger"] == "ModelDrift"
    assert found["alert"] == alert
    # The training rows' features, for the drift job's `reference: run:data/reference.csv`.
    assert found["reference"][0] == "amount,velocity" and len(found["reference"]) == 1 + 150
