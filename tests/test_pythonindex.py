"""The private Python package index: what Plinth declares for it, and that exact server, run for real.

The real-server test runs pypiserver (the version the image ships) with the Deployment's own
arguments, uploads a wheel with and without an account, and installs it with the pip.conf a
team namespace gets.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from pathlib import Path

import kubernetes_validate
import pulumi
import pytest

from support import MINIMAL, by_key, free_port, platform_spec, stop_process
from plinth.context import StackSecrets
from plinth.engine.offline import plan, record
from plinth.mirror import mirror_list
from plinth.plan import SECRET
from plinth.program import build_platform
from plinth.engine.manifests import redact
from plinth.spec.errors import SpecInvalid
from plinth.spec.load import load_spec
from plinth.spec.models import PlatformSpec
from plinth.stackconfig import required_secrets

IMAGE = "docker.io/pypiserver/pypiserver:v2.4.2"
IN_CLUSTER = "http://pypiserver.python-index.svc:8080/simple/"
GATEWAY = {"network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
           "certificates": {"certManager": {"enabled": True}}}
TEAMS = ("fraud", "search")


def spec(**overrides) -> PlatformSpec:
    return platform_spec({"teams": [{"name": "search"}]}, overrides)


def index(**fields) -> dict:
    return {"registry": {"pythonIndex": fields}}


def resources(**overrides) -> dict:
    """(kind, namespace, name) -> Resource of every Kubernetes object the spec plans."""
    return by_key(plan(spec(**overrides), "test"))


def pip_confs(objects: dict) -> dict[str, str]:
    return {ns: r.inputs["data"]["pip.conf"] for (kind, ns, name), r in objects.items()
            if kind == "ConfigMap" and name == "pip-config"}


def server(objects: dict) -> dict:
    return objects[("Deployment", "python-index", "pypiserver")].inputs


@pytest.fixture(scope="module")
def enabled():
    return resources(**index(enabled=True))


# --- what Plinth declares -------------------------------------------------------------------------


def test_the_server_never_falls_back_and_uploads_need_an_account(enabled):
    deployment = server(enabled)
    pod = deployment["spec"]["template"]["spec"]
    container, = pod["containers"]
    args = container["args"]
    assert container["command"] == ["pypi-server"] and args[0] == "run"
    assert "--disable-fallback" in args and "--fallback-url" not in args
    assert args[args.index("--authenticate") + 1] == "update"
    # The password file is the htpasswd Secret's key, mounted read-only.
    password_file = args[args.index("--passwords") + 1]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"]["secretName"] == "python-index-htpasswd"
    assert password_file == mounts[secret_volume["name"]]["mountPath"] + "/htpasswd"
    assert mounts[secret_volume["name"]]["readOnly"] is True
    assert ("Secret", "python-index", "python-index-htpasswd") in enabled
    # Packages live on the claim; one writer on a ReadWriteOnce volume.
    claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert args[-1] == mounts[claim["name"]]["mountPath"]
    pvc = enabled[("PersistentVolumeClaim", "python-index", claim["persistentVolumeClaim"]["claimName"])].inputs
    assert pvc["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}}
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert container["image"] == IMAGE


def test_staging_and_prod_run_two_replicas_on_one_shared_volume_with_a_disruption_budget():
    for environment in ("staging", "prod"):
        objects = resources(**index(enabled=True), metadata={"environment": environment})
        deployment = server(objects)
        assert deployment["spec"]["replicas"] == 2
        assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                                  "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
        pvc = objects[("PersistentVolumeClaim", "python-index", "pypiserver-packages")].inputs
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        budget = objects[("PodDisruptionBudget", "python-index", "pypiserver")].inputs["spec"]
        assert budget == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"]}
        pod = deployment["spec"]["template"]["spec"]
        term = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["podAffinityTerm"]["labelSelector"] == deployment["spec"]["selector"]
        # Every replica lists the shared directory itself (no inotify cache blind to the other's uploads).
        args = pod["containers"][0]["args"]
        assert args[args.index("--backend") + 1] == "simple-dir"


def test_the_server_runs_under_restricted_pod_security(enabled):
    pod = server(enabled)["spec"]["template"]["spec"]
    container, = pod["containers"]
    assert enabled[("Namespace", None, "python-index")].inputs["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
    assert set(container["resources"]) == {"requests", "limits"}
    health = container["args"][container["args"].index("--health-endpoint") + 1]
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": health, "port": "http"}
    # Every object of the service is valid Kubernetes of the spec's version (strict: no unknown fields).
    mine = [r for r in enabled.values() if "plinth:registry:PythonIndex" in r.urn]
    assert len(mine) >= 10
    for r in mine:
        kubernetes_validate.validate(redact(r.inputs), "1.34.0", strict=True)


def test_the_htpasswd_is_a_secret_and_never_in_the_plan_in_clear():
    line = "uploader:$2y$05$" + "k" * 53
    resources = record(lambda: build_platform(
        spec(**index(enabled=True)), StackSecrets(python_index_htpasswd=pulumi.Output.secret(line))))
    assert line not in json.dumps([r.inputs for r in resources]) and "$2y$" not in json.dumps(
        [r.inputs for r in resources])
    secret = next(r for r in resources if r.type == "kubernetes:core/v1:Secret" and r.name == "python-index-htpasswd")
    assert secret.inputs["stringData"] == SECRET
    assert "python_index_htpasswd" in required_secrets(spec(**index(enabled=True)))
    assert "python_index_htpasswd" not in required_secrets(spec(**index(url="https://packages.corp.internal/simple/")))


def test_every_team_gets_a_pip_conf_for_the_in_cluster_index(enabled):
    service = enabled[("Service", "python-index", "pypiserver")].inputs
    port, = (p["port"] for p in service["spec"]["ports"])
    # The URL teams get is the Service's DNS name and port.
    assert IN_CLUSTER == f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc:{port}/simple/"
    expected = ("# Managed by Plinth (registry.pythonIndex).\n[global]\n"
                f"index-url = {IN_CLUSTER}\ntrusted-host = pypiserver.python-index.svc:8080\n")
    assert pip_confs(enabled) == {team: expected for team in TEAMS}


def test_pip_configs_wait_for_their_team_namespace():
    result = plan(spec(**index(enabled=True)), "test")
    by_name = {r.name: r for r in result.resources}
    for team in TEAMS:
        # Waiting on the Team component is waiting on its children, the namespace among them.
        assert by_name[f"tenancy-{team}-namespace"].urn in by_name[f"python-index-{team}-pip-config"].dependencies


def test_teams_may_reach_the_index_port_and_nothing_else_of_it(enabled):
    port = server(enabled)["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    for team in TEAMS:
        policy = enabled[("NetworkPolicy", team, "allow-to-python-index")].inputs["spec"]
        assert policy["egress"] == [{
            "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "python-index"}}}],
            "ports": [{"protocol": "TCP", "port": port}]}]
    # The index's namespace admits its own pods and the teams on that port, nobody else.
    admitted = {name: r.inputs["spec"] for (kind, ns, name), r in enabled.items()
                if ns == "python-index" and kind.endswith("NetworkPolicy") and name != "airgap-egress"}
    assert set(admitted) == {"default-deny-ingress", "allow-same-namespace", "allow-from-teams"}
    assert admitted["allow-from-teams"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": port}]


def test_an_existing_index_at_url_is_used_and_nothing_is_run():
    url = "https://packages.corp.internal/simple/"
    objects = resources(**index(url=url))
    assert pip_confs(objects) == {team: f"# Managed by Plinth (registry.pythonIndex).\n[global]\nindex-url = {url}\n"
                                  for team in TEAMS}
    assert not [key for key in objects if key[1] == "python-index" or key[2] == "python-index"]
    assert not [key for key in objects if key[0] == "NetworkPolicy" and key[2] == "allow-to-python-index"]
    assert not pip_confs(resources())  # off: no pip configuration either


def test_the_index_is_routed_through_the_platform_gateway_only_with_a_hostname():
    objects = resources(**GATEWAY, **index(enabled=True, hostname="pypi.models.plinth.internal"))
    route = objects[("HTTPRoute", "python-index", "pypiserver")].inputs["spec"]
    assert route["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "plinth",
                                    "namespace": "plinth-gateway", "sectionName": "python-index"}]
    assert route["hostnames"] == ["pypi.models.plinth.internal"]
    assert route["rules"][0]["backendRefs"] == [{"name": "pypiserver", "port": 8080}]
    # Only then may the Gateway's proxies reach the server.
    assert objects[("CiliumNetworkPolicy", "python-index", "allow-from-gateway")].inputs["spec"]["ingress"] == [
        {"fromEntities": ["ingress"], "toPorts": [{"ports": [{"port": "8080", "protocol": "TCP"}]}]}]
    unrouted = resources(**GATEWAY, **index(enabled=True))
    assert not [key for key in unrouted if key[0] == "HTTPRoute" or key[1:] == ("python-index", "allow-from-gateway")]


def test_the_image_is_listed_for_mirroring_and_pulled_from_the_mirror():
    mirror = {"enabled": True, "mirror": {"registry": "harbor.corp.internal/mirror",
                                          "charts": "oci://harbor.corp.internal/charts",
                                          "pullSecret": {"username": "robot"}}}
    listed = {(i.service, i.source, i.target) for i in mirror_list(spec(airgap=mirror, **index(enabled=True))).images}
    assert listed == {("python-index", IMAGE, "harbor.corp.internal/mirror/pypiserver/pypiserver:v2.4.2")}
    assert mirror_list(spec(**index(url="https://packages.corp.internal/simple/"))).images == ()
    result = record(lambda: build_platform(spec(airgap=mirror, **index(enabled=True)), StackSecrets(
        mirror_password=pulumi.Output.secret("pw"), python_index_htpasswd=pulumi.Output.secret("u:x"))))
    deployment = next(r for r in result if r.name == "python-index-server").inputs
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "harbor.corp.internal/mirror/pypiserver/pypiserver:v2.4.2"
    assert pod["imagePullSecrets"] == [{"name": "mirror-pull"}]
    assert any(r.name == "python-index-mirror-pull" for r in result)
    assert any(r.name == "python-index-airgap-egress" for r in result)


# --- spec rules -----------------------------------------------------------------------------------


def errors(write, overlay: str) -> list[str]:
    write("base.yaml", MINIMAL)
    with pytest.raises(SpecInvalid) as caught:
        load_spec(write("bad.yaml", "extends: base.yaml\n" + overlay))
    return [str(e) for e in caught.value.errors]


def test_running_an_index_and_using_an_existing_one_is_an_error_at_its_line(write):
    assert errors(write, """\
