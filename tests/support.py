"""What the test tiers share: the repository root, its blueprints and stacks, a small spec and the builders
over it, lookups in a plan, a free port, and the external tools some tests need (absent: the test skips)."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from plinth.engine.offline import plan
from plinth.plan import Plan
from plinth.spec.models import PlatformSpec
from plinth.spec.yamltree import merge

ROOT = Path(__file__).resolve().parent.parent
CHARTS_DIR = Path(os.environ.get("PLINTH_CHARTS_DIR", ROOT.parent / "shared" / "charts")).resolve()
"""The packaged upstream charts (a directory chart source) the chart and engine tiers use."""
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))
_ALL_STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml")
                     for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))
CONFIGURE_STACKS = [s for s in _ALL_STACKS if s.endswith(".configure")]
"""Stacks of the configure stage (Vault and Harbor contents); each configures the stack named before `.configure`."""
STACKS = [s for s in _ALL_STACKS if s not in CONFIGURE_STACKS]
"""Stacks of the platform stage."""


def _keeps_blueprint_metadata(stack: str) -> bool:
    document = YAML(typ="safe").load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())
    return "metadata" not in (document["config"].get("plinth:overrides") or {})


BLUEPRINT_STACKS = [s for s in STACKS if _keeps_blueprint_metadata(s)]
"""Stacks that are their blueprint's platform in its environment (their overrides leave `metadata` alone: the
prod stacks of the eks, gke and regulated blueprints). The tiers taking half a minute per case run them in the
heavy tier (stack_marks): their blueprints run by default, and so do the stacks of another environment."""


def stack_marks(stack: str) -> list:
    """A slow tier's marks for a stack's case: heavy for BLUEPRINT_STACKS."""
    return [pytest.mark.heavy] if stack in BLUEPRINT_STACKS else []

CUSTOM_GROUPS = {"barmancloud.cnpg.io", "cert-manager.io", "cilium.io", "gateway.networking.k8s.io", "longhorn.io",
                 "monitoring.coreos.com", "nfd.k8s-sigs.io", "nvidia.com", "postgresql.cnpg.io",
                 "redis.redis.opstreelabs.in", "secrets.hashicorp.com", "velero.io"}
"""API groups of the custom resources Plinth authors: validated against their CRDs (chart tier), not the
Kubernetes OpenAPI schema."""

MINIMAL = """\
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: test
  environment: dev
  costCenter: cc-1
target:
  type: existing
rbac:
  platformAdminGroup: admins
teams:
  - name: fraud
    groups:
      mlEngineer: [fraud-eng]
    quota:
      gpu: 2
"""


def spec_document(*layers: dict, **overrides) -> dict:
    """MINIMAL as a mapping, each layer merged onto it in order, then `overrides` (top-level fields); unvalidated."""
    doc = YAML(typ="safe").load(MINIMAL)
    for layer in (*layers, overrides):
        doc = merge(doc, layer)
    return doc


def platform_spec(*layers: dict, **overrides) -> PlatformSpec:
    """`spec_document(*layers, **overrides)`, validated."""
    return PlatformSpec.model_validate(spec_document(*layers, **overrides))


SERVICES = {
    "network": {"cilium": {"enabled": True, "apiServer": {"host": "api.k8s.internal"}}},
    "certificates": {"certManager": {"enabled": True}},
    "storage": {"longhorn": {"enabled": True}},
    "monitoring": {"enabled": True},
}
"""The services the module tests plan their service beside: Cilium with the Gateway, cert-manager, Longhorn,
monitoring."""


def by_name(result: Plan) -> dict:
    """The plan's resources by name; where a component and its release share a name, the release."""
    return {r.name: r for r in sorted(result.resources, key=lambda r: r.custom)}


PROD_BACKUPS = {"storage": {"objectStore": {"enabled": True}}}
"""What a prod spec on an existing cluster with a database adds: prod backs its databases up (spec `backups`,
on by default there) into the object store."""


