"""Harbor's real chart (1.19.1) rendered with Plinth's values: stable renders (no value generated at
render time survives), every image listed and mirrored, the Secrets Plinth creates hold every key the
chart reads, no chart-default credential, and objects valid against the Kubernetes and CRD schemas."""

from __future__ import annotations

import copy
import os
import re
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import replace

import pulumi
import pytest
import yaml

from e2e.binaries import toolchain_tool
from oidcserver import provider_fixture
from support import CHARTS_DIR, free_port, platform_spec, stop_process
from validation import PlannedRender, crd_schemas, dump, images_in, release_objects, restricted_problems, validation_failures
from plinth.catalog import CHARTS, mirror_image
from plinth.engine.charts import chart_archive, render_charts, template
from plinth.engine.offline import plan
from plinth.mirror import mirror_list
from plinth.modules.helm import merge_values
from plinth.modules.registry import OIDC_CA, OIDC_CA_DIR, SECRETS, TOKEN_SECRET
from plinth.plan import SECRET
from plinth.render import kubernetes_objects
from plinth.spec.models import PlatformSpec

KUBE = "1.34"
MIRROR = "mirror.corp.internal/mirror"
HOST = "harbor.models.plinth.internal"
HARBOR_CLIENT = "plinth-harbor"
CHART_DEFAULT_CREDENTIALS = ("Harbor12345", "changeit", "not-a-secure-key", "harbor_registry_password")


def _spec(*layers: dict) -> PlatformSpec:
    """Air-gapped prod with the Gateway, Longhorn and monitoring: every Harbor feature on."""
    return platform_spec({
        "metadata": {"environment": "prod"},
        "identity": {"reason": "the chart tier renders Harbor; sign-on has its own tests"},
        "charts": {"source": str(CHARTS_DIR)},
        "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}},
                "loadBalancer": {"ranges": ["172.31.255.240/29"]}},
        "certificates": {"certManager": {"enabled": True}},
        "storage": {"longhorn": {"enabled": True}},
        "monitoring": {"enabled": True},
        "registry": {"harbor": {"enabled": True, "hostname": HOST}},
        "backups": {"enabled": False, "reason": "the chart tier renders Harbor; backups have their own tests"},
        "airgap": {"enabled": True, "mirror": {"registry": MIRROR, "charts": "oci://mirror.corp.internal/charts",
                                               "pullSecret": {"username": "robot"}}},
    }, *layers)


PLANNED = PlannedRender(_spec, "harbor-chart", KUBE)
_planned, _rendered = PLANNED.planned, PLANNED.rendered


@pytest.fixture(scope="module")
def objects(charts_dir, helm) -> tuple[dict, ...]:
    return release_objects(_rendered(charts_dir, 1), "harbor")


def test_two_renders_of_the_same_plan_are_byte_identical(charts_dir, helm):
    first, second = dump(release_objects(_rendered(charts_dir, 1), "harbor")), dump(release_objects(_rendered(charts_dir, 2), "harbor"))
    assert first == second


def test_helm_template_prints_the_same_bytes_twice(charts_dir, helm, tmp_path):
    """The same check on helm's own output, before any parsing."""
    release = _release()
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release.inputs["values"], sort_keys=True), encoding="utf-8")
    args = [helm, "template", "harbor", str(chart_archive(release, charts_dir)), "--namespace", "harbor",
            "--values", str(values), "--kube-version", f"{KUBE}.0"]
    env = {**os.environ, **{f"HELM_{d}_HOME": str(tmp_path) for d in ("CACHE", "CONFIG", "DATA")}}
    first, second = (subprocess.run(args, capture_output=True, check=True, env=env).stdout for _ in range(2))
    assert first and first == second


def _release():
    _, result = _planned()
    [release] = [r for r in result.resources if r.type.endswith("helm.sh/v3:Release") and r.name == "harbor"]
    return release


def _without(values: dict, dotted: str) -> dict:
    out = copy.deepcopy(values)
    node = out
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    del node[last]
    return out


# Each pin, and what the chart generates in its place at every render.
PINS = {
    "core.existingSecret": "randAlphaNum (core secret)",
    "core.existingXsrfSecret": "randAlphaNum (CSRF key)",
    "core.secretName": "genCA (token certificate)",
    "jobservice.existingSecret": "randAlphaNum (jobservice secret)",
    "registry.existingSecret": "randAlphaNum (registry HTTP secret)",
    "registry.credentials.existingSecret": "htpasswd (random bcrypt salt)",
    "expose.tls.enabled": "genCA (nginx certificate)",
}
# What the chart requires before it generates in a pin's place.
NEEDS = {"expose.tls.enabled": {"expose": {"tls": {"auto": {"commonName": HOST}}}}}


