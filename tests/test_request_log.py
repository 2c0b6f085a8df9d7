"""A served model's request logging (serving.models[].drift.requestLog) and the drift job on its logged window.

The plan: the logger sidecar in the stable and canary pods (not the shadow), each track's Service sending its HTTP
port to the sidecar, the network policies' ports, the team identity's prefix of the artifacts bucket, the quota
and the spec rules.

The real parts (default tier; each skips with its reason when its tool is absent): the logger program
(modules/serving/requestlog/requestlog.py, run with this interpreter, exactly the planned arguments but its
ports) in front of a real Triton (nvidia-pytriton's `tritonserver`, CPU, from `$PLINTH_SERVING_PYTHON`), writing
into a real SeaweedFS S3 gateway over TLS (tests/s3server.py) with the team's planned keys; then the real drift
program (`$PLINTH_DRIFT_PYTHON`, Evidently) on the logged window read back from the store.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import kubernetes_validate
import pytest

from s3server import Identity, S3Server, weed
from support import ROOT, by_key, drift_python, free_port, serving_python
from test_drift import MODEL as DRIFT_MODEL
from test_drift_job import gauges, score
from test_serving import TRITON, spec
from test_spec_errors import overlay_errors
from plinth.catalog import IMAGES
from plinth.engine.offline import plan
from plinth.governance.check import subjects
from plinth.governance.policies import evaluate
from plinth.governance.podsecurity import restricted
from plinth.mirror import mirror_list
from plinth.modules.objectstore import ObjectStore
from plinth.modules.objectstore.identities import bucket, s3_config
from plinth.modules.objectstore.teamkeys import OBJECT_STORE
from plinth.modules.serving import reqlog
from plinth.render import kubernetes_objects
from plinth.spec.models import Drift
from plinth.spec.rules import check_rules

LOGGER = ROOT / "modules" / "serving" / "requestlog" / "requestlog.py"
DRIFT = ROOT / "modules" / "serving" / "driftjob" / "drift.py"
SEED = "request-log-seed"
COLUMNS = ("amount", "age", "score")
STORE = {"storage": {"objectStore": {"enabled": True}}, "secrets": {"vault": {"enabled": True}}}
LOG = {"sampleRate": 0.5, "maxBodyBytes": 1024, "flushSeconds": 30, "flushRecords": 40}
LOGGED = {**TRITON, "team": "search", "drift": {"reference": "pvc://data/reference.csv", "requestLog": LOG,
                                                 "windowHours": 2}}
SHIFTED = {"name": "shifted", "team": "search", "runtime": "triton", "modelRepository": "pvc://models/shifted",
           "stable": {"version": "1"},
           "drift": {"reference": "pvc://data/reference.csv", "requestLog": LOG, "windowHours": 2}}


@pytest.fixture(scope="module")
def logging_spec():
    found = spec(models=[LOGGED, SHIFTED], teams=[{"name": "fraud"}, {"name": "search", "quota": {
        "gpu": 8, "cpu": "32", "memory": "128Gi"}}], **STORE)
    assert check_rules(found) == []
    return found


@pytest.fixture(scope="module")
def served(logging_spec):
    return by_key(plan(logging_spec, "reqlog"), "plinth:serving:Serving")


def pod(served, track: str, model: str = "scorer") -> dict:
    return served[("Deployment", "search", f"{model}-{track}")].inputs["spec"]["template"]["spec"]


def logger_args(served, track: str = "stable", model: str = "scorer") -> list[str]:
    [sidecar] = [c for c in pod(served, track, model)["containers"] if c["name"] == "requestlog"]
    return sidecar["args"]


# --- the plan ------------------------------------------------------------------------------------------------


def test_stable_and_canary_pods_run_the_logger_in_front_of_the_model_server(served):
    for track in ("stable", "canary"):
        spec_ = pod(served, track)
        triton, sidecar = spec_["containers"]
        assert triton["name"] == "triton" and sidecar["name"] == "requestlog"
        assert sidecar["image"] == IMAGES["requestlog"] == "ghcr.io/plinth-platform/plinth-requestlog:3.11.7-1"
        assert sidecar["args"] == [
            "--listen=8090", "--upstream=http://127.0.0.1:8000", "--bucket=test-artifacts",
            "--prefix=requests/search/scorer", f"--track={track}", "--sample-rate=0.5", "--max-body-bytes=1024",
            "--flush-seconds=30", "--flush-records=40", "--buffer-records=10000", "--metrics-port=8091"]
        assert sidecar["ports"] == [{"name": "requestlog", "containerPort": 8090, "protocol": "TCP"},
                                    {"name": "requestlog-mx", "containerPort": 8091, "protocol": "TCP"}]
        # The team's keys (the AWS SDKs' environment) and the CA they name in AWS_CA_BUNDLE.
        assert sidecar["envFrom"] == [{"secretRef": {"name": "object-store-credentials"}}]
        assert {"name": "object-store-ca", "mountPath": "/etc/plinth/object-store-ca", "readOnly": True} in \
            sidecar["volumeMounts"]
        assert {"name": "object-store-ca", "secret": {"secretName": "object-store-ca", "defaultMode": 0o444,
                                                      "items": [{"key": "ca.crt", "path": "ca.crt"}]}} in \
            spec_["volumes"]
        assert sidecar["resources"] == {"requests": {"cpu": "200m", "memory": "256Mi"},
                                        "limits": {"cpu": "200m", "memory": "256Mi"}}
        # Ready when the model server answers ready through it; the model server's own probes are unchanged.
        assert sidecar["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "requestlog"}
        assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
        assert restricted(spec_) == []
        assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True
    # The shadow answers copies of requests stable or canary already saw: not logged.
    assert [c["name"] for c in pod(served, "shadow")["containers"]] == ["triton"]


def test_a_logged_tracks_service_sends_its_http_port_to_the_logger(served):
    for track, service, target in (("stable", "scorer", "requestlog"), ("canary", "scorer-canary", "requestlog"),
                                   ("shadow", "scorer-shadow", "http")):
        ports = served[("Service", "search", service)].inputs["spec"]["ports"]
        assert ports[0] == {"name": "http", "port": 8000, "targetPort": target, "protocol": "TCP"}, track
        logger = [("requestlog-mx", "requestlog-mx")] if target == "requestlog" else []
        assert [(p["name"], p["targetPort"]) for p in ports[1:]] == [("grpc", "grpc"), ("metrics", "metrics"),
                                                                     *logger]
    # The route keeps the port it knows: the Service's.
    route = served[("HTTPRoute", "search", "scorer")].inputs["spec"]
    assert {ref["port"] for rule in route["rules"] for ref in rule["backendRefs"]} == {8000}


def test_the_gateway_reaches_the_logger_and_the_shadows_server(served):
    gateway = served[("CiliumNetworkPolicy", "search", "allow-from-gateway-scorer")].inputs["spec"]
    assert gateway["ingress"][0]["toPorts"] == [{"ports": [{"port": "8000", "protocol": "TCP"},
                                                           {"port": "8090", "protocol": "TCP"}]}]
    shifted = served[("CiliumNetworkPolicy", "search", "allow-from-gateway-shifted")].inputs["spec"]
    assert shifted["ingress"][0]["toPorts"] == [{"ports": [{"port": "8090", "protocol": "TCP"}]}]
    # Triton's metrics have a port of their own (Prometheus does not pass the logger); the logger's counts theirs.
    monitoring = served[("NetworkPolicy", "search", "allow-from-monitoring-scorer")].inputs["spec"]
    assert monitoring["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8002}, {"protocol": "TCP", "port": 8091}]
    monitor = served[("ServiceMonitor", "search", "scorer")].inputs["spec"]
    assert [e["port"] for e in monitor["endpoints"]] == ["metrics", "requestlog-mx"]
    assert monitor["endpoints"][0]["relabelings"] == monitor["endpoints"][1]["relabelings"]


def test_a_logged_bento_is_scraped_through_its_logger():
    bento = {"name": "ranker", "team": "search", "runtime": "bentoml", "image": "registry.corp.internal/ml/ranker",
             "stable": {"version": "1.2.0"}, "drift": {"reference": "pvc://data/reference.csv", "requestLog": {}}}
    served = by_key(plan(spec(models=[bento], **STORE), "reqlog-bento"), "plinth:serving:Serving")
    monitoring = served[("NetworkPolicy", "search", "allow-from-monitoring-ranker")].inputs["spec"]
    assert monitoring["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8090}, {"protocol": "TCP", "port": 8091}]
    [sidecar] = [c for c in served[("Deployment", "search", "ranker-stable")].inputs["spec"]["template"]["spec"][
        "containers"] if c["name"] == "requestlog"]
    assert "--upstream=http://127.0.0.1:3000" in sidecar["args"] and "--sample-rate=0.1" in sidecar["args"]
    assert sidecar["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_logged_models_objects_are_valid_kubernetes_and_pass_the_policies(logging_spec):
    planned = plan(logging_spec, "reqlog-policies")
    objects = [obj for r, obj in kubernetes_objects(planned) if "plinth:serving:Serving" in r.urn
               and obj["kind"] in ("Deployment", "Service", "CronJob")]
    assert len(objects) == 10  # scorer: 3 tracks, shifted: 1 (a Deployment and a Service each); 2 drift jobs
    for obj in objects:
        kubernetes_validate.validate(obj, "1.34.0", strict=True)
    found = [v for _, _, violations in evaluate(subjects(planned)) for v in violations
             if "scorer" in v.subject or "shifted" in v.subject]
    assert found == []


def test_the_team_namespace_reaches_the_store_from_every_pod(logging_spec):
    # The model's pods need no policy of their own: every pod of a team namespace may reach the S3 port.
    tenancy = by_key(plan(logging_spec, "reqlog-tenancy"), "plinth:tenancy")
    egress = [r.inputs["spec"] for key, r in tenancy.items() if key[1] == "search" and "object-store" in key[2]]
    assert egress and all(spec_.get("podSelector", spec_.get("endpointSelector")) == {} for spec_ in egress)


def test_the_drift_job_reads_the_logged_window_with_the_teams_keys(served):
    cronjob = served[("CronJob", "search", "scorer-drift")].inputs["spec"]["jobTemplate"]["spec"]["template"]
    [container] = cronjob["spec"]["containers"]
    assert container["args"][:3] == ["--reference=/data/data/reference.csv",
                                     "--window-store=s3://test-artifacts/requests/search/scorer", "--window-hours=2"]
    assert container["envFrom"] == [{"secretRef": {"name": "object-store-credentials"}}]
    assert {"name": "object-store-ca", "mountPath": "/etc/plinth/object-store-ca", "readOnly": True} in \
        container["volumeMounts"]
    assert restricted(cronjob["spec"]) == []


def test_the_team_identity_gets_its_request_prefix_only_when_its_models_log(logging_spec):
    assert ObjectStore.block(logging_spec).request_log_teams == ("search",)
    identities = {i["name"]: i["actions"] for i in s3_config("test", ("fraud", "search"), SEED,
                                                             request_log_teams=("search",))["identities"]}
    logs = "test-artifacts/requests/search/*"
    assert identities["team-search"] == ["Read:test-models/search/*", "List:test-models/search/*",
                                         f"Read:{logs}", f"Write:{logs}", f"List:{logs}"]
    assert identities["team-fraud"] == ["Read:test-models/fraud/*", "List:test-models/fraud/*"]


def test_the_logger_image_is_listed_only_with_logging(logging_spec):
    assert IMAGES["requestlog"] in {i.source for i in mirror_list(logging_spec).images}
    assert IMAGES["requestlog"] not in {i.source for i in mirror_list(spec(**STORE)).images}


def test_the_loggers_count_in_the_teams_quota(logging_spec):
    # search: scorer's stable at its maximum (4) and canary (1) log, the shadow (1) does not; shifted's stable (1).
    small = spec(models=[LOGGED, SHIFTED], teams=[{"name": "fraud"}, {"name": "search", "quota": {
        "gpu": 8, "cpu": "9.19", "memory": "128Gi"}}], **STORE)
    # 6 Triton replicas x 1 CPU (+1 shifted) + 2 drift jobs x 1 + 6 loggers x 0.2 = 9 + 1.2 = 10.2
    [error] = [str(v) for v in check_rules(small) if v.rule == "serving-quota-fits"]
    assert "up to 10.2 cpu (stable at its maximum, canary and shadow, drift jobs, request loggers)" in error


MODEL = DRIFT_MODEL + "        reference: pvc://data/reference.csv\n"
"""test_drift's model, its drift block begun with the reference: each case adds the window or the log."""