def platform(environment: str = "dev", **overrides) -> dict:
    """By name (`by_name`): the plan of MINIMAL with SERVICES in `environment` (prod: with PROD_BACKUPS's
    object store), `overrides` merged in last."""
    store = PROD_BACKUPS if environment == "prod" else {}
    return by_name(plan(platform_spec(SERVICES, store, {"metadata": {"environment": environment}}, overrides),
                        "test"))


def values(resources: dict, release: str) -> dict:
    """The values Plinth gives the Helm release `release` (resources by name)."""
    return resources[release].inputs["values"]


def of_kind(resources, kind: str, namespace: str | None = None) -> list:
    """The Kubernetes objects of `kind` (in `namespace` if given) among resources (a list, or a dict of them)."""
    found = resources.values() if isinstance(resources, dict) else resources
    return [r for r in found if r.inputs.get("kind") == kind
            and (namespace is None or r.inputs["metadata"].get("namespace") == namespace)]


def by_key(result: Plan, urn_part: str = "") -> dict:
    """(kind, namespace, name) -> Resource of every Kubernetes object planned (whose URN contains `urn_part`)."""
    out = {}
    for r in result.resources:
        meta = r.inputs.get("metadata")
        if r.custom and urn_part in r.urn and isinstance(meta, dict) and "kind" in r.inputs:
            out[(r.inputs["kind"], meta.get("namespace"), meta["name"])] = r
    return out


def network_policies(resources: dict) -> dict[str, dict[str, tuple[str, dict]]]:
    """Network policies (Kubernetes' and Cilium's) by namespace and name: (kind, spec)."""
    found: dict[str, dict[str, tuple[str, dict]]] = {}
    for r in resources.values():
        if r.type.endswith((":NetworkPolicy", ":CiliumNetworkPolicy")):
            meta = r.inputs["metadata"]
            found.setdefault(meta["namespace"], {})[meta["name"]] = (r.type.rsplit(":", 1)[-1], r.inputs["spec"])
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, below the kernel's ephemeral range: a port from that
    range can be taken, before the server binds it, as the local end of any process's outgoing connection (a
    SeaweedFS test failed so). Random (not the seeded `random` of the tests), so parallel workers rarely meet."""
    low = _ephemeral_low()
    for _ in range(100):
        port = _PORTS.randrange(10000, low)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as probe:  # that range is full: any port the kernel gives
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


_PORTS = random.SystemRandom()


def _ephemeral_low() -> int:
    """The low end of the kernel's ephemeral port range (Linux), else the IANA one's."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text(encoding="ascii").split()[0])
    except (OSError, ValueError, IndexError):
        low = 49152
    return max(low, 10001)