@pytest.mark.parametrize("pin", PINS)
def test_each_pin_is_what_keeps_the_render_stable(pin, charts_dir, helm):
    """Without the pin the chart's own generator runs again: two renders differ (so the test above can fail)."""
    release = _release()
    values = merge_values(_without(release.inputs["values"], pin), NEEDS.get(pin, {}))
    loose = replace(release, inputs={**release.inputs, "values": values})
    archive = chart_archive(loose, charts_dir)
    assert dump(template(loose, archive, KUBE, helm)) != dump(template(loose, archive, KUBE, helm)), PINS[pin]


def test_no_chart_default_credential_is_rendered(objects):
    text = dump(objects)
    assert [c for c in CHART_DEFAULT_CREDENTIALS if c in text] == []
    # What the chart's own Secrets do hold is the plan's secret placeholder, never a value.
    assert re.search(r"(?i)-----BEGIN [A-Z ]*PRIVATE KEY-----", text) is None


def test_the_secrets_plinth_creates_hold_every_key_the_chart_reads(objects):
    mine = {**SECRETS, TOKEN_SECRET: {"tls.key": "", "tls.crt": "", "ca.crt": ""}}
    read: set[tuple[str, str]] = set()

    def walk(node) -> None:
        if isinstance(node, dict):
            ref = node.get("secretKeyRef")
            if isinstance(ref, dict):
                read.add((ref["name"], ref["key"]))
            secret = node.get("secret")
            if isinstance(secret, dict) and "secretName" in secret:
                for item in secret.get("items") or [{"key": "*"}]:
                    read.add((secret["secretName"], item["key"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for obj in objects:
        walk(obj)
    ours = {(name, key) for name, key in read if name in mine}
    assert {name for name, _ in ours} == set(mine)  # every Secret Plinth creates is used
    assert sorted((name, key) for name, key in ours if key != "*" and key not in mine[name]) == []


def test_the_database_password_is_cloudnativepgs_secret_never_a_rendered_value(objects):
    secrets = {o["metadata"]["name"]: {**(o.get("data") or {}), **(o.get("stringData") or {})}
               for o in objects if o["kind"] == "Secret"}
    # No internal database (its Secret, its StatefulSet) and no password in core's or the exporter's Secret.
    assert "harbor-database" not in secrets
    assert [(name, key) for name, data in secrets.items() for key in data if "PASSWORD" in key
            and "DATABASE" in key or key == "POSTGRESQL_PASSWORD"] == []
    readers = {o["metadata"]["name"] for o in objects if o["kind"] in ("Deployment", "Job")
               for c in o["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []
               if (e.get("valueFrom") or {}).get("secretKeyRef") == {"name": "harbor-postgres-app", "key": "password"}}
    assert readers == {"harbor-core", "harbor-exporter"}


def test_every_rendered_image_is_in_the_catalog_and_mirrored(objects):
    spec, result = _planned()
    rendered = set().union(*(images_in(obj) for obj in objects))
    # All but the internal database's: Harbor's PostgreSQL is the platform's CloudNativePG.
    assert rendered == {mirror_image(ref, MIRROR) for ref in CHARTS["harbor"].images if "/harbor-db:" not in ref}
    listed = {i.target for i in mirror_list(spec).images if i.service == "harbor"}
    assert rendered == {str(target) for target in listed}


def test_pods_run_under_the_restricted_pod_security_level(objects):
    pods = [o["spec"]["template"]["spec"] for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(pods) == 8
    assert [problem for pod in pods for problem in restricted_problems(pod)] == []


def test_every_object_validates_against_kubernetes_and_crd_schemas(objects, charts_dir, helm):
    _, result = _planned()
    crds = crd_schemas(_rendered(charts_dir, 1))
    # Cilium's own policies have no schema offline: its operator creates the cilium.io CRDs at runtime.
    plinth_objects = [obj for _, obj in kubernetes_objects(result) if obj["metadata"].get("namespace") == "harbor"
                      and not obj["apiVersion"].startswith("cilium.io/")]
    kinds = {o["kind"] for o in plinth_objects}
    assert {"HTTPRoute", "Certificate", "Secret", "NetworkPolicy"} <= kinds
    assert validation_failures([*objects, *plinth_objects], f"{KUBE}.0", crds) == []
    # Custom resources were checked against their CRDs, not skipped.
    assert {("monitoring.coreos.com/v1", "ServiceMonitor"), ("gateway.networking.k8s.io/v1", "HTTPRoute"),
            ("cert-manager.io/v1", "Certificate")} <= set(crds)


# --- an issuer with a private CA ---------------------------------------------------------------------


provider = provider_fixture(HARBOR_CLIENT)


@pytest.fixture(scope="module")
def signing_on(charts_dir, helm, provider) -> tuple[dict, dict]:
    """Harbor signing people on through mockoidc, whose CA is private: the planned Secret `harbor-oidc-ca` and the
    rendered core Deployment."""
    spec = _spec({"identity": {"reason": None, "oidc": {
        "issuer": provider.issuer, "certificateAuthority": provider.ca_pem,
        "clients": {"kubernetes": "plinth-kubernetes", "harbor": HARBOR_CLIENT}}},
        "rbac": {"platformAdminGroup": "ml-admins"}, "registry": {"harbor": {"groupType": "oidc"}}})
    written = _SecretPayloads()
    planned = plan(spec, "harbor-chart-signon", mocks=written)
    [secret] = [r for r in planned.resources if r.type == "kubernetes:core/v1:Secret" and r.name == "harbor-oidc-ca"]
    assert secret.inputs["stringData"] == SECRET  # the provider's SDK hides every Secret's payload in plans
    [core] = [o for o in release_objects(render_charts(planned, KUBE, charts_dir), "harbor")
              if o["kind"] == "Deployment" and o["metadata"]["name"] == "harbor-core"]
    return {**secret.inputs, "stringData": written.payloads[OIDC_CA]}, core


class _SecretPayloads(pulumi.runtime.Mocks):
    """What the program writes into each Secret (`stringData`, by name), which plans show as `(secret)`."""

    def __init__(self):
        self.payloads: dict[str, dict] = {}

    def new_resource(self, args):
        if args.inputs.get("kind") == "Secret" and isinstance(args.inputs.get("stringData"), dict):
            self.payloads[args.inputs["metadata"]["name"]] = args.inputs["stringData"].get("value")
        return None, args.inputs

    def call(self, args):
        return {}


def _go_oidc_client(binary: str, provider, ca_dirs: list[str]) -> tuple[bool, str]:
    """A Go program's OIDC discovery of `provider` trusting the system's CAs and SSL_CERT_DIR `ca_dirs`, as Harbor
    core's client does (Go's default transport): oauth2-proxy with no CA file of its own, which discovers the
    provider when it starts. True once it serves; False with its output when it exits."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SSL_CERT_")} | {"SSL_CERT_DIR": ":".join(ca_dirs)}
    process = subprocess.Popen(
        [binary, "--provider=oidc", f"--oidc-issuer-url={provider.issuer}", f"--client-id={HARBOR_CLIENT}",
         f"--client-secret={provider.secret}", f"--cookie-secret={secrets.token_hex(16)}", "--email-domain=*",
         "--upstream=static://200", f"--http-address=127.0.0.1:{port}",
         f"--redirect-url=http://127.0.0.1:{port}/oauth2/callback"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    return True, ""
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
    finally:
        stop_process(process)
    return False, process.stdout.read() if process.stdout else ""


def test_core_trusts_an_issuer_with_a_private_ca(signing_on, provider, tmp_path):
    """What core sees: the rendered Deployment's mounts and SSL_CERT_DIR, the planned Secret's certificate, laid out
    under a directory of the test's. Core cannot run here (it needs Harbor's other services); a real Go OIDC client
    runs in its place with that variable: it discovers the provider, and without the mounted directory it cannot."""
    binary = toolchain_tool("oauth2-proxy")
    if binary is None:
        pytest.skip("no oauth2-proxy: run tests/e2e/toolchain/build.sh, or set PLINTH_OAUTH2_PROXY")
    secret, core = signing_on
    assert secret["stringData"] == {"ca.crt": provider.ca_pem}
    assert secret["metadata"]["annotations"]["plinth.dev/secret-source"].startswith("identity.oidc.certificateAuth")
    pod = core["spec"]["template"]["spec"]
    [container] = [c for c in pod["containers"] if c["name"] == "core"]
    from_secret = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    data = secret["stringData"]
    mounted: set[str] = set()  # the container's directories that hold files of the Secret
    for mount in container["volumeMounts"]:
        source = from_secret.get(mount["name"])
        if source is None or source["secretName"] != OIDC_CA:
            continue
        keys = {i["path"]: i["key"] for i in source.get("items", ())} or {key: key for key in data}  # file: key
        at = mount["mountPath"]
        files = {at: keys[mount["subPath"]]} if "subPath" in mount else {f"{at}/{f}": k for f, k in keys.items()}
        for path, key in files.items():
            (tmp_path / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / path.lstrip("/")).write_text(data[key])
            mounted.add(os.path.dirname(path))
    assert mounted == {OIDC_CA_DIR}
    env = {e["name"]: e.get("value") for e in container.get("env", ())}
    ca_dirs = env["SSL_CERT_DIR"].split(":")
    assert ca_dirs[:2] == ["/etc/ssl/certs", "/etc/pki/tls/certs"]  # Go's own directories stay
    as_core = [str(tmp_path / d.lstrip("/")) if d in mounted else d for d in ca_dirs]
    trusted, output = _go_oidc_client(binary, provider, as_core)
    assert trusted, output
    trusted, output = _go_oidc_client(binary, provider, [d for d in ca_dirs if d not in mounted])
    assert not trusted and "certificate signed by unknown authority" in output, output
