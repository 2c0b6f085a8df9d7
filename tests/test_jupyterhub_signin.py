"""A real sign-in through JupyterHub: the hub and oauthenticator of the chart's hub image (plinth.catalog.HUB_PACKAGES)
run with the `hub.config` Plinth plans, loaded as the chart's own jupyterhub_config.py loads it (each section into
`c`), against the toolchain's OIDC provider (mockoidc over TLS, its CA given as `identity.oidc.certificateAuthority`).
A person of a team's group gets in with their groups, a platform admin gets in as an admin, anyone else is refused.

What stands in for the pod: the provider's CA at a path of the test's (the chart mounts it at the path the values
name), the client secret in `OAUTH_CLIENT_SECRET` (the pod's from the Secret `jupyterhub-oidc`), and a proxy that
keeps its routes in memory (configurable-http-proxy forwards to the hub; the test calls the hub itself)."""

from __future__ import annotations

import http.cookiejar
import json
import os
import string
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from oidcserver import NoRedirect, mockoidc
from support import external_tool, free_port, stop_process
from test_jupyterhub import HOST, planned, values

CLIENT = "ml-notebooks"
API_TOKEN = "test-service-token-for-the-hub-api"  # the test's own service, never a platform value
CONFIG = string.Template("""\
import json, sys
from jupyterhub.proxy import Proxy


class MemoryProxy(Proxy):
    should_start = False
    routes = {}

    async def add_route(self, routespec, target, data):
        self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

    async def delete_route(self, routespec):
        self.routes.pop(routespec, None)

    async def get_all_routes(self):
        return dict(self.routes)


c = get_config()  # noqa: F821 (JupyterHub's config loader defines it)
# As the chart's jupyterhub_config.py loads hub.config: each section into the config.
with open(sys.argv[sys.argv.index("-f") + 1].replace(".py", ".json")) as f:
    for section, cfg in json.load(f).items():
        c[section].update(cfg)
c.JupyterHub.hub_bind_url = "http://127.0.0.1:$port"
c.JupyterHub.bind_url = "http://127.0.0.1:$public"
c.JupyterHub.proxy_class = MemoryProxy
c.JupyterHub.db_url = "sqlite:///$dir/hub.sqlite"
c.JupyterHub.cookie_secret_file = "$dir/cookie_secret"
c.JupyterHub.services = [{"name": "test", "api_token": "$token"}]
c.JupyterHub.load_roles = [{"name": "test", "scopes": ["admin:users", "admin:groups"], "services": ["test"]}]
""")


