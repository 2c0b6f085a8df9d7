"""Drive the real Pulumi CLI (built by toolchain/build.sh) against a throw-away project copy.

The project copy holds Plinth's real program (`platform/`), its blueprints and
one extra stack file written by the test; state lives in a `file://` backend
and secrets use a passphrase, so nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

from support import CHARTS_DIR

ROOT = Path(__file__).resolve().parents[2]
GRAFANA_PASSWORD = "e2e-grafana-not-a-real-secret"
STACK_SECRETS = {
    "grafanaAdminPassword": GRAFANA_PASSWORD,
    "harborAdminPassword": "e2e-harbor-not-a-real-secret",
    # What `htpasswd -nB uploader` prints for this password.
    "pythonIndexHtpasswd": "uploader:" + bcrypt.hashpw(b"e2e-uploader-not-a-real-secret", bcrypt.gensalt()).decode(),
    "feastRedisPassword": "e2e-redis-not-a-real-secret",
    "objectStoreSeed": "e2e-object-store-not-a-real-secret",
    "mlflowFlaskSecretKey": "e2e-mlflow-not-a-real-secret",
}
"""The stack secrets the services need; none may appear in the stack's state in clear."""
POLICY_PACK_FILE = """\
description: Plinth governance policies (e2e copy)
runtime: python-shim
"""
"""The toolchain's language host predates how the CLI starts Python policy packs: the copy runs the pack
through the SDK's analyzer shim (tests/e2e/toolchain/build.sh), the same policies/__main__.py."""
PROJECT_FILE = """\
name: plinth
description: Plinth e2e copy (tests/e2e)
runtime: python
main: platform/
stackConfigDir: stacks
"""

SERVING_HOST = "serving.models.plinth.internal"
"""The models' host name: one name under the platform Gateway's default listener *.models.plinth.internal."""


RETRAINING_IMAGE = "ghcr.io/acme/fraud-ranker-train:1.0.0"


def served(canary_weight: int = 10) -> dict:
    """The e2e stack's serving block: one Triton model of team fraud on one GPU per replica, stable v1 and a
    canary v2 taking `canary_weight` percent. Its repository is an object store (s3://, with the network its
    pods may reach): nothing in the namespace to create first. And one on CPU served from the platform's MLflow
    registry (version 1): its pods fetch the version in an init container with the team's MLflow credentials, and
    its drift alert submits a generated retraining workflow."""
    return {"hostname": SERVING_HOST, "models": [{
        "name": "fraud-scorer", "team": "fraud", "runtime": "triton", "gpu": 1,
        "modelRepository": "s3://fraud-models/triton", "repositoryCidrs": ["10.30.0.0/16"],
        "stable": {"version": "v1", "replicas": 1},
        "canary": {"version": "v2", "replicas": 1, "weight": canary_weight},
    }, {
        "name": "fraud-ranker", "team": "fraud", "runtime": "triton", "registry": {"model": "fraud-ranker"},
        "stable": {"version": "1", "replicas": 1},
        "retraining": {"image": RETRAINING_IMAGE, "command": ["python", "/app/train.py"]},
    }]}


@dataclass
class Run:
    args: list[str]
    rc: int
    out: str
    seconds: float

    @property
    def text(self) -> str:
        return f"$ pulumi {' '.join(self.args)}  (rc={self.rc}, {self.seconds:.1f}s)\n{self.out}"


