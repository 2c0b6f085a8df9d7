"""The drift job's program (modules/serving/driftjob/drift.py) with the real Evidently, from the drift environment
`$PLINTH_DRIFT_PYTHON` (the image's pins; `.ci/run` builds `.venv-drift`), on synthetic data: a window drawn
from the reference's distributions scores below the alert's default threshold, a shifted one above it; the
gauges are read back in Prometheus' text format, from the file and from /metrics."""

from __future__ import annotations

import csv
import random
import re
import socket
import subprocess
import time
import urllib.request

import pytest

from support import ROOT, drift_python
from plinth.modules.serving.monitoring import DRIFT_METRIC
from plinth.spec.models import Drift

PROGRAM = ROOT / "modules" / "serving" / "driftjob" / "drift.py"
ROWS = 2000
COLUMNS = ("amount", "age", "score", "country")
SAMPLE = re.compile(r'^([a-z_]+)\{((?:[a-z_]+="(?:[^"\\]|\\.)*",?)*)\} (\S+)$')


def table(path, seed: int, shift: float = 0.0, rows: int = ROWS, columns=COLUMNS) -> str:
    """A CSV of numeric columns (normal; `shift` standard deviations away) and a categorical one (shifted: a
    country the reference rarely sees becomes common)."""
    rng = random.Random(seed)
    countries = ["de", "fr", "nl", "it"]
    weights = [0.4, 0.3, 0.2, 0.1] if not shift else [0.1, 0.1, 0.2, 0.6]
    with open(path, "w", newline="") as file:
        out = csv.writer(file)
        out.writerow(columns)
        for _ in range(rows):
            row = {"amount": rng.gauss(100 + 30 * shift, 30), "age": rng.gauss(40 + 12 * shift, 12),
                   "score": rng.gauss(0.5, 0.1), "country": rng.choices(countries, weights)[0]}
            out.writerow([row[c] for c in columns])
    return str(path)


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([drift_python(), str(PROGRAM), "--model=ranker", "--team=search", *args],
                          capture_output=True, text=True, timeout=timeout)


def gauges(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, strictly parsed: (name, sorted labels) -> value."""
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        match = SAMPLE.match(line)
        assert match, line
        labels = tuple(sorted(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', match[2])))
        samples[(match[1], labels)] = float(match[3])
    return samples


def score(samples) -> float:
    [(labels, value)] = [(k[1], v) for k, v in samples.items() if k[0] == DRIFT_METRIC]
    assert labels == (("model", "ranker"), ("team", "search"))  # what the ModelDrift alert selects (with namespace)
    return value


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return table(tmp_path_factory.mktemp("drift") / "reference.csv", seed=1)


def test_a_window_like_the_reference_scores_below_the_threshold(reference, tmp_path):
    window = table(tmp_path / "window.csv", seed=2)
    done = run(f"--reference={reference}", f"--window={window}", f"--out={tmp_path / 'drift.prom'}")
    assert done.returncode == 0, done.stderr
    samples = gauges((tmp_path / "drift.prom").read_text())
    assert score(samples) < Drift().threshold
    drifted = {dict(k[1])["column"]: v for k, v in samples.items() if k[0] == "plinth_model_drift_column_drifted"}
    assert drifted == {"amount": 0, "age": 0, "score": 0, "country": 0}
    assert "score 0.000 (0 of 4 columns drifted; 2000 reference and 2000 window rows" in done.stderr


def test_a_shifted_window_scores_above_the_threshold_and_names_its_columns(reference, tmp_path):
    window = table(tmp_path / "window.csv", seed=3, shift=1.0)
    done = run(f"--reference={reference}", f"--window={window}", f"--out={tmp_path / 'drift.prom'}")
    assert done.returncode == 0, done.stderr
    samples = gauges((tmp_path / "drift.prom").read_text())
    assert score(samples) == 0.75 > Drift().threshold  # amount, age and country; score is unchanged
    drifted = {dict(k[1])["column"]: v for k, v in samples.items() if k[0] == "plinth_model_drift_column_drifted"}
    assert drifted == {"amount": 1, "age": 1, "score": 0, "country": 1}
    methods = {dict(k[1])["column"]: dict(k[1])["method"] for k in samples
               if k[0] == "plinth_model_drift_column_score"}
    assert set(methods) == set(COLUMNS)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_job_serves_its_score_on_metrics_from_a_parquet_reference(reference, tmp_path):
    parquet = tmp_path / "reference.parquet"
    convert = subprocess.run([drift_python(), "-c", "import pandas, sys; pandas.read_csv(sys.argv[1])"
                              ".to_parquet(sys.argv[2])", reference, str(parquet)], capture_output=True, text=True)
    assert convert.returncode == 0, convert.stderr
    window = table(tmp_path / "window.csv", seed=4, shift=1.0)
    port = free_port()
    server = subprocess.Popen([drift_python(), str(PROGRAM), "--model=ranker", "--team=search",
                               f"--reference={parquet}", f"--window={window}", f"--serve={port}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, body = time.monotonic() + 120, None
        while body is None and time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
                    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                    body = answer.read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None, server.stderr.read() if server.poll() is not None else "no answer in 120s"
        assert score(gauges(body)) == 0.75
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_bad_input_is_one_line_and_exit_code_2(reference, tmp_path):
    long = table(tmp_path / "long.csv", seed=5, rows=101)
    partial = table(tmp_path / "partial.csv", seed=6, columns=("amount", "age"))
    cases = {
        (f"--reference={long}", f"--window={long}", "--max-rows=100"): f"drift: {long}: more than the limit of 100 rows (--max-rows)",
        (f"--reference={long}", f"--window={long}", "--max-bytes=1000"): f"drift: {long}: {(tmp_path / 'long.csv').stat().st_size} bytes, "
                                                   "more than the limit of 1000 (--max-bytes)",
        (f"--window={tmp_path / 'absent.csv'}",): f"drift: {tmp_path / 'absent.csv'}: cannot be read: No such file "
                                                   "or directory",
        (f"--window={tmp_path / 'window.json'}",): f"drift: {tmp_path / 'window.json'}: not a .csv or .parquet file",
        (f"--window={partial}",): "drift: the window lacks the reference's columns score, country",
    }
    for args, message in cases.items():
        done = run(f"--reference={reference}", *args, f"--out={tmp_path / 'drift.prom'}")
        assert (done.returncode, done.stderr.strip()) == (2, message)
    assert not (tmp_path / "drift.prom").exists()
