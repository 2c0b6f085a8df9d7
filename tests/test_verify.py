"""`plinth verify` against real servers, through the model's real HTTPRoute.

The servers: a real Triton (nvidia-pytriton's `tritonserver`, CPU) per Triton track and a real BentoML service
(`bentoml serve`) per BentoML track, on loopback, from the serving environment `$PLINTH_SERVING_PYTHON` (their
pins conflict with the Pulumi SDK's; `.ci/run` builds `.venv-serving`). Between `plinth verify` and them, a
small gateway (RouteGateway below) interprets the HTTPRoutes of the offline plan as the Gateway API specifies:
host names, path prefix and header matches with the spec's match precedence, the ReplacePrefixMatch rewrite,
weighted backendRefs (deterministic smooth round robin) and the request mirror; a Service resolves to the server
of its track (what kube-proxy would do). So a passing run shows that verify and the route agree: every request
for a track reached that track's server, and only it.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from support import ROOT, free_port, serving_python
from plinth.engine.offline import plan
from plinth.modules.serving.routing import TRACK_HEADER
from plinth.spec.load import load_spec
from plinth.modelclient import bentoml_api, example, triton_request

PLINTH = [str(Path(sys.executable).parent / "plinth")]
FIXTURES = Path(__file__).parent / "verify"
HOST = "serving.models.plinth.internal"
SPEC = f"""\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata: {{name: verify, environment: dev, costCenter: cc-1}}
target: {{type: existing}}
rbac: {{platformAdminGroup: admins}}
network:
  cilium: {{enabled: true, apiServer: {{host: api.k8s.internal}}}}
  loadBalancer: {{ranges: [172.31.255.240/29]}}
certificates:
  certManager: {{enabled: true}}
monitoring: {{enabled: true}}
teams:
  - name: fraud
  - name: search
serving:
  hostname: {HOST}
  models:
    - name: scorer
      team: fraud
      runtime: triton
      modelRepository: pvc://models/scorer
      stable: {{version: "1"}}
      canary: {{version: "2", weight: 20}}
    - name: ranker
      team: search
      runtime: bentoml
      image: registry.corp.internal/ml/ranker
      stable: {{version: "1.0.0"}}
      shadow: {{version: "1.1.0"}}
