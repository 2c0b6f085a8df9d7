"""`plinth lineage` against answers MLflow should not give (the real server: tests/test_registry_server.py): a
wrong shape, an error page, an answer that never ends. Each is a track's error, never a traceback or a hang."""

from __future__ import annotations

import http.server
import threading
import time

import pytest

from test_serving_registry import MLFLOW, REGISTERED
from test_serving import spec
from plinth.lineage import lineage


class Hostile(http.server.BaseHTTPRequestHandler):
    answers: dict[str, tuple[int, bytes]] = {}

    def do_GET(self):  # noqa: N802  (http.server's name)
        path = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
        status, body = self.answers.get(path, (500, b"<html>oops</html>"))
        if body == b"DRIP":
            self.send_response(200)
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.1)
            except BrokenPipeError:  # the client gave up at its deadline: what the test wants
                pass
            return
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hostile():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_wrong_shapes_error_pages_and_endless_answers_are_track_errors(hostile):
    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    model = {**REGISTERED, "canary": None, "shadow": None}
    Hostile.answers = {"get": (200, b'{"model_version": ["not", "an", "object"]}')}
    [track] = lineage(spec(models=[model], **MLFLOW), url).tracks
    assert track.error.startswith("unexpected answer from MLflow: AttributeError") and track.findings == []
    Hostile.answers = {}
    [track] = lineage(spec(models=[model], **MLFLOW), url).tracks
    assert track.error == "HTTP 500: <html>oops</html>"
    Hostile.answers = {"get": (200, b"DRIP")}
    started = time.monotonic()
    report = lineage(spec(models=[model], **MLFLOW), url, timeout=1)
    assert time.monotonic() - started < 5
    assert report.tracks[0].error == "timed out" and not report.passed


def test_a_drift_reference_is_looked_up_in_the_runs_artifacts(hostile):
    """drift.reference run:<path>: the run's listing of the file's directory; a file there passes, a directory of
    that name is a finding, a listing MLflow cannot give is the track's error."""
    import json

    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    model = {**REGISTERED, "canary": None, "shadow": None,
             "drift": {"reference": "run:data/train.parquet", "window": "pvc://fraud-logs/window.csv"}}
    served = json.dumps({"model_version": {"version": "3", "run_id": "r1"},  # model-versions/get and runs/get
                         "run": {"info": {"experiment_id": "1"}, "data": {},
                                 "inputs": {"dataset_inputs": [{"dataset": {"name": "t", "digest": "d"}}]}}})

    def listing(is_dir: bool) -> tuple[int, bytes]:
        return 200, json.dumps({"files": [{"path": "data/train.parquet", "is_dir": is_dir}]}).encode()

    Hostile.answers = {"get": (200, served.encode()), "list": listing(False)}
    assert lineage(spec(models=[model], **MLFLOW), url).passed
    Hostile.answers["list"] = listing(True)
    [track] = lineage(spec(models=[model], **MLFLOW), url).tracks
    assert [f.rule for f in track.findings] == ["run-without-drift-reference"] and track.error == ""
    del Hostile.answers["list"]
    [track] = lineage(spec(models=[model], **MLFLOW), url).tracks
    assert (track.run_id, track.error, track.findings) == ("r1", "HTTP 500: <html>oops</html>", [])
