"""Signing on to MLflow's REST API (plinth/mlflowauth.py): the credentials and TLS settings of MLflow's own
environment variables, read as MLflow's client reads them, sent as MLflow's client sends them, and never shown.
Against small servers on loopback that record what they got and answer 401 or 403 as the sign-on plugin does; the
real server with the real plugin: tests/test_mlflow_teams.py."""

from __future__ import annotations

import base64
import http.server
import json
import os
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from support import free_port, spec_document
from test_serving import PLATFORM, TRITON
from plinth.lineage import client, lineage
from plinth.mlflowauth import (INSECURE_TLS, PASSWORD, SERVER_CERT_PATH, TOKEN, USERNAME, credentials, signed_on,
                               tls_context)
from plinth.modelclient import Gateway, Unreachable
from plinth.spec.errors import SpecInvalid

TOKEN_VALUE = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNlY3JldA"
PASSWORD_VALUE = "5f0c1d9e-team-token-value"
BASIC_VALUE = base64.b64encode(f"fraud-workloads:{PASSWORD_VALUE}".encode()).decode()
SECRETS = (TOKEN_VALUE, PASSWORD_VALUE, BASIC_VALUE)
MLFLOW = {"registry": {"mlflow": {"enabled": True}}, "storage": {"objectStore": {"enabled": True}},
          "secrets": {"vault": {"enabled": True}}}
SCORER = {**{k: v for k, v in TRITON.items() if k not in ("modelRepository", "repositoryCidrs")},
          "registry": {"model": "fraud.scorer"}, "stable": {"version": "1", "replicas": 2}, "canary": None,
          "shadow": None}


def shows_no_secret(*texts: str) -> bool:
    return not any(secret in text for secret in SECRETS for text in texts)


# --- the variables, as MLflow's client reads them ------------------------------------------------------------


def test_no_variable_sends_nothing_and_empty_ones_count_as_unset():
    assert credentials({}) is None
    assert credentials({TOKEN: "", USERNAME: "", PASSWORD: ""}) is None
    assert tls_context({}) is None


def test_a_token_is_bearer_and_a_user_and_password_basic_which_wins():
    bearer = credentials({TOKEN: TOKEN_VALUE})
    assert (bearer.source, bearer.header) == (TOKEN, f"Bearer {TOKEN_VALUE}")
    basic = credentials({USERNAME: "fraud-workloads", PASSWORD: PASSWORD_VALUE})
    assert (basic.source, basic.header) == (f"{USERNAME} and {PASSWORD}", f"Basic {BASIC_VALUE}")
    # Both kinds set: Basic, as MLflow's client does; half of Basic with a token: the token.
    both = credentials({TOKEN: TOKEN_VALUE, USERNAME: "fraud-workloads", PASSWORD: PASSWORD_VALUE})
    assert both.header == basic.header
    assert credentials({TOKEN: TOKEN_VALUE, USERNAME: "fraud-workloads"}).header == bearer.header
    # A non-ASCII password is UTF-8, as MLflow's client encodes it.
    assert credentials({USERNAME: "u", PASSWORD: "pässword"}).header == \
        "Basic " + base64.b64encode("u:pässword".encode()).decode()


@pytest.mark.parametrize(("environ", "expected"), [
    ({USERNAME: "fraud-workloads"},
     f"{PASSWORD}: {USERNAME} is set but {PASSWORD} is not: HTTP Basic needs both (or set {TOKEN})"),
    ({PASSWORD: PASSWORD_VALUE},
     f"{USERNAME}: {PASSWORD} is set but {USERNAME} is not: HTTP Basic needs both (or set {TOKEN})"),
    ({TOKEN: TOKEN_VALUE + "\n"}, f"{TOKEN}: holds a space, a line break, a control or a non-ASCII character, which "
                                  "a bearer token cannot (copied with its line end?)"),
    ({TOKEN: TOKEN_VALUE + " x"}, None),
    ({USERNAME: "fraud:workloads", PASSWORD: PASSWORD_VALUE},
     f"{USERNAME}: a user name for HTTP Basic holds no `:` and no control character"),
    ({INSECURE_TLS: "yes"}, f"{INSECURE_TLS}: expected true, false, 1 or 0 (any case), got 'yes'"),
    ({INSECURE_TLS: "TRUE", SERVER_CERT_PATH: "/etc/ca.pem"},
     f"{SERVER_CERT_PATH}: set while {INSECURE_TLS} is true: give one of them (MLflow's client refuses both too)"),
])
def test_a_variable_no_request_can_carry_is_bad_input_naming_it_not_its_value(environ, expected):
    with pytest.raises(SpecInvalid) as raised:
        credentials(environ)
        tls_context(environ)
    [error] = raised.value.errors
    if expected is not None:
        assert str(error) == expected
    assert shows_no_secret(str(error), repr(raised.value))


