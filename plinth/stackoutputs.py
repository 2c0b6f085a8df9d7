"""A deployed stack's outputs, as the platform registered them (`pulumi stack output --json`).

The program exports what each service registers (`endpoints.<service>`: URLs and addresses) and, on eks/gke,
the cluster's `kubeconfig`. Commands that talk to a running platform read them here rather than recomputing
them from the spec, so they go where the deployment says. Reading is bounded: OUTPUT_TIMEOUT seconds for the
CLI, MAX_OUTPUT bytes of its answer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

OUTPUT_TIMEOUT = 60.0
"""Seconds `pulumi stack output` may take (it reads the backend: a file, a bucket or the service)."""
MAX_OUTPUT = 1 << 20
"""The largest answer read (1 MiB): outputs are URLs and a kubeconfig."""


class OutputsUnavailable(Exception):
    """Why a stack's outputs could not be read (no CLI, not logged in, never deployed, a bad answer)."""


def stack_outputs(stack: str, project_dir: Path) -> dict:
    """The outputs of `stack` of the project in `project_dir`; secret outputs stay `[secret]`."""
    cli = shutil.which("pulumi")
    if cli is None:
        raise OutputsUnavailable("the pulumi CLI is not on PATH")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            done = subprocess.run([cli, "stack", "output", "--json", "--stack", stack, "--non-interactive"],
                                  cwd=project_dir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                  timeout=OUTPUT_TIMEOUT, env={**os.environ, "PULUMI_SKIP_UPDATE_CHECK": "true"})
        except subprocess.TimeoutExpired:
            raise OutputsUnavailable(f"pulumi stack output took longer than {OUTPUT_TIMEOUT:g} s") from None
        if done.returncode != 0:
            err.seek(0)
            reason = err.read(4096).decode(errors="replace").strip().splitlines()
            raise OutputsUnavailable(f"pulumi stack output failed: {reason[-1] if reason else done.returncode}")
        if out.tell() > MAX_OUTPUT:
            raise OutputsUnavailable(f"pulumi stack output answered more than {MAX_OUTPUT} bytes")
        out.seek(0)
        try:
            outputs = json.loads(out.read())
        except ValueError as exc:
            raise OutputsUnavailable(f"pulumi stack output did not answer JSON: {exc}") from None
    if not isinstance(outputs, dict):
        raise OutputsUnavailable("pulumi stack output did not answer an object")
    return outputs


def endpoint(outputs: dict, service: str, key: str) -> str | None:
    """One registered endpoint (`endpoints.<service>.<key>`), when the deployment exported it."""
    found = (outputs.get("endpoints") or {}).get(service) or {}
    value = found.get(key) if isinstance(found, dict) else None
    return value if isinstance(value, str) else None