def stop_process(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a server a test started: SIGTERM, and SIGKILL when it has not ended within `timeout` seconds."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- external tools: each from its environment variable (or PATH); absent, the test skips saying what to set ---


def external_tool(variable: str, missing: str, on_path: str | None = None) -> str:
    """$`variable`, else `on_path` found on PATH, else the test skips with the reason `missing`."""
    found = os.environ.get(variable) or (shutil.which(on_path) if on_path else None)
    if not found:
        pytest.skip(missing)
    return found


def packaged_charts_helm(missing: str) -> str:
    """helm ($PLINTH_HELM, else the toolchain's) for the packaged charts at CHARTS_DIR, set as $PLINTH_HELM (what
    plinth.engine.charts runs); without the charts or helm the test skips with the reason `missing`."""
    from e2e.binaries import toolchain_tool  # asks the toolchain's build script: only where a test needs helm

    helm = toolchain_tool("helm")
    if not (CHARTS_DIR / "INDEX.json").is_file() or helm is None:
        pytest.skip(missing)
    os.environ["PLINTH_HELM"] = helm
    return helm


def checkov() -> str:
    return external_tool("PLINTH_CHECKOV", "no checkov: set PLINTH_CHECKOV or put checkov on PATH, in its own "
                         "environment (its pins conflict with the Pulumi SDK's; see .ci/run)", on_path="checkov")


def feast_python() -> str:
    return external_tool("PLINTH_FEAST_PYTHON", "no Feast SDK: set PLINTH_FEAST_PYTHON to a Python with "
                         "feast[postgres,redis] installed, in its own environment (its pins are not the Pulumi SDK's; "
                         "see .ci/run)")


def barman_cloud_bin() -> Path:
    """The directory of Barman Cloud's commands (barman-cloud-backup, -restore, -wal-archive, -wal-restore)."""
    found = Path(external_tool("PLINTH_BARMAN_BIN", "no Barman Cloud: set PLINTH_BARMAN_BIN to the bin directory of "
                               "an environment with barman[cloud] installed, or put barman-cloud-backup on PATH "
                               "(see .ci/run)", on_path="barman-cloud-backup"))
    return found if found.is_dir() else found.parent


def serving_python() -> str:
    return external_tool("PLINTH_SERVING_PYTHON", "no serving environment: set PLINTH_SERVING_PYTHON to a Python with "
                         "nvidia-pytriton and bentoml installed, in its own environment (their pins are not the "
                         "Pulumi SDK's; see .ci/run)")

def drift_python() -> str:
    return external_tool("PLINTH_DRIFT_PYTHON", "no drift environment: set PLINTH_DRIFT_PYTHON to a Python with the "
                         "drift image's pins (evidently, pandas, pyarrow; modules/serving/driftjob/Dockerfile) in its "
                         "own environment (see .ci/run)")


# Team `credit` of blueprints/onprem-airgap-regulated.yaml trying to take traffic that is not its own through
# the shared Gateway (name, HTTPRoute spec): `plinth check` and the admission policy refuse each one.
_SERVING, _PARENT = "serving.models.corp.internal", [{"name": "plinth", "namespace": "plinth-gateway"}]


def _route(hosts, *paths, kind="PathPrefix"):
    rules = [{"matches": [{"path": {"type": kind, "value": p}}], "backendRefs": [{"name": "thief", "port": 3000}]}
             for p in paths] or [{"backendRefs": [{"name": "thief", "port": 3000}]}]
    spec = {"parentRefs": _PARENT, "rules": rules}
    return {**spec, "hostnames": hosts} if hosts is not None else spec


ROUTE_CAPTURES = {
    "python-index-packages": _route(["pypi.models.corp.internal"], "/simple/numpy"),
    "harbor-image-pulls": _route(["registry.models.corp.internal"], "/v2/fraud/scorer"),
    "other-teams-model": _route([_SERVING], "/fraud/fraud-scorer/v2/models"),
    "whole-serving-host": _route([_SERVING], "/"),
    "serving-host-without-path": _route([_SERVING]),
    "serving-host-by-pattern": _route([_SERVING], "/[a-z]+/fraud-scorer", kind="RegularExpression"),
    "team-prefix-lookalike": _route([_SERVING], "/credit-fraud/fraud-scorer"),
    "no-host-names": _route(None, "/credit/credit-risk"),
    "every-host-by-wildcard": _route(["*.models.corp.internal"], "/credit/credit-risk"),
    "other-teams-host": _route(["fraud.models.corp.internal"], "/"),
}
"""Route capture attempts, each refused."""
ROUTES_OF_ITS_OWN = {
    "own-model-path": _route([_SERVING], "/credit/credit-risk/v2"),
    "own-prefix-exactly": _route([_SERVING], "/credit", kind="Exact"),
    "own-host": _route(["credit.models.corp.internal"], "/"),
}
"""Team `credit`'s own routes, each accepted."""


def make_tls(directory: Path, user=None) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate it signs for `localhost` and 127.0.0.1: (ca.crt, tls.crt, tls.key) in
    `directory`, the certificate and key owned by `user` (a pwd entry) when given."""
    ca_key, ca, key, csr, cert = (directory / n for n in ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))

    def openssl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "1",
            "-subj", "/CN=plinth-test-ca")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    ext = directory / "san.ext"
    ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert, "-days", "1",
            "-extfile", ext)
    key.chmod(0o600)
    if user:
        for path in (cert, key):
            os.chown(path, user.pw_uid, user.pw_gid)
    return ca, cert, key