def test_tls_settings_as_mlflows_client_takes_them(tmp_path):
    insecure = tls_context({INSECURE_TLS: "1"})
    assert (insecure.check_hostname, insecure.verify_mode) == (False, ssl.CERT_NONE)
    assert tls_context({INSECURE_TLS: "False"}) is None and tls_context({INSECURE_TLS: "0"}) is None
    absent = tmp_path / "absent.pem"
    with pytest.raises(SpecInvalid) as raised:
        tls_context({SERVER_CERT_PATH: str(absent)})
    assert str(raised.value.errors[0]).startswith(
        f"{SERVER_CERT_PATH}: {absent}: not a readable PEM CA bundle (FileNotFoundError: ")


def test_no_repr_str_or_exception_shows_a_credential():
    for environ, secret in (({TOKEN: TOKEN_VALUE}, TOKEN_VALUE),
                            ({USERNAME: "fraud-workloads", PASSWORD: PASSWORD_VALUE}, PASSWORD_VALUE)):
        found = credentials(environ)
        gateway = signed_on(Gateway.parse("http://127.0.0.1:5000", 5, "x"), environ)
        assert shows_no_secret(repr(found), str(found), repr(gateway), str(gateway))
        # What a server may echo: the header, or the secret alone.
        assert found.redact(f"echo: {found.header}, {secret}") == "echo: ***, ***"


# --- what the server gets, and what a refusal says -----------------------------------------------------------