def test_request_logging_needs_the_object_store_and_sane_bounds(write):
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        requestLog: {flushRecords: 500, bufferRecords: 100}
""")
    assert errors == [
        "bad.yaml:12:9: serving.models[ranker].drift.requestLog: model 'ranker' logs its requests into the artifacts "
        "bucket of the object store, with its team's keys, which is off [rule request-log-needs-object-store; fix: "
        "enable storage.objectStore, or use drift.window (a file) instead]",
        "bad.yaml:12:22: serving.models[ranker].drift.requestLog.flushRecords: a batch of 500 records never fills a "
        "buffer of 100 [rule request-log-buffer; fix: set flushRecords at most bufferRecords]"]


def test_the_window_is_a_file_or_the_request_log_and_the_rate_a_share(write):
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        window: pvc://logs/window.csv
        requestLog: {sampleRate: 0.5}
""")
    assert errors == ["bad.yaml:10:7: serving.models[ranker].drift: drift names either window (a file) or "
                      "requestLog (the model's logged requests), got a mapping"]
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        window: pvc://logs/window.csv
        windowHours: 6
""")
    assert errors == ["bad.yaml:10:7: serving.models[ranker].drift: windowHours selects requestLog's records: a "
                      "window file is read whole, got a mapping"]
    errors = overlay_errors(write, "monitoring: {enabled: true, drift: {enabled: true}}\n" + MODEL + """\
        requestLog: {sampleRate: 1.5}
