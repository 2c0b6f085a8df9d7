"""The sign-on proxy for real: oauth2-proxy (built from its Go module by tests/e2e/toolchain/build.sh) runs with the
configuration Plinth plans for it (the release's config.configFile, and the Secret's keys as the chart passes them:
OAUTH2_PROXY_* env), in front of a local upstream, against mockoidc (the toolchain's, as in test_signon.py).

Only what cannot be the cluster's is replaced: the upstream (a local server, not the in-cluster Service), the
redirect URL (the proxy's local address, not the Gateway's host name) and the CA file's path (the mounted
ConfigMap's). Everything else (provider, allowed group, claims, PKCE, cookie) is the plan's.
"""

from __future__ import annotations

import http.server
import json
import os
import secrets
import ssl
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

from binaries import toolchain_tool
from oidcserver import NoRedirect, provider_fixture
from support import free_port, stop_process
from test_signon import ADMINS, FRAUD_ENGINEERS
from plinth.engine.offline import plan
from plinth.spec.load import load_spec

pytestmark = [pytest.mark.toolchain]

CLIENT = "plinth-ui-proxy"
HOST = "prometheus.models.signon.internal"


class Upstream(http.server.ThreadingHTTPServer):
    """The UI behind the proxy: answers 200 and keeps each request's headers."""

    def __init__(self):
        self.seen: list[dict[str, str]] = []
        upstream = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                upstream.seen.append({k.lower(): v for k, v in self.headers.items()} | {"path": self.path})
                body = b"the UI"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)


provider = provider_fixture(CLIENT)


@pytest.fixture(scope="module")
def planned(provider, tmp_path_factory):
    """The proxy's configuration file as the plan gives it to the chart, for a spec loaded from its file."""
    spec = {
        "apiVersion": "plinth.dev/v1alpha1", "kind": "Platform",
        "metadata": {"name": "signon", "environment": "dev", "costCenter": "ml-platform"},
        "target": {"type": "existing"},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                    "gateway": {"hostname": "*.models.signon.internal"},
                    "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "monitoring": {"enabled": True},
        "identity": {"oidc": {"issuer": provider.issuer, "certificateAuthority": provider.ca_pem,
                              "clients": {"kubernetes": "plinth-kubernetes", "uiProxy": CLIENT}},
                     "uiProxy": {"enabled": True, "hosts": {"prometheus": HOST}}},
        "rbac": {"platformAdminGroup": ADMINS},
        "teams": [{"name": "fraud", "groups": {"mlEngineer": [FRAUD_ENGINEERS]}}],
    }
    path = tmp_path_factory.mktemp("spec") / "signon.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    [release] = [r for r in plan(load_spec(path), str(path)).resources
                 if r.type == "kubernetes:helm.sh/v3:Release" and r.inputs.get("name") == "prometheus-sign-on"]
    return release.inputs["values"]


