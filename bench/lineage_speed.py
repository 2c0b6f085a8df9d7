"""Benchmark `plinth lineage` for 100 served models against a real MLflow server.

The server is MLflow's own (`mlflow server` of $PLINTH_MLFLOW_PYTHON's environment, the catalog's MLflow
version) on a SQLite store with local proxied artifacts, on 127.0.0.1. MLflow's client logs one run per model
(params, a metric, an input dataset, the source commit) and registers it as version 1 with alias `champion`; the
spec serves each model's stable at `1` and a canary at `champion`: 200 tracks, 200 version reads and 100 run
reads. Prints the seconds of the lineage (best of --repeat) and of the interpreter-included CLI run.

Usage: PLINTH_MLFLOW_PYTHON=.venv-mlflow/bin/python python bench/lineage_speed.py [--models 100] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

REGISTER = r"""
import sys
import numpy as np, pandas as pd
import mlflow
from mlflow import MlflowClient

url, count = sys.argv[1], int(sys.argv[2])
mlflow.set_tracking_uri(url)
client = MlflowClient(url)
experiment = mlflow.set_experiment("bench")
frame = pd.DataFrame({"amount": np.arange(20, dtype=float), "label": np.arange(20) % 2})
dataset = mlflow.data.from_pandas(frame, name="transactions", targets="label")
for i in range(count):
    with mlflow.start_run(experiment_id=experiment.experiment_id,
                          tags={"mlflow.source.git.commit": f"{i:040x}"}) as run:
        mlflow.log_params({"learning_rate": "0.1", "depth": str(i % 8)})
        mlflow.log_metric("auc", 0.9)
        mlflow.log_input(dataset, context="training")
    name = f"model-{i:03d}"
    client.create_registered_model(name)
    version = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias(name, "champion", version.version)
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spec_file(directory: Path, count: int) -> Path:
    from support import spec_document

    models = [{"name": f"model-{i:03d}", "team": f"team-{i % 10}", "runtime": "triton", "cpu": "100m",
               "memory": "256Mi", "registry": {"model": f"model-{i:03d}"}, "stable": {"version": "1"},
               "canary": {"version": "champion", "weight": 10}} for i in range(count)]
    teams = [{"name": f"team-{t}", "quota": {"cpu": "100", "memory": "1000Gi"}} for t in range(10)]
    document = spec_document({
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}}, "monitoring": {"enabled": True},
        "storage": {"objectStore": {"enabled": True}}, "registry": {"mlflow": {"enabled": True}},
        "secrets": {"vault": {"enabled": True}},  # the teams' keys to the store come from Vault
        "serving": {"hostname": "serving.models.plinth.internal", "models": models}}, teams=teams)
    path = directory / "platform.yaml"
    path.write_text(json.dumps(document, indent=1))  # JSON is YAML
    return path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    python = os.environ.get("PLINTH_MLFLOW_PYTHON")
    if not python:
        sys.exit("set PLINTH_MLFLOW_PYTHON to the MLflow environment's Python (see .ci/run)")
    from plinth.lineage import lineage
    from plinth.spec.load import load_spec

    env = {"PATH": f"{Path(python).parent}:/usr/bin:/bin", "HOME": tempfile.gettempdir(), "LC_ALL": "C.UTF-8",
           "MLFLOW_ENABLE_TELEMETRY": "false", "DO_NOT_TRACK": "true"}
    with tempfile.TemporaryDirectory() as tmp:
        work, port = Path(tmp), free_port()
        server = subprocess.Popen(
            [str(Path(python).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
             "--artifacts-destination", str(work / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1",
             "--port", str(port), "--workers", "2"],
            env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=5):
                        break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        sys.exit("the MLflow server did not start")
                    time.sleep(0.5)
            started = time.perf_counter()
            subprocess.run([python, "-c", REGISTER, url, str(opts.models)], env=env, cwd=work, check=True,
                           capture_output=True, timeout=1800)
            print(f"registered {opts.models} models in {time.perf_counter() - started:.1f}s")
            path = spec_file(work, opts.models)
            spec = load_spec(path)
            best, report = float("inf"), None
            for _ in range(opts.repeat):
                started = time.perf_counter()
                report = lineage(spec, url)
                best = min(best, time.perf_counter() - started)
            assert report is not None and report.passed and len(report.tracks) == 2 * opts.models, report
            started = time.perf_counter()
            subprocess.run([str(Path(sys.executable).parent / "plinth"), "lineage", str(path), "--url", url,
                            "--json"], check=True, capture_output=True, cwd=work, timeout=600)
            cli = time.perf_counter() - started
            print(f"lineage of {opts.models} served models ({len(report.tracks)} tracks): {best:.2f}s "
                  f"(best of {opts.repeat}); the CLI, interpreter and spec load included: {cli:.2f}s")
        finally:
            os.killpg(server.pid, 15)
            server.wait(30)


if __name__ == "__main__":
    main()