""")
    assert errors == ["bad.yaml:12:22: serving.models[ranker].drift.requestLog.sampleRate: expected a value less "
                      "than or equal to 1, got 1.5"]


# --- the programs' pure parts --------------------------------------------------------------------------------


def load(path: Path, name: str):
    """A program's module, imported from its file (both import only the standard library at the top)."""
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_the_buffer_drops_and_counts_past_its_bound_and_never_blocks():
    logger = load(LOGGER, "requestlog")
    recorder = logger.Recorder(None, "b", "requests/t/m", "pod", "stable", 8, 60, 1000, 3)
    started = time.monotonic()
    for _ in range(5):
        recorder.offer((time.time(), "POST", "/x", 200, 1.0, b'{"a": 1}', b"0123456789"))
    assert time.monotonic() - started < 0.1
    assert recorder.counts == {"sampled": 3, "written": 0, "dropped_full": 2, "dropped_store": 0}
    line = json.loads(recorder.encode(recorder.buffer.get_nowait()))
    assert line["request"] == {"a": 1} and line["response"] is None
    assert line["response_truncated"] is True and line["response_bytes"] == 10


def test_requests_become_rows_of_the_references_columns():
    rows = load(DRIFT, "driftprogram").request_rows
    columns = ["a", "b"]
    assert rows({"inputs": [{"name": "X", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
                columns) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert rows({"inputs": [{"name": "X", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}, columns) == \
        [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert rows({"inputs": [{"name": "b", "shape": [1], "data": [2]}, {"name": "a", "shape": [1], "data": [1]}]},
                columns) == [{"a": 1, "b": 2}]
    assert rows({"a": 1, "b": "x", "c": 3}, columns) == [{"a": 1, "b": "x"}]
    assert rows({"a": [1, 3], "b": [2, 4]}, columns) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    assert rows([{"a": 1, "b": 2}, {"a": 3, "b": 4}], columns) == [{"a": 1, "b": 2}, {"a": 3, "b": 4}]
    for unusable in (None, "text", {"a": 1}, {"inputs": [{"name": "X", "shape": [1, 3], "data": [1, 2, 3]}]},
                     {"inputs": [{"name": "X", "shape": [2, 2], "data": [1, 2, 3]}]}, {"a": [1], "b": [1, 2]}):
        assert rows(unusable, columns) is None, unusable


def echo_server():
    """A local upstream answering each request with what it received (method, path, Content-Length, body)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_HEAD(self):  # noqa: N802 (the handler's API)
            self.send_response(200)
            self.send_header("Content-Length", "42")
            self.end_headers()

        def do_POST(self):  # noqa: N802 (the handler's API)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path == "/empty":
                self.send_response(204)
                self.end_headers()
                return
            answer = json.dumps({"path": self.path, "length": self.headers.get("Content-Length"),
                                 "chunked": self.headers.get("Transfer-Encoding"), "body": body.decode()}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("X-Model", "echo")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            # The logger resets a connection whose answer it refuses (over its bound): expected, not news.
            if not isinstance(sys.exc_info()[1], ConnectionError):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_the_logger_forwards_chunked_bodies_answers_502_without_its_server_and_refuses_bad_input(tmp_path):
    upstream = echo_server()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B",
           "AWS_ENDPOINT_URL_S3": "https://127.0.0.1:9"}
    port = free_port()
    process = subprocess.Popen([sys.executable, str(LOGGER), f"--listen={port}",
                                f"--upstream=http://127.0.0.1:{upstream.server_port}", "--bucket=b",
                                "--prefix=requests/t/m", "--sample-rate=0", "--drain-seconds=0",
                                "--max-proxied-bytes=100"],
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("POST", "/v1/x", body=iter([b'{"a": ', b"1}"]), encode_chunked=True)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        answer = connection.getresponse()
        # The model server gets the whole body with its length; the client its answer as the server gave it.
        assert (answer.status, answer.getheader("X-Model"), json.loads(answer.read())) == (
            201, "echo", {"path": "/v1/x", "length": "8", "chunked": None, "body": '{"a": 1}'})
        # Answers without a body keep their framing: HEAD its length, 204 none (the kept-alive connection goes on).
        connection.request("HEAD", "/v1/x")
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Content-Length"), answer.read()) == (200, "42", b"")
        connection.request("POST", "/empty", body=b"{}")
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Content-Length"), answer.read()) == (204, None, b"")
        connection.close()
        # Bodies are held whole, so bounded: a request over the bound is refused before its body is read, an
        # answer over it (the echo of 60 bytes and its framing) is not passed on.
        assert call(port, "POST", "/v1/x", b"x" * 101)[0] == 413
        assert call(port, "POST", "/v1/x", b"x" * 60)[0] == 502
        connection.close()
        upstream.shutdown()
        upstream.server_close()
        assert call(port, "POST", "/v1/x", b"{}")[0] == 502
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
    for args, env_, message in (
            (["--sample-rate=2"], env, "--sample-rate 2.0 is not in 0-1"),
            ([], {k: v for k, v in env.items() if k != "AWS_SECRET_ACCESS_KEY"},
             "the environment lacks AWS_SECRET_ACCESS_KEY (the team's object-store-credentials)"),
            ([], {**env, "AWS_ENDPOINT_URL_S3": "http://store:8333"}, "is not an https:// URL")):
        done = subprocess.run([sys.executable, str(LOGGER), "--listen=1", "--upstream=http://127.0.0.1:1",
                               "--bucket=b", "--prefix=p", *args], env=env_, capture_output=True, text=True,
                              timeout=20)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr


# --- the real logger, Triton, SeaweedFS and the drift job ----------------------------------------------------

PLATFORM = "test"
ADMIN = Identity("admin", ("Admin", "Read", "List", "Write", "Tagging"))


def planned_identity(name: str) -> Identity:
    [entry] = [i for i in s3_config(PLATFORM, ("fraud", "search"), SEED, request_log_teams=("search",))[
        "identities"] if i["name"] == name]
    keys = entry["credentials"][0]
    return Identity(name, tuple(entry["actions"]), keys["accessKey"], keys["secretKey"])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    binary = weed()
    server = S3Server(binary, tmp_path_factory.mktemp("store"), ADMIN,
                      [planned_identity("team-search"), planned_identity("team-fraud")],
                      [bucket(PLATFORM, "artifacts")])
    with server:
        yield server


@pytest.fixture(scope="module")
def triton(tmp_path_factory):
    """A real Triton serving `scorer` (FP32 [-1] + 1, batched up to 8) on a free loopback port."""
    python = serving_python()
    tmp = tmp_path_factory.mktemp("triton")
    port, log = free_port(), tmp / "triton.log"
    process = subprocess.Popen([python, str(ROOT / "tests" / "verify" / "triton_server.py"), str(port), "1",
                                "--workspace", str(tmp / "pytriton")], cwd=tmp, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        deadline = time.monotonic() + 180
        while "READY" not in log.read_text(errors="replace") or not ready(port, "/v2/health/ready"):
            assert process.poll() is None, log.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "Triton not ready in 180 s"
            time.sleep(0.3)
        yield port
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(20)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


def ready(port: int, path: str) -> bool:
    try:
        return call(port, "GET", path)[0] == 200
    except OSError:
        return False


def call(port: int, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        answer = connection.getresponse()
        return answer.status, answer.read(), answer.getheader("Content-Type") or ""
    finally:
        connection.close()


def team_env(store: S3Server, team: str) -> dict[str, str]:
    """The team's planned Secret object-store-credentials, its endpoint and CA those of the local store."""
    fields = OBJECT_STORE.fields(PLATFORM, team, SEED)
    return {**os.environ, **fields, "AWS_ENDPOINT_URL_S3": store.endpoint, "AWS_CA_BUNDLE": str(store.ca)}


class Logger:
    """The logger program with the planned arguments, its port and its upstream's made local."""

    def __init__(self, args: list[str], upstream: int, env: dict[str, str], log: Path):
        self.port = free_port()
        self.metrics_port = free_port()
        args = [a for a in args if not a.startswith(("--listen=", "--upstream=", "--metrics-port="))]
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, str(LOGGER), f"--listen={self.port}", f"--upstream=http://127.0.0.1:{upstream}",
             f"--metrics-port={self.metrics_port}", "--pod=scorer-stable-0", "--drain-seconds=1", *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not ready(self.port, "/v2/health/ready"):
            assert self.process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)

    def stop(self) -> str:
        """SIGTERM: it still answers while draining (closing each connection after its answer), then the last batch
        is written and it exits 0."""
        self.process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", "/v2/health/ready")
        answer = connection.getresponse()
        assert (answer.status, answer.getheader("Connection")) == (200, "close")
        connection.close()
        assert self.process.wait(30) == 0, self.log.read_text()
        return self.log.read_text()


def infer_body(rng: random.Random, shift: float, rows: int = 4, pad: int = 0) -> bytes:
    data = [v for _ in range(rows) for v in (round(rng.gauss(100 + 30 * shift, 30), 3),
                                             round(rng.gauss(40 + 12 * shift, 12), 3), round(rng.gauss(0.5, 0.1), 4))]
    return (json.dumps({"inputs": [{"name": "INPUT", "shape": [rows, 3], "datatype": "FP32", "data": data}]})
            + " " * pad).encode()


def reference_csv(path: Path, rows: int = 2000) -> str:
    rng = random.Random(1)
    lines = [",".join(COLUMNS)] + [f"{rng.gauss(100, 30):.3f},{rng.gauss(40, 12):.3f},{rng.gauss(0.5, 0.1):.4f}"
                                   for _ in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def records(store: S3Server, prefix: str) -> tuple[dict[str, int], list[dict]]:
    objects = store.objects(bucket(PLATFORM, "artifacts"), prefix + "/")
    lines = []
    for key in objects:
        body = store.request(ADMIN, "GET", bucket(PLATFORM, "artifacts"), key).body
        lines += [json.loads(line) for line in body.splitlines()]
    return objects, lines


REQUESTS = 300


@pytest.fixture(scope="module")
def logged(served, store, triton, tmp_path_factory):
    """REQUESTS inference requests through each model's logger (scorer: like the reference; shifted: shifted),
    each answer compared with Triton's own to the same request; and the per-request time direct and through."""
    tmp = tmp_path_factory.mktemp("logged")
    env = team_env(store, "search")
    result: dict = {"timing": {}}
    for model, shift in (("scorer", 0.0), ("shifted", 1.0)):
        logger = Logger(logger_args(served, "stable", model), triton, env, tmp / f"{model}.log")
        rng, sent, direct_s, through_s = random.Random(7 if shift else 3), [], 0.0, 0.0
        for i in range(REQUESTS):
            body = infer_body(rng, shift, pad=2000 if i == 0 else 0)  # the first is past maxBodyBytes (1024)
            started = time.perf_counter()
            direct = call(triton, "POST", "/v2/models/scorer/infer", body)
            direct_s += time.perf_counter() - started
            started = time.perf_counter()
            through = call(logger.port, "POST", "/v2/models/scorer/infer", body)
            through_s += time.perf_counter() - started
            assert through == direct and through[0] == 200
            sent.append(body)
        # Not inference: forwarded, never recorded.
        assert call(logger.port, "GET", "/v2/models/scorer")[:2] == call(triton, "GET", "/v2/models/scorer")[:2]
        status, metrics, kind = call(logger.metrics_port, "GET", "/metrics")
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        # The name the plan's alert (ModelRequestLogDropping) reads.
        sampled = re.search(rb"^%s\{outcome=\"sampled\"\} (\d+)$" % reqlog.RECORDS_METRIC.encode(), metrics, re.M)
        assert sampled and 0 < int(sampled[1]) < REQUESTS, metrics
        result[model] = (sent, logger.stop())
        result["timing"][model] = (direct_s / REQUESTS * 1000, through_s / REQUESTS * 1000)
    print(f"\n[request log] ms per request, direct / through the logger: {result['timing']}")
    return result


@pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)
def test_answers_are_unchanged_and_the_sample_lands_under_the_models_prefix(logged, store):
    sent, log = logged["scorer"]
    objects, lines = records(store, "requests/search/scorer")
    assert objects and all(re.fullmatch(r"requests/search/scorer/\d{4}-\d\d-\d\d/\d\d/scorer-stable-0-\d+-\d{6}"
                                        r"\.jsonl", key) for key in objects), objects
    # Batches of at most flushRecords (40) lines.
    assert max(len(store.request(ADMIN, "GET", "test-artifacts", key).body.splitlines()) for key in objects) <= 40
    # About sampleRate (0.5) of 300: within 6 standard deviations (sd 8.7).
    assert 98 <= len(lines) <= 202, len(lines)
    counts = dict(re.findall(r"(\w+) (\d+)", log.splitlines()[-1].split("(", 1)[1]))
    assert counts == {"sampled": str(len(lines)), "written": str(len(lines)), "dropped_full": "0",
                      "dropped_store": "0"}, log
    bodies = {json.dumps(json.loads(body), sort_keys=True) for body in sent}
    for line in lines:
        assert line["track"] == "stable" and line["method"] == "POST" and line["status"] == 200
        assert line["path"] == "/v2/models/scorer/infer"
        if line.get("request_truncated"):
            # The oversize request: its size kept, its body not.
            assert line["request"] is None and line["request_bytes"] == len(sent[0]) > 1024
            continue
        assert json.dumps(line["request"], sort_keys=True) in bodies
        assert line["response"]["outputs"][0]["data"] == pytest.approx(
            [v + 1 for v in line["request"]["inputs"][0]["data"]], rel=1e-5)


@pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)
def test_only_the_teams_keys_reach_its_records(logged, store):
    objects = store.objects("test-artifacts", "requests/search/scorer/")
    key = next(iter(objects))
    search, fraud = planned_identity("team-search"), planned_identity("team-fraud")
    assert store.request(search, "GET", "test-artifacts", key).status == 200
    assert store.request(search, "GET", "test-artifacts", query={"list-type": "2",
                                                                "prefix": "requests/search/"}).status == 200
    for method, body in (("GET", b""), ("PUT", b"{}\n")):
        answer = store.request(fraud, method, "test-artifacts", key, body)
        assert (answer.status, answer.error_code) == (403, "AccessDenied"), method
    # Nor may search write outside its own prefix.
    answer = store.request(search, "PUT", "test-artifacts", "requests/fraud/x.jsonl", b"{}\n")
    assert (answer.status, answer.error_code) == (403, "AccessDenied")


def drift_run(store: S3Server, reference: str, model: str, tmp: Path) -> tuple[float, float]:
    out = tmp / f"{model}.prom"
    started = time.monotonic()
    done = subprocess.run([drift_python(), str(DRIFT), f"--reference={reference}",
                           f"--window-store=s3://test-artifacts/requests/search/{model}", "--window-hours=2",
                           "--model=ranker", "--team=search", f"--out={out}"],
                          capture_output=True, text=True, timeout=300, env=team_env(store, "search"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"rows from \d+ logged requests of the last 2 hours \([01] records skipped\)", done.stderr), \
        done.stderr
    return score(gauges(out.read_text())), time.monotonic() - started


@pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)
def test_the_drift_job_scores_the_logged_window(logged, store, tmp_path):
    reference = reference_csv(tmp_path / "reference.csv")
    like, like_s = drift_run(store, reference, "scorer", tmp_path)
    shifted, shifted_s = drift_run(store, reference, "shifted", tmp_path)
    print(f"\n[request log] drift on the logged window: {like:.2f} in {like_s:.1f}s, shifted {shifted:.2f} in "
          f"{shifted_s:.1f}s")
    assert like < Drift().threshold < shifted


@pytest.mark.toolchain  # weed: runs after the other tests (tests/conftest.py)
def test_another_teams_keys_cannot_read_the_window(logged, store, tmp_path):
    reference = reference_csv(tmp_path / "reference.csv", rows=50)
    done = subprocess.run([drift_python(), str(DRIFT), f"--reference={reference}",
                           "--window-store=s3://test-artifacts/requests/search/scorer", "--model=ranker",
                           "--team=search", f"--out={tmp_path / 'x.prom'}"],
                          capture_output=True, text=True, timeout=120, env=team_env(store, "fraud"))
    assert done.returncode == 2 and "s3://test-artifacts/requests/search/scorer: " in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
