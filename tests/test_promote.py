"""`plinth promote` without a registry: the source stack's stable version becomes the target stack's canary or
stable, edited in place like `plinth canary` (the registry's aliases: tests/test_registry_server.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_canary import BASE
from plinth.spec.load import load_stack_spec

ROOT = Path(__file__).resolve().parent.parent
PROD = """\
# Production.
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    metadata:
      name: canaries-prod   # its own name
"""
STAGING = """\
config:
  plinth:blueprint: blueprints/base.yaml
  plinth:overrides:
    serving:
      models:
        - name: ranker
          stable: {version: "1.4.0"}
          shadow: ~
"""


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
    for name, text in {"blueprints/base.yaml": BASE, "stacks/Pulumi.prod.yaml": PROD,
                       "stacks/Pulumi.staging.yaml": STAGING}.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def promote(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "plinth"), "promote", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PLINTH_DEBUG": ""})


def test_the_source_stable_becomes_the_target_canary_then_its_stable(project):
    prod = project / "stacks/Pulumi.prod.yaml"
    done = promote("ranker", "--from", "staging", "--to", "prod", "--canary", "25", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "wrote stacks/Pulumi.prod.yaml\n"
    assert prod.read_text() == PROD + ("    serving:\n      models:\n        - name: ranker\n"
                                       "          canary: {version: \"1.4.0\", weight: 25}\n"), prod.read_text()
    assert "+ Deployment credit/ranker-canary" in done.stdout
    ranker = load_stack_spec(project, "prod").serving.models[1]
    assert (ranker.stable.version, ranker.canary.version, ranker.canary.weight) == ("1.2.0", "1.4.0", 25)
    done = promote("ranker", "--from", "staging", "--to", "prod", cwd=project)
    assert done.returncode == 0, done.stderr
    ranker = load_stack_spec(project, "prod").serving.models[1]
    assert (ranker.stable.version, ranker.canary) == ("1.4.0", None)
    assert prod.read_text().startswith(PROD)
    again = promote("ranker", "--from", "staging", "--to", "prod", cwd=project)
    assert (again.returncode, again.stdout, again.stderr) == (0, "no changes\n",
                                                               "stacks/Pulumi.prod.yaml: already so, not changed\n")


@pytest.mark.parametrize("args, message", [
    (("ranker", "--from", "prod", "--to", "prod"), "--to: the same stack as --from (prod): nothing to promote"),
    (("nope", "--from", "staging", "--to", "prod"), "stacks/Pulumi.staging.yaml: no model named 'nope' in "
     "serving.models (models: ranker, scorer)"),
    (("ranker", "--from", "staging", "--to", "prod", "--canary", "101"), "stacks/Pulumi.prod.yaml: not changed: "
     "--canary 101: expected a percentage from 0 to 100"),
    (("ranker", "--from", "staging", "--to", "nope"), "stack 'nope'"),
])
def test_a_bad_request_exits_2_and_changes_nothing(project, args, message):
    before = {p: p.read_text() for p in (project / "stacks").iterdir()}
    done = promote(*args, cwd=project)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr.splitlines()[0], done.stderr
    assert {p: p.read_text() for p in (project / "stacks").iterdir()} == before