"""
TRACKS = [("fraud", "scorer", "stable"), ("fraud", "scorer", "canary"),
          ("search", "ranker", "stable"), ("search", "ranker", "shadow")]
SERVICES = {("fraud", "scorer", "stable"): "scorer", ("fraud", "scorer", "canary"): "scorer-canary",
            ("search", "ranker", "stable"): "ranker", ("search", "ranker", "shadow"): "ranker-shadow"}
START_SECONDS = 240


def plinth(*args, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*PLINTH, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PLINTH_DEBUG": "", **(env or {})})


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "verify.yaml"
    path.write_text(SPEC, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def planned(spec_file):
    """(routes, services) of the serving component in the offline plan: the objects the cluster would hold."""
    result = plan(load_spec(spec_file), "verify")
    objects = [r.inputs for r in result.resources
               if r.custom and "plinth:serving:Serving" in r.urn and r.inputs.get("kind") in ("HTTPRoute", "Service")]
    routes = [o for o in objects if o["kind"] == "HTTPRoute"]
    services = [o for o in objects if o["kind"] == "Service"]
    assert {(r["metadata"]["namespace"], r["metadata"]["name"]) for r in routes} == {("fraud", "scorer"),
                                                                                      ("search", "ranker")}
    assert all(r["spec"]["hostnames"] == [HOST] for r in routes)
    return routes, services


# --- the gateway ----------------------------------------------------------------------------------------

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length"}


class RouteGateway:
    """HTTPRoutes interpreted as the Gateway API specifies, for the features Plinth's routes use; anything else in
    a route raises (the test fails rather than routing wrongly)."""

    def __init__(self, routes: list[dict], backends: dict[tuple[str, str, int], int | None],
                 tls: ssl.SSLContext | None = None):
        # Across routes, ties go to the route first by "{namespace}/{name}" (same creation time here).
        self.routes = sorted(routes, key=lambda r: f"{r['metadata']['namespace']}/{r['metadata']['name']}")
        self.backends = backends
        """(namespace, Service, port) -> loopback port of its server (None: no endpoints)."""
        self.log: list[dict] = []
        self._lock = threading.Lock()
        self._turns: dict[int, list[int]] = {}
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _any(self):
                gateway.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # matching -------------------------------------------------------------------------------------------

    @staticmethod
    def _host_matches(host: str, hostnames: list[str]) -> bool:
        return not hostnames or any(host == h or (h.startswith("*.") and host.endswith(h[1:])) for h in hostnames)

    @staticmethod
    def _path_matches(match_path: dict, path: str) -> bool:
        kind, value = match_path.get("type", "PathPrefix"), match_path.get("value", "/")
        if kind == "Exact":
            return path == value
        if kind != "PathPrefix":
            raise NotImplementedError(f"path match {kind}")
        prefix = value.rstrip("/")  # element-wise: /a/b matches /a/b and /a/b/c, not /a/bc
        return not prefix or path == prefix or path.startswith(prefix + "/")

    @staticmethod
    def _headers_match(wanted: list[dict], headers) -> bool:
        for header in wanted:
            if header.get("type", "Exact") != "Exact":
                raise NotImplementedError(f"header match {header['type']}")
            if headers.get(header["name"]) != header["value"]:  # names case-insensitive, values exact
                return False
        return True

    def select(self, host: str, path: str, method: str, headers) -> tuple[dict, dict, dict] | None:
        """(route, rule, match) by the Gateway API's precedence: Exact path, longest prefix, method, most header
        matches, most query matches; then route order; then the first rule in list order."""
        best, best_key = None, None
        for route in self.routes:
            spec = route["spec"]
            if not self._host_matches(host, spec.get("hostnames") or []):
                continue
            for rule in spec["rules"]:
                for match in rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]:
                    if set(match) - {"path", "headers", "method"}:
                        raise NotImplementedError(f"match on {sorted(match)}")
                    if not self._path_matches(match.get("path") or {}, path):
                        continue
                    if match.get("method") not in (None, method) or not self._headers_match(
                            match.get("headers") or [], headers):
                        continue
                    p = match.get("path") or {}
                    key = (p.get("type") == "Exact", len(p.get("value", "/")), "method" in match,
                           len(match.get("headers") or []), 0)
                    if best_key is None or key > best_key:  # strictly better only: earlier wins ties
                        best, best_key = (route, rule, match), key
        return best

    def _pick(self, rule: dict) -> dict | None:
        """Smooth weighted round robin over the rule's backendRefs (weight default 1; 0 never picked)."""
        refs = rule.get("backendRefs") or []
        weights = [int(r.get("weight", 1)) for r in refs]
        if not refs or sum(weights) == 0:
            return None
        with self._lock:
            current = self._turns.setdefault(id(rule), [0] * len(refs))
            for i, w in enumerate(weights):
                current[i] += w
            chosen = max(range(len(refs)), key=lambda i: current[i])
            current[chosen] -= sum(weights)
        return refs[chosen]

    # forwarding -----------------------------------------------------------------------------------------

    def _forward(self, namespace: str, ref: dict, method: str, path: str, headers: dict, body: bytes
                 ) -> tuple[int, list[tuple[str, str]], bytes]:
        port = self.backends.get((namespace, ref["name"], ref["port"]))
        if port is None:
            return 503, [], b"no healthy upstream"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheaders(), response.read()
        except ConnectionRefusedError:
            return 503, [], b"upstream connect error: connection refused"
        finally:
            conn.close()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        if "chunked" in (request.headers.get("Transfer-Encoding") or ""):
            raise NotImplementedError("chunked request bodies")
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        path, _, query = request.path.partition("?")
        host = re.sub(r":\d+$", "", request.headers.get("Host") or "")
        entry = {"track": request.headers.get(TRACK_HEADER), "method": request.command, "path": path, "host": host}
        selected = self.select(host, path, request.command, request.headers)
        if selected is None:
            status, headers, answer = 404, [], b"no route"
        else:
            route, rule, match = selected
            namespace = route["metadata"]["namespace"]
            upstream = path
            forwarded = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
            for f in rule.get("filters") or []:
                if f["type"] == "URLRewrite":
                    rewrite = f["urlRewrite"]["path"]
                    assert rewrite["type"] == "ReplacePrefixMatch", rewrite
                    rest = path[len(match["path"]["value"].rstrip("/")):]
                    upstream = (rewrite["replacePrefixMatch"].rstrip("/") + rest) or "/"
                elif f["type"] != "RequestMirror":
                    raise NotImplementedError(f"filter {f['type']}")
            target = upstream + (f"?{query}" if query else "")
            for f in rule.get("filters") or []:
                if f["type"] == "RequestMirror":  # a copy after the rewrite; its answer is dropped
                    mirror = f["requestMirror"]["backendRef"]
                    threading.Thread(target=self._mirror, daemon=True,
                                     args=(namespace, mirror, request.command, target, forwarded, body, entry)).start()
            ref = self._pick(rule)
            if ref is None:
                status, headers, answer = 500, [], b"no backend with weight"
            else:
                status, headers, answer = self._forward(namespace, ref, request.command, target, forwarded, body)
                entry.update(service=ref["name"], upstream=upstream)
        entry["status"] = status
        with self._lock:
            self.log.append(entry)
        request.send_response(status)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                request.send_header(name, value)
        request.send_header("Content-Length", str(len(answer)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(answer)

    def _mirror(self, namespace, ref, method, target, headers, body, entry) -> None:
        status, _, _ = self._forward(namespace, ref, method, target, headers, body)
        with self._lock:
            self.log.append({**entry, "service": ref["name"], "mirror": True, "status": status})

    def requests(self, since: int = 0) -> list[dict]:
        with self._lock:
            return [e for e in self.log[since:] if not e.get("mirror")]


# --- the servers ----------------------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, args: list[str], port: int, ready: str, log: Path, env: dict, cwd: Path,
                 marker: str | None = None):
        self.name, self.port, self.ready, self.log, self.marker = name, port, ready, log, marker
        # Its own session: pytriton starts tritonserver and Python backend stubs, which go with the group.
        self.proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def is_ready(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready:\n{tail}")
        if self.marker and self.marker not in self.log.read_text(errors="replace"):
            return False  # PyTriton's server is up (and ready) before the models are bound: wait for them
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            conn.request("GET", self.ready)
            return conn.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                time.sleep(0.5)  # the group's other members (tritonserver, stubs) follow their parent
                os.killpg(self.proc.pid, 0)  # raises when the whole group is gone
            except (subprocess.TimeoutExpired, PermissionError):
                continue
            except ProcessLookupError:
                return


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """(model, track) -> (server, fail-flag file): a real server per track; while its flag file exists, the
    server's inference fails (HTTP 500 from the server itself)."""
    python = serving_python()
    tmp = tmp_path_factory.mktemp("servers")
    started = time.monotonic()
    running: dict[tuple[str, str], tuple[Server, Path]] = {}
    base_env = {**os.environ, "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "True",
                "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        for track, add, extra in (("stable", "1", []), ("canary", "2", ["--restrict-statistics"])):
            port, flag = free_port(), tmp / f"fail-scorer-{track}"
            running["scorer", track] = (Server(
                f"triton scorer-{track}", [python, str(FIXTURES / "triton_server.py"), str(port), add,
                                           "--fail-flag", str(flag), "--workspace", str(tmp / f"pytriton-{track}"),
                                           *extra],
                port, "/v2/health/ready", tmp / f"scorer-{track}.log", base_env, tmp, marker="READY"), flag)
        bentoml = str(Path(python).parent / "bentoml")
        for track in ("stable", "shadow"):
            port, flag = free_port(), tmp / f"fail-ranker-{track}"
            running["ranker", track] = (Server(
                f"bentoml ranker-{track}", [bentoml, "serve", "bento_service:Ranker", "--host", "127.0.0.1",
                                            "--port", str(port)],
                port, "/readyz", tmp / f"ranker-{track}.log", {**base_env, "PLINTH_TEST_FAIL_FLAG": str(flag)},
                FIXTURES), flag)
        waiting = dict(running)
        while waiting:
            waiting = {k: v for k, v in waiting.items() if not v[0].is_ready()}
            if waiting and time.monotonic() - started > START_SECONDS:
                pytest.fail(f"not ready after {START_SECONDS}s: {sorted(waiting)}")
            time.sleep(0.5)
        print(f"\n[verify] 4 servers ready in {time.monotonic() - started:.1f}s")
        yield running
    finally:
        for server, _ in running.values():
            server.stop()


def backends(services: list[dict], ports: dict[tuple[str, str], int | None]) -> dict:
    """Each Service of the plan -> the server of its model and track (by the Service's selector labels)."""
    out = {}
    for service in services:
        selector = service["spec"]["selector"]
        key = (selector["plinth.dev/model"], selector["plinth.dev/track"])
        for port in service["spec"]["ports"]:
            if port["name"] == "http":
                out[service["metadata"]["namespace"], service["metadata"]["name"], port["port"]] = ports[key]
    return out


@pytest.fixture
def gateway(planned, servers):
    """gateway(down=(), routes=None, tls=None) -> a RouteGateway over the plan's routes and the real servers,
    tracks in `down` without endpoints."""
    made = []

    def _make(down=(), routes=None, tls=None) -> RouteGateway:
        ports = {key: (None if key in down else server.port) for key, (server, _) in servers.items()}
        made.append(RouteGateway(routes if routes is not None else planned[0], backends(planned[1], ports), tls))
        return made[-1]

    yield _make
    for gw in made:
        gw.close()


def verify_json(spec_file: Path, url: str, *args: str, env: dict | None = None):
    run = plinth("verify", str(spec_file), "--url", url, "--json", *args, env=env)
    assert "Traceback" not in run.stderr, run.stderr
    return run, json.loads(run.stdout) if run.stdout.strip() else None


def assert_routed_to_own_track(requests: list[dict]) -> None:
    """Every request verify sent for a track reached that track's Service, and it asked for every track."""
    assert requests, "verify sent nothing through the gateway"
    for entry in requests:
        team, model = entry["path"].split("/")[1:3]
        assert entry.get("service") == SERVICES[team, model, entry["track"]], entry


# --- the tests ------------------------------------------------------------------------------------------


def test_every_track_passes_through_the_route(spec_file, gateway):
    gw = gateway()
    started = time.monotonic()
    run = plinth("verify", str(spec_file), "--url", f"http://127.0.0.1:{gw.port}")
    print(f"[verify] 4 tracks verified in {time.monotonic() - started:.2f}s (CLI start included)")
    assert run.returncode == 0, run.stdout + run.stderr
    rows = [line for line in run.stdout.splitlines() if "│" in line and ("/scorer" in line or "/ranker" in line)]
    assert len(rows) == 4, run.stdout
    for (team, model, track), row in zip(TRACKS, rows):
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert cells[:6] == [f"{team}/{model}", "triton" if model == "scorer" else "bentoml", track, "ok", "ok", "ok"]
        assert re.fullmatch(r"\d+\.\d ms", cells[6]), cells
        assert cells[7] == ("pass scorer" if model == "scorer" else "pass POST /rank"), cells
    assert "4 tracks passed" in run.stdout
    requests = gw.requests()
    assert_routed_to_own_track(requests)
    assert {(e["track"], e["method"], e["upstream"]) for e in requests} >= {
        (t, "POST", "/v2/models/scorer/infer") for t in ("stable", "canary")} | {
        (t, "POST", "/rank") for t in ("stable", "shadow")} | {
        (t, "GET", "/v2/health/ready") for t in ("stable", "canary")} | {(t, "GET", "/readyz") for t in ("stable",
                                                                                                          "shadow")}
    assert all(e["host"] == HOST for e in requests)


def test_json_reports_each_check_and_its_latency(spec_file, gateway):
    gw = gateway()
    run, report = verify_json(spec_file, f"http://127.0.0.1:{gw.port}", "--timeout", "30")
    assert run.returncode == 0, run.stderr
    assert set(report) == {"url", "host", "timeout", "passed", "tracks"}
    assert (report["url"], report["host"], report["timeout"], report["passed"]) == (
        f"http://127.0.0.1:{gw.port}", HOST, 30.0, True)
    assert [(t["team"], t["model"], t["track"]) for t in report["tracks"]] == TRACKS
    for track in report["tracks"]:
        assert set(track) == {"team", "model", "runtime", "track", "passed", "latency_ms", "target", "checks"}
        assert [c["check"] for c in track["checks"]] == ["health", "metadata", "inference"]
        assert all(set(c) == {"check", "passed", "status", "ms", "detail"} and c["passed"] and c["status"] == 200
                   for c in track["checks"])
        assert track["passed"] and track["latency_ms"] == track["checks"][2]["ms"] > 0
    stable, canary, ranker, shadow = report["tracks"]
    # Triton: the repository's models from the statistics API; the canary's server restricts it (PyTriton's
    # default), so verify takes the spec's model name there.
    assert stable["checks"][1]["detail"] == "2 models: preprocess, scorer"
    assert canary["checks"][1]["detail"].startswith("1 model: scorer (statistics not served, HTTP 4")
    assert stable["target"] == canary["target"] == "scorer"
    assert stable["checks"][2]["detail"] == "scorer -> OUTPUT FP32[1, 1]"
    # BentoML: the first of its two APIs, from /docs.json.
    assert ranker["target"] == shadow["target"] == "POST /rank"
    assert ranker["checks"][1]["detail"] == "POST /rank of 2 APIs"


def test_model_filter(spec_file, gateway):
    gw = gateway()
    for selector in ("ranker", "search/ranker"):
        since = len(gw.requests())
        run, report = verify_json(spec_file, f"http://127.0.0.1:{gw.port}", "--model", selector)
        assert run.returncode == 0, run.stderr
        assert [(t["model"], t["track"]) for t in report["tracks"]] == [("ranker", "stable"), ("ranker", "shadow")]
        assert {e["path"].split("/")[2] for e in gw.requests(since)} == {"ranker"}


def test_a_failing_track_fails_verify_and_is_named(spec_file, gateway, servers):
    # The canary's Service has no endpoints (the gateway answers 503, as Envoy does); the shadow's server
    # answers 500 to inference.
    gw = gateway(down={("scorer", "canary")})
    flag = servers["ranker", "shadow"][1]
    flag.write_text("fail", encoding="utf-8")
    try:
        run, report = verify_json(spec_file, f"http://127.0.0.1:{gw.port}")
        text = plinth("verify", str(spec_file), "--url", f"http://127.0.0.1:{gw.port}")
    finally:
        flag.unlink()
    assert run.returncode == 1 and text.returncode == 1
    assert report["passed"] is False
    outcome = {(t["model"], t["track"]): t for t in report["tracks"]}
    assert [k for k, t in outcome.items() if not t["passed"]] == [("scorer", "canary"), ("ranker", "shadow")]
    canary = outcome["scorer", "canary"]
    assert [(c["check"], c["passed"], c["status"]) for c in canary["checks"]] == [("health", False, 503)]
    assert "no healthy upstream" in canary["checks"][0]["detail"] and canary["latency_ms"] is None
    shadow = outcome["ranker", "shadow"]
    assert [(c["check"], c["passed"], c["status"]) for c in shadow["checks"]] == [
        ("health", True, 200), ("metadata", True, 200), ("inference", False, 500)]
    assert shadow["checks"][2]["detail"].startswith("POST /rank: HTTP 500")
    assert "2 of 4 tracks failed: fraud/scorer canary, search/ranker shadow" in text.stdout
    assert "2 of 4 tracks failed" in run.stderr  # --json: the summary goes to stderr
    rows = {line.split("│")[3].strip(): line for line in text.stdout.splitlines()
            if "│" in line and "/scorer" in line}
    assert "FAIL health: HTTP 503" in rows["canary"] and "pass scorer" in rows["stable"]
    assert_routed_to_own_track(gw.requests())


def test_a_triton_model_that_errors_fails_inference(spec_file, gateway, servers):
    gw = gateway()
    flag = servers["scorer", "stable"][1]
    flag.write_text("fail", encoding="utf-8")
    try:
        run, report = verify_json(spec_file, f"http://127.0.0.1:{gw.port}", "--model", "scorer")
    finally:
        flag.unlink()
    assert run.returncode == 1
    stable, canary = report["tracks"]
    assert (stable["passed"], canary["passed"]) == (False, True)
    assert [(c["check"], c["passed"]) for c in stable["checks"]] == [
        ("health", True), ("metadata", True), ("inference", False)]
    assert stable["checks"][2]["status"] == 500
    assert stable["checks"][2]["detail"].startswith('scorer: HTTP 500: {"error":"Failed to process')


def test_without_the_track_rules_requests_stray_to_other_tracks(spec_file, planned, gateway):
    """The negative control of the routing assertion: the same routes minus their header rules (the route before
    track selection) split the canary's probes by weight, and the log shows it."""
    routes = [{**r, "spec": {**r["spec"], "rules": [rule for rule in r["spec"]["rules"]
                                                    if not any("headers" in m for m in rule["matches"])]}}
              for r in planned[0]]
    gw = gateway(routes=routes)
    run, _ = verify_json(spec_file, f"http://127.0.0.1:{gw.port}", "--model", "scorer")
    strays = [e for e in gw.requests() if e["track"] == "canary" and e["service"] != "scorer-canary"]
    assert strays, gw.requests()
    with pytest.raises(AssertionError):
        assert_routed_to_own_track(gw.requests())


def _certificates(tmp: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its PEM file) and a server context with a certificate for HOST signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, sans=None):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("plinth test CA", ca_key, "plinth test CA", ca_key, True)
    leaf = cert(HOST, key, "plinth test CA", ca_key, False, [x509.DNSName(HOST)])
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(ca.public_bytes(pem))
    (tmp / "server.pem").write_bytes(leaf.public_bytes(pem) + key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "server.pem")
    return tmp / "ca.pem", context


def test_https_checks_the_serving_host_name_against_the_trusted_ca(spec_file, gateway, tmp_path):
    """Over TLS to an address (a port-forward), the server name sent and checked is serving.hostname, for the
    every request alike; trust comes from SSL_CERT_FILE (e.g. the platform CA)."""
    ca, context = _certificates(tmp_path)
    gw = gateway(tls=context)
    url = f"https://127.0.0.1:{gw.port}"
    run, report = verify_json(spec_file, url, env={"SSL_CERT_FILE": str(ca)})
    assert run.returncode == 0, run.stderr
    assert all(t["passed"] for t in report["tracks"])
    assert_routed_to_own_track(gw.requests())
    # Without the CA: every track fails at its first request, on the certificate.
    run, report = verify_json(spec_file, url, "--model", "ranker",
                              env={"SSL_CERT_FILE": str(tmp_path / "server.pem")})  # a leaf, not the CA
    assert run.returncode == 1
    assert all("CERTIFICATE_VERIFY_FAILED" in t["checks"][0]["detail"] for t in report["tracks"])


# --- without servers: bad input and an unreachable Gateway ----------------------------------------------


def test_unknown_model_exits_2_without_traceback(spec_file):
    run = plinth("verify", str(spec_file), "--model", "nope", "--url", "http://127.0.0.1:9")
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr == "--model: no served model 'nope' (served: fraud/scorer, search/ranker)\n1 error\n"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1", "127.0.0.1:8080", "http://", "http://host:99999",
                                 "http://host/?q=1", "http://user:pw@host"])