def hub_python() -> str:
    return external_tool("PLINTH_HUB_PYTHON", "no JupyterHub environment: set PLINTH_HUB_PYTHON to a Python with "
                         "plinth.catalog.HUB_PACKAGES installed, in its own environment (see .ci/run)")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    python = hub_python()
    workdir = tmp_path_factory.mktemp("hub")
    provider = mockoidc(workdir, CLIENT)
    try:
        oidc = {"issuer": provider.issuer, "certificateAuthority": provider.ca_pem,
                "endpoints": {"authorization": f"{provider.issuer}/authorize", "token": f"{provider.issuer}/token"}}
        config = values(planned(oidc=oidc))["hub"]["config"]
        (workdir / "ca.crt").write_text(provider.ca_pem)
        assert config["GenericOAuthenticator"]["http_request_kwargs"] == {"ca_certs": "/etc/jupyterhub/oidc-ca/ca.crt"}
        config["GenericOAuthenticator"]["http_request_kwargs"]["ca_certs"] = str(workdir / "ca.crt")
        (workdir / "jupyterhub_config.json").write_text(json.dumps(config))
        port = free_port()
        (workdir / "jupyterhub_config.py").write_text(CONFIG.substitute(port=port, public=free_port(), dir=workdir,
                                                                        token=API_TOKEN))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "OAUTH_"))}
        process = subprocess.Popen(
            [python, "-m", "jupyterhub", "-f", str(workdir / "jupyterhub_config.py")], cwd=workdir,
            env={**env, "OAUTH_CLIENT_SECRET": provider.secret}, stdout=(workdir / "hub.log").open("w"),
            stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_up(f"http://127.0.0.1:{port}/hub/health", process, workdir / "hub.log")
            yield provider, f"http://127.0.0.1:{port}", workdir / "hub.log"
        finally:
            stop_process(process)
    finally:
        provider.stop()


def _wait_until_up(url: str, process: subprocess.Popen, log) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the hub exited ({process.returncode}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    pytest.fail(f"the hub did not answer in 60 s:\n{log.read_text()[-3000:]}")


def sign_in(hub, email: str, groups: list[str]) -> tuple[int, str]:
    """A browser's sign-in: the hub's login sends it to the provider, which sends it back to the hub's callback
    (the public URL's path, asked of the hub itself) with a code for the person queued at the provider. The
    callback's status, and where it sends the browser next."""
    provider, url, _ = hub
    provider.control("/user", {"subject": email.split("@")[0], "email": email, "groups": groups})
    browser = provider.browser(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    to_provider = _redirect(browser, f"{url}/hub/oauth_login?next=%2Fhub%2Fhome")
    assert to_provider.startswith(f"{provider.issuer}/authorize?"), to_provider
    asked = urllib.parse.parse_qs(urllib.parse.urlsplit(to_provider).query)
    assert asked["client_id"] == [CLIENT] and asked["code_challenge_method"] == ["S256"], asked
    back = _redirect(browser, to_provider)
    public = f"https://{HOST}/hub/oauth_callback"
    assert back.startswith(public + "?"), back
    try:
        with browser.open(url + back.removeprefix(f"https://{HOST}"), timeout=20) as answer:
            return answer.status, ""
    except urllib.error.HTTPError as answer:
        return answer.code, answer.headers.get("Location") or ""


def _redirect(browser, url: str) -> str:
    try:
        browser.open(url, timeout=20)
    except urllib.error.HTTPError as answer:
        assert answer.code == 302, (answer.code, answer.read()[:500])
        return answer.headers["Location"]
    raise AssertionError(f"{url} did not redirect")


def user(hub, name: str) -> dict | None:
    _, url, _ = hub
    request = urllib.request.Request(f"{url}/hub/api/users/{urllib.parse.quote(name)}",
                                     headers={"Authorization": f"token {API_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as answer:
        if answer.code == 404:
            return None
        raise


def test_without_a_session_the_hub_sends_people_to_sign_on(hub):
    provider, url, _ = hub
    assert _redirect(provider.browser(), f"{url}/hub/home") == "/hub/login?next=%2Fhub%2Fhome"


def test_a_team_member_signs_in_with_the_providers_groups(hub):
    status, then = sign_in(hub, "ana@corp.example", ["fraud-scientists", "unrelated-group"])
    assert (status, then) == (302, "/hub/home"), hub[2].read_text()[-2000:]
    person = user(hub, "ana@corp.example")
    assert person["admin"] is False
    assert sorted(person["groups"]) == ["fraud-scientists", "unrelated-group"]  # manage_groups: the token's groups


def test_a_platform_admin_signs_in_as_an_admin(hub):
    status, _ = sign_in(hub, "root@corp.example", ["ml-admins"])
    assert status == 302, hub[2].read_text()[-2000:]
    assert user(hub, "root@corp.example")["admin"] is True


def test_someone_in_no_team_is_refused(hub):
    status, _ = sign_in(hub, "eve@corp.example", ["marketing"])
    assert status == 403
    assert user(hub, "eve@corp.example") is None


def test_a_team_member_who_leaves_the_groups_is_refused_at_the_next_sign_in(hub):
    assert sign_in(hub, "bob@corp.example", ["credit-scientists"])[0] == 302
    assert sign_in(hub, "bob@corp.example", ["former-staff"])[0] == 403
