"""A deployed stack's outputs: read bounded from `pulumi stack output --json`, and used by `plinth verify --stack`.

The answers here come from a stand-in `pulumi` on PATH (what the CLI prints is the contract); the real CLI
reads the outputs of a real deployment in the e2e tier (tests/e2e/test_pulumi.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, free_port
from plinth import stackoutputs
from plinth.stackoutputs import OutputsUnavailable, endpoint, stack_outputs

PLINTH = str(Path(sys.executable).parent / "plinth")


def stand_in(tmp_path: Path, body: str) -> dict:
    """PATH with a `pulumi` that runs the shell `body` (its arguments in $@), recording them in args.txt."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    cli = bin_dir / "pulumi"
    cli.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/args.txt\n{body}\n')
    cli.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


def outputs(tmp_path: Path, monkeypatch, body: str) -> dict:
    for key, value in stand_in(tmp_path, body).items():
        monkeypatch.setenv(key, value)
    return stack_outputs("dev", tmp_path)


def test_the_stacks_outputs_are_read_as_the_cli_prints_them(tmp_path, monkeypatch):
    found = outputs(tmp_path, monkeypatch, """echo '{"endpoints": {"serving": {"url": "https://models.example"}}}'""")
    assert endpoint(found, "serving", "url") == "https://models.example"
    assert endpoint(found, "harbor", "url") is None
    assert (tmp_path / "args.txt").read_text().split() == ["stack", "output", "--json", "--stack", "dev",
                                                           "--non-interactive"]


@pytest.mark.parametrize(("body", "why"), [
    ("echo 'error: no stack named dev found' >&2; exit 255", "pulumi stack output failed: error: no stack named dev"),
    ("echo 'not json'", "pulumi stack output did not answer JSON"),
    ("echo '[1, 2]'", "pulumi stack output did not answer an object"),
    ("head -c 1100000 /dev/zero", "pulumi stack output answered more than 1048576 bytes"),
    ("sleep 5", "pulumi stack output took longer than 0.5 s"),
])
def test_a_bad_answer_is_unavailable_with_the_reason(tmp_path, monkeypatch, body, why):
    monkeypatch.setattr(stackoutputs, "OUTPUT_TIMEOUT", 0.5)
    with pytest.raises(OutputsUnavailable) as raised:
        outputs(tmp_path, monkeypatch, body)
    assert str(raised.value).startswith(why)


def test_without_the_cli_the_outputs_are_unavailable(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OutputsUnavailable, match="the pulumi CLI is not on PATH"):
        stack_outputs("dev", tmp_path)


def verify(tmp_path: Path, body: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLINTH_DEBUG": "", **stand_in(tmp_path, body)}
    return subprocess.run([PLINTH, "verify", "--stack", "regulated-dev", "--json", "--timeout", "2"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)


def test_verify_probes_the_url_the_deployed_stack_exports(tmp_path):
    exported = f"http://127.0.0.1:{free_port()}"  # nothing listens: every track fails, at that address
    run = verify(tmp_path, f"""echo '{{"endpoints": {{"serving": {{"url": "{exported}"}}}}}}'""")
    assert run.returncode == 1, run.stderr
    report = json.loads(run.stdout)
    assert (report["url"], report["host"]) == (exported, "serving.models-dev.corp.internal")
    assert "note:" not in run.stderr


def test_verify_falls_back_to_the_specs_host_name_and_says_why(tmp_path):
    run = verify(tmp_path, "echo 'error: no stack named regulated-dev found' >&2; exit 255")
    assert json.loads(run.stdout)["url"] == "https://serving.models-dev.corp.internal"
    assert run.stderr.startswith("note: stack regulated-dev's outputs are unavailable (pulumi stack output failed: "
                                 "error: no stack named regulated-dev found); the spec's serving.hostname is used")