def test_a_bad_url_exits_2(spec_file, url):
    run = plinth("verify", str(spec_file), "--url", url)
    assert run.returncode == 2 and run.stdout == "" and "Traceback" not in run.stderr
    assert run.stderr.startswith(f"--url: {url!r}: "), run.stderr


def test_bad_specs_and_options_exit_2(spec_file, write):
    for timeout in ("0", "-1", "nan", "inf"):
        run = plinth("verify", str(spec_file), "--timeout", timeout)
        assert run.returncode == 2 and run.stderr.startswith("--timeout: expected seconds above 0 and at most 3600")
    run = plinth("verify", str(spec_file), "--model", "nope", "--url", "ftp://x", "--timeout", "0")
    assert run.returncode == 2 and run.stderr.endswith("\n3 errors\n")  # every bad input at once
    # Without the Gateway: no routes (and neither canary nor shadow, which need it).
    unrouted = SPEC.split("network:")[0] + "monitoring: {enabled: true}\nteams: [{name: search}]\nserving:\n" + \
        "  models:\n" + \
        "    - {name: ranker, team: search, runtime: bentoml, image: registry.corp.internal/ml/ranker,\n" + \
        "       stable: {version: \"1.0.0\"}}\n"
    unrouted = write("unrouted.yaml", unrouted)
    run = plinth("verify", str(unrouted))
    assert run.returncode == 2 and "serving: the models are not routed through the platform Gateway" in run.stderr
    invalid = write("invalid.yaml", SPEC.replace("runtime: bentoml", "runtime: torchserve"))
    run = plinth("verify", str(invalid))
    assert run.returncode == 2 and "invalid.yaml:" in run.stderr and "Traceback" not in run.stderr