@dataclass
class PulumiProject:
    """A copy of Plinth's Pulumi project wired to a local backend and the given toolchain."""

    bin_dir: Path
    workdir: Path
    kubeconfig: str
    stack: str = "e2e"

    def __post_init__(self) -> None:
        self.dir = self.workdir / "project"
        self.dir.mkdir(parents=True)
        (self.dir / "Pulumi.yaml").write_text(PROJECT_FILE)
        for sub in ("platform", "blueprints", "policies"):
            shutil.copytree(ROOT / sub, self.dir / sub)
        (self.dir / "policies" / "PulumiPolicy.yaml").write_text(POLICY_PACK_FILE)
        (self.dir / "stacks").mkdir()
        (self.workdir / "state").mkdir()
        venv_bin = Path(sys.executable).parent
        self.env = {
            **os.environ,
            # The v3.68 language host ignores Pulumi.yaml's `virtualenv` and runs the
            # first python3 on PATH: put this interpreter's environment first.
            "PATH": os.pathsep.join([str(self.bin_dir), str(venv_bin), os.environ.get("PATH", "")]),
            "PULUMI_HOME": str(self.workdir / "pulumi-home"),
            "PULUMI_BACKEND_URL": (self.workdir / "state").as_uri(),
            "PULUMI_CONFIG_PASSPHRASE": "e2e-only",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "PULUMI_COPILOT": "false",
            # The file backend otherwise rewrites the whole state after every step (quadratic in resources:
            # `up` of the e2e stack 204 s -> 158 s, destroy 230 s -> 171 s); the state after each operation
            # is the same, and a test that dies half-way has a throw-away stack.
            "PULUMI_SKIP_CHECKPOINTS": "true",
            "NO_COLOR": "1",
            "KUBECONFIG": self.kubeconfig,
        }

    def overrides(self, **extra) -> dict:
        """Stack overrides for the live cluster: its kubeconfig and simulated nodes (3 CPU nodes, one GPU node
        with 2 GPUs), the platform services with the packaged charts as the (directory) chart source, and one
        served GPU model with a canary (on Cilium's Gateway, with monitoring and the GPU operator)."""
        base = {
            "target": {"type": "existing", "kubeconfig": self.kubeconfig},
            "charts": {"source": str(CHARTS_DIR)},
            # No node announces load-balancer addresses here: the Gateway's address is left to the cluster.
            "network": {"cilium": {"enabled": True, "apiServer": {"host": "127.0.0.1"}},
                        "loadBalancer": {"mode": "external"}},
            "certificates": {"certManager": {"enabled": True}},
            # A throw-away platform: destroy takes everything (the last test checks nothing is left).
            "storage": {"longhorn": {"enabled": True}, "objectStore": {"enabled": True}, "deleteDataOnDestroy": True},
            "secrets": {"vault": {"enabled": True}},
            "registry": {"harbor": {"enabled": True}, "pythonIndex": {"enabled": True}, "mlflow": {"enabled": True}},
            "featureStore": {"feast": {"enabled": True}},
            "monitoring": {"enabled": True, "drift": {"enabled": True}},
            # The pipelines: the workflow controller, its server (in-cluster) and archive, and Argo Events with
            # the retraining webhook and Sensor of the ranker (served() below).
            "pipelines": {"argo": {"enabled": True, "server": True, "archive": {"enabled": True}},
                          "events": {"enabled": True}},
            # dev's default is off: on here, so the Barman Cloud plugin and every Cluster's backup objects deploy
            "backups": {"enabled": True},
            "gpu": {"operator": {"enabled": True}},
            # the GPU node holds both tracks of the served model (the canary next to stable)
            "testing": {"nodes": {"gpusPerNode": 2}},
            "serving": served(),
        }
        return {**base, **extra}

    def set_secrets(self) -> None:
        """The stack secrets the services need."""
        for key, value in STACK_SECRETS.items():
            self("config", "set", "--secret", f"plinth:{key}", value)

    def write_stack(self, overrides: dict, blueprint: str = "blueprints/minimal.yaml") -> None:
        """Set the stack's blueprint and overrides; what `pulumi config set` added (secrets, salt) is kept."""
        path = self.dir / "stacks" / f"Pulumi.{self.stack}.yaml"
        doc = yaml.safe_load(path.read_text()) if path.is_file() else {}
        doc.setdefault("config", {}).update({"plinth:blueprint": blueprint, "plinth:overrides": overrides})
        # JSON is YAML: the stack file needs no YAML writer.
        path.write_text(json.dumps(doc, indent=2))

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> Run:
        t0 = time.perf_counter()
        proc = subprocess.run([str(self.bin_dir / "pulumi"), *args, "--non-interactive"], cwd=self.dir,
                              env=self.env, capture_output=True, text=True, timeout=timeout)
        run = Run(list(args), proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - t0)
        with (self.workdir / "pulumi.log").open("a") as log:  # every run's output, each step's time: for a post-mortem
            documents = "--json" in args or args[:2] == ("stack", "export")  # state and plans: megabytes each
            log.write((run.text.splitlines()[0] if documents else run.text) + "\n")
        if check and run.rc != 0:
            raise AssertionError(f"pulumi failed:\n{run.text}")
        return run

    def urns(self) -> set[str]:
        """The URN of every resource in the stack's state but the stack itself."""
        state = json.loads(self("stack", "export").out)
        return {r["urn"] for r in state["deployment"].get("resources", []) if r["type"] != "pulumi:pulumi:Stack"}

    def preview_steps(self, *extra: str) -> list[dict]:
        """The steps of `pulumi preview --json` that change something (not 'same', not 'refresh')."""
        return changing_steps(self("preview", "--json", *extra))


def changing_steps(run: Run) -> list[dict]:
    """The steps of a `--json` preview's output that change something (not 'same', not 'refresh'); the JSON
    document comes first (stdout), the engine's errors after it (stderr)."""
    document, _ = json.JSONDecoder().raw_decode(run.out, run.out.index("{"))
    return [s for s in document["steps"] if s["op"] not in ("same", "refresh")]