registry:
  pythonIndex:
    enabled: true
    url: https://packages.corp.internal/simple/
""") == ["bad.yaml:5:5: registry.pythonIndex.url: the Python index is both run by Plinth (enabled) and an "
         "existing one (url) [rule python-index-one-source; fix: remove url to run Plinth's index, or set "
         "enabled: false to point the teams at the index at url]"]


@pytest.mark.parametrize("overlay, rule", [
    ("registry: {pythonIndex: {enabled: true, hostname: pypi.models.plinth.internal}}\n",
     "python-index-needs-gateway"),
    ("registry: {pythonIndex: {url: 'https://packages.corp.internal/simple/',\n"
     "                         hostname: pypi.models.plinth.internal}}\n", "python-index-hostname"),
    ("network: {cilium: {enabled: true, apiServer: {host: api}}, loadBalancer: {ranges: [172.31.255.240/29]}}\n"
     "certificates: {certManager: {enabled: true}}\n"
     "registry: {pythonIndex: {enabled: true, hostname: a.pypi.models.plinth.internal}}\n", "python-index-hostname"),
])
def test_a_hostname_the_gateway_cannot_serve_is_an_error(write, overlay, rule):
    found = errors(write, overlay)
    assert len(found) == 1 and "registry.pythonIndex.hostname: " in found[0] and f"[rule {rule};" in found[0]


def test_an_index_url_with_credentials_is_refused(write):
    found = errors(write, "registry: {pythonIndex: {url: 'https://user:pw@packages.corp.internal/simple/'}}\n")
    assert len(found) == 1
    assert found[0].startswith("bad.yaml:2:26: registry.pythonIndex.url: expected a string matching")


# --- the real server ------------------------------------------------------------------------------

USER, PASSWORD = "uploader", "correct horse battery staple"
PROBE, VERSION = "plinth-probe", "0.1.0"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # answered as its own status: a fallback to a public index would be a redirect


# No proxy for loopback, no redirects followed.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), NoRedirect())


def local_args(pod: dict, tmp: Path, port: int) -> list[str]:
    """The container's args for a loopback run: the claim's and the Secret's mount paths become tmp
    directories, the listen address 127.0.0.1 and the port a free one. Nothing else changes."""
    container, = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    where = {mounts[v["name"]]: tmp / ("packages" if "persistentVolumeClaim" in v else "secret")
             for v in pod["volumes"] if "persistentVolumeClaim" in v or "secret" in v}
    args = []
    for arg in container["args"]:
        for inside, outside in where.items():
            if arg == inside or arg.startswith(inside + "/"):
                arg = str(outside) + arg[len(inside):]
        args.append(arg)
    assert args[args.index("--host") + 1] == "0.0.0.0" and args[args.index("--port") + 1] == "8080"
    args[args.index("--host") + 1], args[args.index("--port") + 1] = "127.0.0.1", str(port)
    for outside in where.values():
        outside.mkdir()
    return args


def wheel(directory: Path, name: str, version: str) -> Path:
    """A minimal pure-Python wheel, written as the format says (module, METADATA, WHEEL, RECORD)."""
    module, dist = name.replace("-", "_"), f"{name.replace('-', '_')}-{version}"
    files = {
        f"{module}/__init__.py": f'VERSION = "{version}"\n',
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: plinth-tests\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(body.encode()).digest()).rstrip(b'=').decode()},"
        f"{len(body.encode())}\n" for path, body in files.items()) + f"{dist}.dist-info/RECORD,,\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, body in {**files, f"{dist}.dist-info/RECORD": record}.items():
            archive.writestr(name_in_zip, body)
    return path


def upload(base: str, path: Path, credentials: tuple[str, str] | None) -> int:
    """POST the file as twine does (multipart, `:action=file_upload`); the HTTP status."""
    boundary = uuid.uuid4().hex
    fields = {":action": "file_upload", "protocol_version": "1", "name": PROBE, "version": VERSION,
              "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1"}
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
                    for k, v in fields.items())
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{path.name}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes()
    body += f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{base}/", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    if credentials:
        token = base64.b64encode(":".join(credentials).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return status(request)


def status(request: urllib.request.Request | str) -> int:
    try:
        with OPENER.open(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def pip_install(conf: Path, target: Path, package: str, home: Path) -> subprocess.CompletedProcess:
    """pip with the team's pip.conf and nothing else: no PIP_* or proxy settings of this machine."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("PIP_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env.update(PIP_CONFIG_FILE=str(conf), PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", HOME=str(home),
               XDG_CONFIG_HOME=str(home / "config"), XDG_CACHE_HOME=str(home / "cache"))
    return subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), package],
                          env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def running(tmp_path, enabled):
    """pypiserver with the Deployment's args, an htpasswd made here (bcrypt), until the test ends."""
    with warnings.catch_warnings():
        # passlib imports the standard library's crypt module, deprecated since Python 3.11.
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.apache import HtpasswdFile

    pod = server(enabled)["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["pypi-server"]
    port = free_port()
    args = local_args(pod, tmp_path, port)
    htpasswd = HtpasswdFile(str(Path(args[args.index("--passwords") + 1])), new=True, default_scheme="bcrypt")
    htpasswd.set_password(USER, PASSWORD)
    htpasswd.save()
    log = (tmp_path / "server.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "pypiserver", *args], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"pypiserver exited: {(tmp_path / 'server.log').read_text()}")
            try:
                if status(f"{base}/health") == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"pypiserver did not answer /health: {(tmp_path / 'server.log').read_text()}")
            time.sleep(0.1)
        # `--server auto` is waitress in the image (pypiserver tries it first); so it is here.
        with OPENER.open(f"{base}/health", timeout=10) as response:
            assert response.headers["Server"] == "waitress"
        yield base, tmp_path / "packages"
    finally:
        stop_process(process)
        log.close()


def test_the_real_server_takes_uploads_from_accounts_only_and_teams_install_from_it(running, tmp_path):
    base, packages = running
    built = tmp_path / "dist"
    built.mkdir()
    probe = wheel(built, PROBE, VERSION)
    assert upload(base, probe, None) == 401
    assert upload(base, probe, (USER, "wrong password")) == 403
    assert list(packages.iterdir()) == []
    assert upload(base, probe, (USER, PASSWORD)) == 200
    assert [p.name for p in packages.iterdir()] == [probe.name]
    assert upload(base, probe, (USER, PASSWORD)) == 409  # a published file is never replaced

    # A team's pip.conf, planned for an index at `url` (here, this server).
    conf = tmp_path / "pip.conf"
    conf.write_text(pip_confs(resources(**index(url=f"{base}/simple/")))["fraud"])
    site, home = tmp_path / "site", tmp_path / "home"
    installed = pip_install(conf, site, PROBE, home)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert f"Looking in indexes: {base}/simple/" in installed.stdout
    assert (site / "plinth_probe" / "__init__.py").read_text() == f'VERSION = "{VERSION}"\n'

    # Never uploaded: not found, and no redirect to a public index.
    absent = "plinth-never-uploaded"
    assert status(f"{base}/simple/{absent}/") == 404
    missing = pip_install(conf, tmp_path / "site2", absent, home)
    assert missing.returncode != 0 and f"No matching distribution found for {absent}" in missing.stderr