def test_an_unreachable_url_fails_every_track_promptly(spec_file):
    # Refused: at once.
    started = time.monotonic()
    run, report = verify_json(spec_file, f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1 and time.monotonic() - started < 15
    assert [len(t["checks"]) for t in report["tracks"]] == [1, 1, 1, 1]  # stops at the health check
    assert all(t["checks"][0]["detail"].startswith("unreachable: ConnectionRefusedError") for t in report["tracks"])
    # Accepted by the kernel but never answered: each track waits one --timeout, then stops.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        started = time.monotonic()
        run, report = verify_json(spec_file, f"http://127.0.0.1:{silent.getsockname()[1]}", "--timeout", "1")
        elapsed = time.monotonic() - started
    assert run.returncode == 1 and elapsed < 4 * 1 + 10, elapsed
    assert all(t["checks"][0]["detail"] == "unreachable: timed out" for t in report["tracks"])


def test_example_inputs_from_schemas():
    document = {"components": {"schemas": {"Item": {"type": "object", "required": ["id", "tags"], "properties": {
        "id": {"type": "integer", "minimum": 3}, "tags": {"type": "array", "items": {"type": "string"}},
        "note": {"type": "string"}}}}},
        "paths": {"/readyz": {"get": {}}, "/upload": {"post": {"x-bentoml-name": "upload", "requestBody": {
            "content": {"multipart/form-data": {"schema": {}}}}}},
            "/predict": {"post": {"x-bentoml-name": "predict", "requestBody": {"content": {"application/json": {
                "schema": {"type": "object", "required": ["items", "mode", "when", "scale", "flag"], "properties": {
                    "items": {"type": "array", "minItems": 2, "items": {"$ref": "#/components/schemas/Item"}},
                    "mode": {"enum": ["fast", "slow"]}, "when": {"type": "string", "format": "date-time"},
                    "scale": {"anyOf": [{"type": "null"}, {"type": "number", "exclusiveMinimum": 0}]},
                    "flag": {"type": ["null", "boolean"]}, "top": {"type": "integer", "default": 5}}}}}}}}}}
    path, schema = bentoml_api(document)
    assert path == "/predict"  # the first service API taking JSON
    assert example(schema, document) == {"items": [{"id": 3, "tags": [""]}, {"id": 3, "tags": [""]}],
                                         "mode": "fast", "when": "1970-01-01T00:00:00Z", "scale": 1.0, "flag": False}
    with pytest.raises(ValueError, match="no service API takes JSON"):
        bentoml_api({"paths": {"/upload": document["paths"]["/upload"]}})
    with pytest.raises(ValueError, match="does not resolve"):
        example({"$ref": "#/components/schemas/Missing"}, document)


def test_triton_inputs_are_zeros_of_the_metadata_shapes():
    header, data = triton_request({"inputs": [{"name": "X", "datatype": "FP16", "shape": [-1, 3]},
                                              {"name": "T", "datatype": "BYTES", "shape": [2]},
                                              {"name": "B", "datatype": "BF16", "shape": [-1]}]})
    assert json.loads(header) == {"inputs": [
        {"name": "X", "shape": [1, 3], "datatype": "FP16", "parameters": {"binary_data_size": 6}},
        {"name": "T", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 8}},
        {"name": "B", "shape": [1], "datatype": "BF16", "parameters": {"binary_data_size": 2}}]}
    assert data == bytes(6 + 8 + 2)  # zeros; each empty BYTES element is its 4-byte length, 0
    with pytest.raises(ValueError, match="datatype COMPLEX"):
        triton_request({"inputs": [{"name": "Z", "datatype": "COMPLEX", "shape": [1]}]})


