"""The README stays true: its generated numbers are what the code makes today."""

from __future__ import annotations

import difflib

import readme_numbers


def test_the_readme_numbers_are_what_the_plans_say():
    text = readme_numbers.README.read_text(encoding="utf-8")
    assert readme_numbers._EXAMPLE.search(text), "the README lost its `plinth plan` example"
    assert readme_numbers._STACK_COUNT.search(text), "the README lost its stack resource counts"
    assert readme_numbers._BLUEPRINT_ROW.search(text), "the README lost its benchmark table's plan row"
    drift = list(difflib.unified_diff(text.splitlines(), readme_numbers.expected(text).splitlines(), lineterm="", n=0))
    assert not drift, "README numbers drifted; run `python tests/readme_numbers.py`:\n" + "\n".join(drift)


def test_the_complete_team_block_is_a_valid_team_with_the_documented_defaults(tmp_path):
    import re

    from support import MINIMAL
    from plinth.spec.load import load_spec
    from plinth.spec.models import Team

    text = readme_numbers.README.read_text(encoding="utf-8")
    block = re.search(r"\*\*A complete team block\*\*.*?```yaml\n(.*?)```", text, re.S)[1]
    (tmp_path / "base.yaml").write_text(MINIMAL.split("teams:")[0])
    (tmp_path / "team.yaml").write_text("extends: base.yaml\n" + block)
    (team,) = load_spec(tmp_path / "team.yaml").teams
    defaults = Team(name="fraud")
    assert (team.quota, team.container_defaults) == (defaults.quota, defaults.container_defaults)
    assert set(Team.model_fields) == {"name", "cost_center", "groups", "quota", "container_defaults"}, \
        "a team field was added: show it in the README's complete team block"


def test_the_mirroring_loop_runs_as_written(tmp_path):
    """The README's loop over `plinth images`, with stand-ins for crane, helm and curl that record their
    arguments: every image, chart and bundle of the list is copied, to exactly its target."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    from support import ROOT
    from plinth.mirror import mirror_list
    from plinth.spec.load import load_stack_spec

    text = readme_numbers.README.read_text(encoding="utf-8")
    loop = re.search(r"```sh\n(plinth images --stack (\S+) \| while.*?)```", text, re.S)
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("crane", "helm", "curl"):
        (tools / tool).write_text(f'#!/bin/sh\necho "{tool} $*" >> "{tmp_path}/calls"\n')
        (tools / tool).chmod(0o755)
    (tools / "plinth").symlink_to(Path(sys.executable).parent / "plinth")
    run = subprocess.run(["bash", "-euo", "pipefail", "-c", loop[1]], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, "PATH": f"{tools}:{os.environ['PATH']}"})
    assert run.returncode == 0, run.stderr
    listing = mirror_list(load_stack_spec(ROOT, loop[2]))
    expected = [f"crane copy {i.source} {i.target.split('@')[0]}" for i in listing.images if i.source != i.target]
    expected += [call for c in listing.charts for call in (
        f"helm pull {c.name} --repo {c.repository} --version {c.version}", f"helm push {c.name}-{c.version}.tgz {c.target}")]
    expected += [f"curl -fsSLo {b.url.rsplit('/', 1)[1]} {b.url}" for b in listing.bundles]
    assert (tmp_path / "calls").read_text().splitlines() == expected
    assert all(i.target for i in listing.images) and any(i.source == i.target for i in listing.images)
