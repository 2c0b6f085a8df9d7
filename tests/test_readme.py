"""The README stays true: its generated numbers are what the code makes today."""

from __future__ import annotations

import difflib

import readme_numbers


def test_the_readme_numbers_are_what_the_plans_say():
    text = readme_numbers.README.read_text(encoding="utf-8")
    assert readme_numbers._EXAMPLE.search(text), "the README lost its `plinth plan` example"
    assert readme_numbers._STACK_COUNT.search(text), "the README lost its stack resource counts"
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
