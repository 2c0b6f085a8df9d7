"""mockoidc, the toolchain's OIDC provider (tests/e2e/toolchain/mockoidc), run over TLS with a CA of its own: its
issuer, its CA and client secret, and ID tokens from its authorization-code flow, the way a user's sign-in gets
them. The sign-on tests (the API server, the UIs' proxy, MLflow's per-team permissions) all use it."""

from __future__ import annotations

import json
import select
import ssl
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from support import stop_process

REDIRECT = "http://127.0.0.1/callback"
"""Where the provider sends the browser back with the code (never called: the tests read the redirect)."""


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects come back as HTTPError 3xx: the tests read where they point."""

    def redirect_request(self, *args, **kwargs):
        return None


class Provider:
    """The running mockoidc, serving one client at a time (`client`, the audience of its tokens)."""

    def __init__(self, binary: str, workdir: Path, client: str):
        from e2e.controlplane import _generate_pki

        pki = _generate_pki(workdir / "pki", ["localhost"], ["127.0.0.1"])  # a CA of its own, not a cluster's
        self.ca_pem = pki["ca.crt"].read_text()
        self._tls = ssl.create_default_context(cafile=str(pki["ca.crt"]))
        self._process = subprocess.Popen(
            [binary, "-listen", "127.0.0.1:0", "-cert", str(pki["apiserver.crt"]), "-key", str(pki["apiserver.key"]),
             "-client-id", client], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        ready, _, _ = select.select([self._process.stdout], [], [], 30)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("{"):
            self.stop()
            raise RuntimeError(f"mockoidc did not start: {line!r}")
        started = json.loads(line)
        self.issuer, self.secret, self._control = started["issuer"], started["clientSecret"], started["control"]
        self.client = client

    def stop(self) -> None:
        stop_process(self._process)

    def control(self, path: str, body: dict | None = None) -> None:
        request = urllib.request.Request(self._control + path, data=json.dumps(body or {}).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 204, path

    def as_client(self, client: str) -> None:
        """From now on the flow serves `client`: its tokens carry it as their audience."""
        if client != self.client:
            self.control(f"/client?id={client}")
            self.client = client

    def browser(self, *handlers: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
        """An opener that trusts the provider's CA, goes through no proxy and hands redirects back (NoRedirect)."""
        return urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(
            context=self._tls), NoRedirect, *handlers)

    def id_token(self, email: str, groups: list[str], client: str | None = None) -> str:
        """An ID token for `email` in `groups`, issued to `client` (default: the one served now), the way kubectl's
        OIDC login gets one: authorize, then redeem the code at the token endpoint."""
        served = self.client
        self.as_client(client or served)
        try:
            self.control("/user", {"subject": email.split("@")[0], "email": email, "groups": groups})
            query = urllib.parse.urlencode({"client_id": self.client, "response_type": "code", "state": "test",
                                            "scope": "openid email groups", "redirect_uri": REDIRECT})
            try:
                self.browser().open(f"{self.issuer}/authorize?{query}", timeout=10)
                raise AssertionError("the provider did not redirect back with a code")
            except urllib.error.HTTPError as redirect:
                assert redirect.code == 302, redirect.read()
                code = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect.headers["Location"]).query)["code"][0]
            form = urllib.parse.urlencode({"grant_type": "authorization_code", "code": code, "client_id": self.client,
                                           "client_secret": self.secret, "redirect_uri": REDIRECT}).encode()
            with urllib.request.urlopen(f"{self.issuer}/token", data=form, context=self._tls, timeout=10) as answer:
                return json.loads(answer.read())["id_token"]
        finally:
            self.as_client(served)


def mockoidc(directory: Path, client: str) -> Provider:
    """The toolchain's mockoidc serving `client`, its files in `directory`; absent, the test skips saying how to
    build it."""
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where a test needs mockoidc

    binary = toolchain_tool("mockoidc")
    if binary is None:
        pytest.skip("no mockoidc: run tests/e2e/toolchain/build.sh (it builds tests/e2e/toolchain/mockoidc), "
                    "or set PLINTH_MOCKOIDC")
    return Provider(binary, directory, client)


def provider_fixture(client: str):
    """A module-scoped fixture: mockoidc serving `client` for a test module (`provider = provider_fixture(...)`)."""

    @pytest.fixture(scope="module")
    def provider(tmp_path_factory):
        running = mockoidc(tmp_path_factory.mktemp("oidc"), client)
        yield running
        running.stop()
    return provider