class Recording(http.server.BaseHTTPRequestHandler):
    """Records each request's Authorization header; answers `answer` (status, body) to every request."""

    seen: list[str | None] = []
    answer: tuple[int, bytes] = (200, b"{}")

    def _serve(self):
        Recording.seen.append(self.headers.get("Authorization"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _serve  # noqa: N815  (http.server's names)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recording.seen, Recording.answer = [], (200, b"{}")
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


VERSION = json.dumps({"model_version": {"name": "fraud.scorer", "version": "1", "run_id": "r1"}}).encode()


def test_every_request_carries_the_header_mlflows_client_sends(recording, monkeypatch):
    Recording.answer = (200, VERSION)
    monkeypatch.setenv(TOKEN, TOKEN_VALUE)
    lineage(spec_of([SCORER]), recording)
    assert Recording.seen == [f"Bearer {TOKEN_VALUE}"] * 2  # the version, then its run
    Recording.seen = []
    monkeypatch.setenv(USERNAME, "fraud-workloads")
    monkeypatch.setenv(PASSWORD, PASSWORD_VALUE)
    lineage(spec_of([SCORER]), recording)
    assert Recording.seen == [f"Basic {BASIC_VALUE}"] * 2
    for name in (TOKEN, USERNAME, PASSWORD):
        monkeypatch.delenv(name)
    Recording.seen = []
    lineage(spec_of([SCORER]), recording)
    assert Recording.seen == [None] * 2


def test_refusals_say_where_what_whose_and_which_variable(recording, monkeypatch):
    for name in (TOKEN, USERNAME, PASSWORD):
        monkeypatch.delenv(name, raising=False)
    Recording.answer = (401, b'{"detail": "Authentication required"}')
    [track] = lineage(spec_of([SCORER]), recording).tracks
    assert track.error == (
        f"MLflow at {recording} requires sign-on for version 1 of registered model 'fraud.scorer' (HTTP 401: "
        f"Authentication required): set {TOKEN} (a token the identity provider issued to MLflow's client) or "
        f"{USERNAME} and {PASSWORD} (a team's service account and its token, or your user and an access token made "
        "in MLflow's UI)")
    # A server echoing the credential: it is not shown.
    monkeypatch.setenv(TOKEN, TOKEN_VALUE)
    Recording.answer = (401, json.dumps({"detail": f"bad token {TOKEN_VALUE}"}).encode())
    [track] = lineage(spec_of([SCORER]), recording).tracks
    assert track.error == (
        f"MLflow at {recording} did not accept the credentials in {TOKEN} for version 1 of registered model "
        "'fraud.scorer' (HTTP 401: bad token ***): set a fresh token from the identity provider, issued to MLflow's "
        "client")
    Recording.answer = (403, b'{"message": "Permission denied"}')
    [track] = lineage(spec_of([SCORER]), recording).tracks
    assert track.error == (
        f"MLflow at {recording} refused version 1 of registered model 'fraud.scorer' to the credentials in {TOKEN} "
        "(HTTP 403: Permission denied): it is team fraud's; sign on as a member of one of its groups, or as its "
        "service account fraud-workloads")


def spec_of(models: list[dict]):
    from plinth.spec.models import PlatformSpec

    return PlatformSpec.model_validate(document(models))


def document(models: list[dict]) -> dict:
    found = spec_document({k: v for k, v in PLATFORM.items() if k != "serving"}, MLFLOW)
    found["serving"] = {**PLATFORM["serving"], "models": models}
    return found


def plinth(*args: str, cwd: Path, **environ: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    return subprocess.run([sys.executable, "-c", "from plinth.cli import main; main()", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**clean, "NO_COLOR": "1", "PLINTH_DEBUG": "", **environ})


def test_the_cli_exits_1_on_a_refusal_and_2_on_a_bad_variable_never_showing_one(recording, tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(json.dumps(document([SCORER])))
    Recording.answer = (403, b'{"message": "Permission denied"}')
    done = plinth("lineage", str(path), "--url", recording, "--json", cwd=tmp_path, **{TOKEN: TOKEN_VALUE})
    assert done.returncode == 1, done.stderr
    [track] = json.loads(done.stdout)["tracks"]
    assert "refused version 1 of registered model 'fraud.scorer' to the credentials in MLFLOW_TRACKING_TOKEN" in \
        track["error"]
    assert "Traceback" not in done.stderr and shows_no_secret(done.stdout, done.stderr)
    Recording.seen = []
    done = plinth("lineage", str(path), "--url", recording, cwd=tmp_path,
                  **{TOKEN: TOKEN_VALUE + "\r\nX-Injected: 1", USERNAME: "fraud-workloads"})
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.splitlines() == [
        f"{TOKEN}: holds a space, a line break, a control or a non-ASCII character, which a bearer token cannot "
        "(copied with its line end?)", "1 error"]
    assert Recording.seen == [] and shows_no_secret(done.stderr)


# --- https: the CA bundle, or no check ----------------------------------------------------------------------


@pytest.fixture
def https(tmp_path):
    pytest.importorskip("cryptography")
    from e2e.controlplane import _generate_pki

    pki = _generate_pki(tmp_path / "pki", ["localhost"], ["127.0.0.1"])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recording)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["apiserver.crt"], pki["apiserver.key"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Recording.seen, Recording.answer = [], (200, b"{}")
    yield f"https://127.0.0.1:{server.server_address[1]}", pki["ca.crt"]
    server.shutdown()
    server.server_close()


def test_https_checks_against_the_bundle_named_or_not_at_all(https, monkeypatch):
    url, ca = https
    for name in (INSECURE_TLS, SERVER_CERT_PATH):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(Unreachable, match="CERTIFICATE_VERIFY_FAILED"):
        client(url, 5).request("GET", "/health", {})  # a CA of its own: not among the system's
    assert client(url, 5, {SERVER_CERT_PATH: str(ca)}).request("GET", "/health", {})[0] == 200
    assert client(url, 5, {INSECURE_TLS: "true"}).request("GET", "/health", {})[0] == 200
    # The bundle replaces the system's CAs, as MLflow's client (requests' `verify`) takes it.
    assert tls_context({SERVER_CERT_PATH: str(ca)}).cert_store_stats()["x509_ca"] == 1


def test_an_unreachable_server_says_so_and_shows_no_credential(monkeypatch):
    monkeypatch.setenv(TOKEN, TOKEN_VALUE)
    url = f"http://127.0.0.1:{free_port()}"
    [track] = lineage(spec_of([SCORER]), url, timeout=5).tracks
    assert track.error.startswith("ConnectionRefusedError") and shows_no_secret(track.error)


def test_a_refused_alias_move_says_which_permission_it_needs():
    from plinth.lineage import Denied

    mlflow = client("http://127.0.0.1:5000", 5, {USERNAME: "fraud-workloads", PASSWORD: PASSWORD_VALUE})
    source = f"{USERNAME} and {PASSWORD}"
    removing = Denied(mlflow, 403, b'{"message": "Permission denied"}',
                      "removing alias 'challenger' of registered model 'fraud.scorer'")
    assert removing.explain("fraud") == (
        "MLflow at http://127.0.0.1:5000 refused removing alias 'challenger' of registered model 'fraud.scorer' to "
        f"the credentials in {source} (HTTP 403: Permission denied): it is team fraud's; removing an alias needs "
        "MANAGE on the model: sign on as one of its ml-engineers (its service account fraud-workloads has EDIT only)")
    setting = Denied(mlflow, 403, b"", "setting alias 'champion' of registered model 'fraud.scorer'")
    assert str(setting) == (
        "MLflow at http://127.0.0.1:5000 refused setting alias 'champion' of registered model 'fraud.scorer' to the "
        f"credentials in {source} (HTTP 403): setting an alias needs EDIT on the model: sign on as one of the owning "
        "team's ml-engineers or data scientists")
    assert shows_no_secret(str(removing), removing.explain("fraud"), str(setting))