# --- misbehaving servers (no serving environment needed): each once hung verify, or reached the terminal raw --

DOCS = {"paths": {"/predict": {"post": {"x-bentoml-name": "predict", "requestBody": {"content": {
    "application/json": {"schema": {"type": "object", "required": ["x"], "properties": {"x": {"type": "number"}}}}}}}}}}


class Misbehaving(BaseHTTPRequestHandler):
    """A BentoML-like server: /readyz, /docs.json and POST, each answered by `answer(handler)`."""

    protocol_version = "HTTP/1.1"
    answer = None

    def do_GET(self):
        type(self).answer(self)

    do_POST = do_GET

    def log_message(self, *args):
        pass

    def send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(answer, host: str = "127.0.0.1"):
    class Handler(Misbehaving):
        pass

    Handler.answer = staticmethod(answer)

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        daemon_threads = True

    server = Server((host, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def well_behaved(handler) -> None:
    if handler.path.endswith("/docs.json"):
        handler.send(200, json.dumps(DOCS).encode())
    elif handler.command == "POST":
        handler.send(200, b'{"y": 1}')
    else:
        handler.send(200, b"ok")


def test_a_server_dripping_its_answer_is_cut_at_the_deadline(spec_file):
    def drip(handler):
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(600):  # one byte a tenth of a second: each read is quick, the whole never comes
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(0.1)

    server = serve(drip)
    started = time.monotonic()
    run = plinth("verify", str(spec_file), "--model", "ranker", "--timeout", "2", "--json", "--url",
                 f"http://127.0.0.1:{server.server_address[1]}", timeout=60)
    elapsed = time.monotonic() - started
    server.shutdown()
    report = json.loads(run.stdout)
    assert run.returncode == 1 and elapsed < 2 * 2 + 20, elapsed
    assert [t["checks"][0]["detail"] for t in report["tracks"]] == ["unreachable: timed out"] * 2


def test_an_answer_above_the_size_limit_is_refused(spec_file, monkeypatch):
    import plinth.modelclient as modelclient
    import plinth.verify as verify

    monkeypatch.setattr(modelclient, "MAX_BODY", 1 << 16)
    server = serve(lambda h: h.send(200, b"x" * (1 << 17)))
    report = verify.verify(load_spec(spec_file), url=f"http://127.0.0.1:{server.server_address[1]}",
                           models=["ranker"], timeout=10)
    server.shutdown()
    assert [t.checks[0].detail for t in report.tracks] == ["unreachable: the answer is larger than the 0 MiB limit"] * 2


def test_server_text_reaches_the_terminal_without_escapes(spec_file):
    from io import StringIO

    from rich.console import Console

    from plinth.verify import table, verify

    hostile = "\x1b]0;owned\x07\x1b[2J\x1b[31mdown\u202e\x00 for\rmaintenance".encode()
    server = serve(lambda h: h.send(503, hostile))
    report = verify(load_spec(spec_file), url=f"http://127.0.0.1:{server.server_address[1]}", models=["ranker"])
    server.shutdown()
    assert report.tracks[0].checks[0].detail == "HTTP 503: down for maintenance"
    shown = StringIO()
    Console(file=shown, width=300, force_terminal=False).print(table(report))
    assert "down for maintenance" in shown.getvalue()
    assert not any(c in shown.getvalue() for c in "\x1b\x07\u202e\x00\r")


def test_an_ipv6_gateway_url_works(spec_file):
    server = serve(well_behaved, host="::1")
    run = plinth("verify", str(spec_file), "--model", "ranker", "--json", "--url",
                 f"http://[::1]:{server.server_address[1]}", timeout=60)
    server.shutdown()
    assert run.returncode == 0, run.stdout + run.stderr
    assert [t["passed"] for t in json.loads(run.stdout)["tracks"]] == [True, True]


def test_request_schemas_are_expanded_within_bounds():
    import signal as signals

    # Each level refers to the next one four times: 4**12 parts if followed without a bound.
    schemas = {f"L{i}": {"type": "object", "required": list("abcd"), "properties": {
        k: {"$ref": f"#/components/schemas/L{i + 1}"} for k in "abcd"}} for i in range(12)}
    schemas["L12"] = {"type": "integer"}
    document = {"components": {"schemas": schemas}}
    signals.signal(signals.SIGALRM, lambda *_: pytest.fail("the expansion did not stop"))
    signals.alarm(20)
    try:
        with pytest.raises(ValueError, match="^the request schema expands to more than 10000 parts$"):
            example({"$ref": "#/components/schemas/L0"}, document)
    finally:
        signals.alarm(0)
    with pytest.raises(ValueError, match="^minItems 10000000 is above the limit of 1000 for a request built here$"):
        example({"type": "array", "minItems": 10_000_000, "items": {"type": "integer"}}, {})
    with pytest.raises(ValueError, match="^minLength 10000000 is above the limit of 1000"):
        example({"type": "string", "minLength": 10_000_000}, {})
    assert example({"type": "array", "minItems": 3, "items": {"type": "integer"}}, {}) == [0, 0, 0]


def test_a_hostile_openapi_document_fails_the_metadata_check(spec_file):
    docs = {"paths": {"/p": {"post": {"x-bentoml-name": "p", "requestBody": {"content": {"application/json": {
        "schema": {"type": "array", "minItems": None}}}}}}}}

    def answer(handler):
        if handler.path.endswith("/docs.json"):
            handler.send(200, json.dumps(docs).encode())
        else:
            handler.send(200, b"ok")

    server = serve(answer)
    run = plinth("verify", str(spec_file), "--model", "ranker", "--json", "--url",
                 f"http://127.0.0.1:{server.server_address[1]}", timeout=60)
    server.shutdown()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    [stable, _] = json.loads(run.stdout)["tracks"]
    assert stable["checks"][1]["detail"] == ("/docs.json: int() argument must be a string, a bytes-like object or a "
                                             "real number, not 'NoneType'")


def test_a_triton_server_dripping_its_statistics_is_cut_at_the_deadline(spec_file):
    def answer(handler):
        if handler.path.endswith("/v2/health/ready"):
            return handler.send(200, b"")
        handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(600):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.1)

    server = serve(answer)
    started = time.monotonic()
    run = plinth("verify", str(spec_file), "--model", "scorer", "--timeout", "2", "--json", "--url",
                 f"http://127.0.0.1:{server.server_address[1]}", timeout=60)
    elapsed = time.monotonic() - started
    server.shutdown()
    assert run.returncode == 1 and elapsed < 2 * 2 + 20, elapsed
    assert [t["checks"][1]["detail"] for t in json.loads(run.stdout)["tracks"]] == ["timed out"] * 2


def test_a_triton_input_shape_is_bounded():
    with pytest.raises(ValueError, match=r"^input x: shape \[100000, 100000\] is above the limit of 1048576 "):
        triton_request({"inputs": [{"name": "x", "datatype": "FP32", "shape": [100000, 100000]}]})


def test_a_triton_track_passes_within_the_deadlines_over_ipv6(spec_file):
    # Just enough of the KServe v2 protocol for one pass.
    def answer(handler):
        if handler.command == "POST":
            handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
            return handler.send(200, json.dumps({"model_name": "scorer", "outputs": [
                {"name": "y", "datatype": "FP32", "shape": [1], "data": [0.5]}]}).encode())
        if handler.path.endswith("/v2/models/stats"):
            return handler.send(200, json.dumps({"model_stats": [{"name": "scorer"}]}).encode())
        if handler.path.endswith("/v2/models/scorer"):
            return handler.send(200, json.dumps({"name": "scorer", "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [-1, 2]}], "outputs": [
                {"name": "y", "datatype": "FP32", "shape": [1]}]}).encode())
        handler.send(200, b"")

    server = serve(answer, host="::1")
    run = plinth("verify", str(spec_file), "--model", "scorer", "--json", "--url",
                 f"http://[::1]:{server.server_address[1]}", timeout=60)
    server.shutdown()
    assert run.returncode == 0, run.stdout + run.stderr
    tracks = json.loads(run.stdout)["tracks"]
    assert [(t["passed"], t["checks"][2]["detail"]) for t in tracks] == [(True, "scorer -> y FP32[1]")] * 2


def test_a_triton_answer_above_the_size_limit_fails_its_check(spec_file):
    huge = json.dumps({"name": "scorer", "inputs": [], "padding": "x" * (9 << 20)}).encode()

    def answer(handler):
        if handler.path.endswith("/v2/models/stats"):
            return handler.send(200, json.dumps({"model_stats": [{"name": "scorer"}]}).encode())
        handler.send(200, huge if handler.path.endswith("/v2/models/scorer") else b"")

    server = serve(answer)
    run = plinth("verify", str(spec_file), "--model", "scorer", "--json", "--url",
                 f"http://127.0.0.1:{server.server_address[1]}", timeout=60)
    server.shutdown()
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert [t["checks"][1]["detail"] for t in json.loads(run.stdout)["tracks"]] == [
        "the answer is larger than the 8 MiB limit"] * 2