@pytest.fixture(scope="module")
def proxy(provider, planned, tmp_path_factory):
    binary = toolchain_tool("oauth2-proxy")
    if binary is None:
        pytest.skip("no oauth2-proxy: run tests/e2e/toolchain/build.sh (it builds tests/e2e/toolchain/oauth2-proxy), "
                    "or set PLINTH_OAUTH2_PROXY")
    work = tmp_path_factory.mktemp("proxy")
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = free_port()
    config = tomllib.loads(planned["config"]["configFile"])
    (work / "ca.crt").write_text(provider.ca_pem)
    assert config["provider_ca_files"] == ["/etc/oauth2-proxy/oidc-ca/ca.crt"]
    assert config["upstreams"] == ["http://kube-prometheus-stack-prometheus.monitoring.svc:9090/"]
    assert config["redirect_url"] == f"https://{HOST}/oauth2/callback"
    local = {"provider_ca_files": [str(work / "ca.crt")],
             "upstreams": [f"http://127.0.0.1:{upstream.server_address[1]}/"],
             "redirect_url": f"http://127.0.0.1:{port}/oauth2/callback"}
    lines = [line for line in planned["config"]["configFile"].splitlines() if line.split(" = ")[0] not in local]
    lines += [f"{key} = {json.dumps(value)}" for key, value in local.items()]
    (work / "oauth2_proxy.cfg").write_text("\n".join(lines) + "\n")
    # The Secret ui-proxy's keys, as the chart hands them over (config.existingSecret: OAUTH2_PROXY_* env).
    assert planned["config"]["existingSecret"] == "ui-proxy"
    env = {**os.environ, "OAUTH2_PROXY_CLIENT_ID": CLIENT, "OAUTH2_PROXY_CLIENT_SECRET": provider.secret,
           "OAUTH2_PROXY_COOKIE_SECRET": secrets.token_hex(16)}
    log = (work / "proxy.log").open("w")
    process = subprocess.Popen([binary, f"--config={work / 'oauth2_proxy.cfg'}", f"--http-address=127.0.0.1:{port}"],
                               env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(f"{base}/ping", timeout=2):
                break
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                stop_process(process)
                pytest.fail(f"oauth2-proxy did not start: {(work / 'proxy.log').read_text()[-2000:]}")
            time.sleep(0.2)
    yield base, upstream
    stop_process(process)
    upstream.shutdown()


class Browser:
    """Follows one sign-in by hand: the proxy's cookies (Secure: sent here over loopback http too), the
    provider's redirects over TLS with its CA."""

    def __init__(self, provider):
        self.cookies: dict[str, str] = {}
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=ssl.create_default_context(cadata=provider.ca_pem)), NoRedirect)

    def get(self, url: str) -> tuple[int, str, bytes]:
        """(status, Location, body) of one request, keeping the cookies it sets."""
        request = urllib.request.Request(url)
        if self.cookies and url.startswith("http://"):
            request.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in self.cookies.items()))
        try:
            with self._opener.open(request, timeout=10) as answer:
                status, headers, body = answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as error:
            status, headers, body = error.code, error.headers, error.read()
        for cookie in headers.get_all("Set-Cookie") or []:
            name, _, value = cookie.split(";")[0].partition("=")
            self.cookies[name.strip()] = value
        return status, headers.get("Location", ""), body

    def to_provider(self, base: str) -> str:
        """The UI's page without a session: where the proxy sends the browser (through its /oauth2/start)."""
        status, location, _ = self.get(f"{base}/graph")
        assert status == 302, status
        if not location.startswith("https://"):
            status, location, _ = self.get(location if "://" in location else base + location)
            assert status == 302, status
        return location

    def sign_in(self, base: str, provider) -> int:
        """From the UI's page through the provider and back: the callback's status."""
        location = self.to_provider(base)
        assert location.startswith(provider.issuer), location
        status, callback, _ = self.get(location)
        assert status == 302 and callback.startswith(f"{base}/oauth2/callback?"), (status, callback)
        status, _, _ = self.get(callback)
        return status


def test_without_a_session_the_proxy_sends_the_browser_to_the_provider(provider, proxy):
    base, upstream = proxy
    seen = len(upstream.seen)
    location = Browser(provider).to_provider(base)
    authorize = urllib.parse.urlsplit(location)
    query = urllib.parse.parse_qs(authorize.query)
    assert location.startswith(provider.issuer) and query["client_id"] == [CLIENT]
    assert query["code_challenge_method"] == ["S256"]  # PKCE, as planned
    assert query["scope"] == ["openid email profile groups"]  # groups: mockoidc, like Dex, sends them only then
    assert len(upstream.seen) == seen  # nothing reached the UI


def test_a_user_outside_the_allowed_group_is_refused(provider, proxy):
    base, upstream = proxy
    seen = len(upstream.seen)
    provider.control("/user", {"subject": "fraud-engineer", "email": "eng@corp.example",
                               "groups": [FRAUD_ENGINEERS]})
    browser = Browser(provider)
    assert browser.sign_in(base, provider) == 403
    status, _, _ = browser.get(f"{base}/graph")
    assert status in (302, 403)  # no session: back to sign-in, never the UI
    assert len(upstream.seen) == seen


def test_a_platform_admin_reaches_the_ui_with_the_groups_passed_on(provider, proxy):
    base, upstream = proxy
    provider.control("/user", {"subject": "admin", "email": "admin@corp.example",
                               "groups": [ADMINS, FRAUD_ENGINEERS]})
    browser = Browser(provider)
    assert browser.sign_in(base, provider) == 302
    assert "_plinth_prometheus" in browser.cookies
    status, _, body = browser.get(f"{base}/graph")
    assert (status, body) == (200, b"the UI")
    request = upstream.seen[-1]
    assert request["path"] == "/graph"
    assert request["x-forwarded-email"] == "admin@corp.example"
    assert set(request["x-forwarded-groups"].split(",")) == {ADMINS, FRAUD_ENGINEERS}
