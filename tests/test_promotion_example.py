"""The documented GitOps promotion example (examples/promotion), run for real: its scripts against a throwaway Git
repository (a bare repository as the remote) holding a copy of the regulated stacks, with the real `plinth`, and a
stand-in for the pull-request command (`gh`) that records its arguments and the body it was given."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from support import ROOT

EXAMPLE = ROOT / "examples" / "promotion"
SECONDS = 300
BRANCH = "promote/regulated-prod/fraud-scorer-2026-12-01"
DEV_MODEL = """\
      models:
        - name: fraud-scorer
          stable: {version: "2026-12-01"}
          canary: ~
"""
MADE = "plinth promote fraud-scorer --from regulated-dev --to regulated-prod"


IDENTITY = {"GIT_AUTHOR_NAME": "Promoter", "GIT_AUTHOR_EMAIL": "promoter@example.com",
            "GIT_COMMITTER_NAME": "Promoter", "GIT_COMMITTER_EMAIL": "promoter@example.com"}
"""Whoever commits (CI may have no git identity configured)."""


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **IDENTITY})
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
def project(tmp_path) -> tuple[Path, Path, dict]:
    """(checkout, bare remote, environment): main holds the project with dev serving fraud-scorer 2026-12-01."""
    remote, work, tools = tmp_path / "remote.git", tmp_path / "work", tmp_path / "bin"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=tmp_path)
    work.mkdir()
    shutil.copy(ROOT / "Pulumi.yaml", work)
    shutil.copytree(ROOT / "blueprints", work / "blueprints")
    (work / "stacks").mkdir()
    for stack in ("regulated-dev", "regulated-prod"):
        shutil.copy(ROOT / "stacks" / f"Pulumi.{stack}.yaml", work / "stacks")
    dev = work / "stacks/Pulumi.regulated-dev.yaml"
    hostname = "      hostname: serving.models-dev.corp.internal\n"
    assert dev.read_text().count(hostname) == 1
    dev.write_text(dev.read_text().replace(hostname, hostname + DEV_MODEL))
    tools.mkdir()
    # The stand-in for `gh pr create`: its arguments one per line, then the body file's text.
    (tools / "gh").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/pr-args"\n'
                              f'while [ $# -gt 0 ]; do [ "$1" = --body-file ] && cp "$2" "{tmp_path}/pr-body"; '
                              'shift; done\n')
    (tools / "gh").chmod(0o755)
    env = {**os.environ, "PATH": f"{tools}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "PYTHON": sys.executable, "NO_COLOR": "1", **IDENTITY, "PULUMI_HOME": str(tmp_path / "pulumi-home")}
    env.pop("MLFLOW_URL", None)
    git("init", "--quiet", "--initial-branch=main", cwd=work)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "The platform", cwd=work)
    git("remote", "add", "origin", str(remote), cwd=work)
    git("push", "--quiet", "origin", "main", cwd=work)
    return work, remote, env


def run(script: str, *args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXAMPLE / script), *args], cwd=cwd, capture_output=True, text=True, timeout=SECONDS,
                          env=env)


def test_a_canary_request_opens_a_pull_request_with_exactly_the_promoted_lines(project, tmp_path):
    work, remote, env = project
    done = run("promote-pr.sh", "fraud-scorer", "regulated-dev", "regulated-prod", "25", cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    branch = f"{BRANCH}-canary-25"
    assert git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote).split() == ["main", branch]
    # One commit on main, changing exactly the promoted lines of the target stack.
    assert git("rev-list", "--count", f"main..{branch}", cwd=remote).strip() == "1"
    assert git("diff", "--name-only", "main", branch, cwd=remote).split() == ["stacks/Pulumi.regulated-prod.yaml"]
    diff = git("diff", "--unified=0", "main", branch, cwd=remote)
    added = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert added == ["+    serving:", "+      models:", "+        - name: fraud-scorer",
                     '+          canary: {version: "2026-12-01", weight: 25}']
    title = "Promote fraud-scorer 2026-12-01 from regulated-dev to regulated-prod as canary (25%)"
    assert git("log", "-1", "--format=%B", branch, cwd=remote).strip() == (
        f"{title}\n\nMade by: {MADE} --canary 25\n\n"
        "Plinth-Promote: fraud-scorer regulated-dev regulated-prod 2026-12-01 25")
    # The pull request: from the pushed branch to main, the commit's title, the file's diff and the plan diff.
    assert (tmp_path / "pr-args").read_text().splitlines() == [
        "pr", "create", "--base", "main", "--head", branch, "--title", title, "--body-file",
        (tmp_path / "pr-args").read_text().splitlines()[-1]]
    body = (tmp_path / "pr-body").read_text()
    assert body.startswith(f"`{MADE} --canary 25` makes stack **regulated-prod** serve **fraud-scorer** "
                           "**2026-12-01** (the stable of **regulated-dev**) as its canary at 25% of the traffic.\n")
    stack_diff = git("diff", "main", branch, "--", "stacks/Pulumi.regulated-prod.yaml", cwd=remote)
    assert f"`stacks/Pulumi.regulated-prod.yaml`:\n\n```diff\n{stack_diff}```\n" in body
    assert "~ Deployment fraud/fraud-scorer-canary" in body
    assert "move after the merge and `pulumi up` (after-merge.sh)" in body
    # The checkout is left on the branch, clean.
    assert git("status", "--porcelain", cwd=work) == ""

    # The same request again: refused while its branch exists; the checkout stays clean and no pull request.
    (tmp_path / "pr-args").unlink()
    again = run("promote-pr.sh", "fraud-scorer", "regulated-dev", "regulated-prod", "25", cwd=work, env=env)
    assert again.returncode == 2
    assert again.stderr.splitlines()[-1].endswith(
        f"promote-pr.sh: branch {branch} already exists on origin: that promotion is requested already")
    assert not (tmp_path / "pr-args").exists() and git("status", "--porcelain", cwd=work) == ""


def test_the_pull_request_shows_the_plan_diff_and_the_merge_moves_what_the_promotion_made(project, tmp_path):
    work, remote, env = project
    assert run("promote-pr.sh", "fraud-scorer", "regulated-dev", "regulated-prod", cwd=work,
               env=env).returncode == 0
    branch = f"{BRANCH}-stable"
    title = (tmp_path / "pr-args").read_text().splitlines()[7]
    assert title == "Promote fraud-scorer 2026-12-01 from regulated-dev to regulated-prod"
    diff = git("diff", "--unified=0", "main", branch, cwd=remote)
    assert [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "+    serving:", "+      models:", "+        - name: fraud-scorer",
        '+          stable: {version: "2026-12-01"}']  # the canary of another version (2026-11-20) stays

    # In the pull request: the plan diff of the changed stack, where the branch starts against HEAD.
    shown = run("pr-diff.sh", "origin/main", cwd=work, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("### Stack `regulated-prod`\n\n")
    assert "| ~ | `Deployment fraud/fraud-scorer-stable` | `spec.template.spec.containers[triton].args[0]` | " \
        '`"--model-repository=/models/triton/2026-11-01"` | `"--model-repository=/models/triton/2026-12-01"` |' \
        in shown.stdout.splitlines()
    assert "### Stack `regulated-dev`" not in shown.stdout  # only the stack the branch changes

    # Merged (fast-forward), after `pulumi up`: the stacks are as promoted, and the promotion replayed on the
    # commit's parent makes exactly the commit's edit (the aliases' move: tests/test_registry_server.py).
    before = git("rev-parse", "main", cwd=remote).strip()
    git("push", "--quiet", "origin", f"{branch}:main", cwd=work)
    after = git("rev-parse", "main", cwd=remote).strip()
    merged = run("after-merge.sh", before, after, cwd=work, env=env)
    assert merged.returncode == 0, merged.stderr
    assert merged.stderr == "wrote stacks/Pulumi.regulated-prod.yaml\n"
    assert git("status", "--porcelain", cwd=work) == "" and git("worktree", "list", cwd=work).count("\n") == 1

    # A later commit in the same push moved dev on: nothing is promoted again, the script says why.
    dev = work / "stacks/Pulumi.regulated-dev.yaml"
    dev.write_text(dev.read_text().replace('"2026-12-01"', '"2026-12-05"'))
    git("commit", "--quiet", "-am", "dev serves 2026-12-05", cwd=work)
    moved = run("after-merge.sh", before, "HEAD", cwd=work, env=env)
    assert moved.returncode == 1
    assert moved.stderr.splitlines()[-1] == (
        "fraud-scorer: regulated-dev serves 2026-12-05 as stable, regulated-prod serves stable 2026-12-01, canary "
        "2026-11-20 at 10%: not as the promotion of 2026-12-01 left them; the aliases are not moved")
    assert git("status", "--porcelain", cwd=work) == ""


def test_a_bad_request_exits_2_with_plinths_message_and_opens_nothing(project, tmp_path):
    work, remote, env = project
    done = run("promote-pr.sh", "no-such-model", "regulated-dev", "regulated-prod", cwd=work, env=env)
    assert done.returncode == 2
    assert "no-such-model" in done.stderr and "Traceback" not in done.stderr
    assert git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=remote).split() == ["main"]
    assert not (tmp_path / "pr-args").exists() and git("status", "--porcelain", cwd=work) == ""
    usage = run("promote-pr.sh", "fraud-scorer", cwd=work, env=env)
    assert (usage.returncode, usage.stderr.endswith("usage: " + str(EXAMPLE / "promote-pr.sh")
                                                    + " MODEL FROM TO [CANARY_WEIGHT]\n")) == (2, True)


def test_the_workflow_runs_the_scripts_on_each_event_with_inputs_as_environment():
    workflow = yaml.safe_load((EXAMPLE / "promote.yml").read_text())
    events = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert set(events) == {"workflow_dispatch", "pull_request", "push"}
    assert list(events["workflow_dispatch"]["inputs"]) == ["model", "from", "to", "canary"]
    jobs = workflow["jobs"]
    runs = {name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    assert "examples/promotion/promote-pr.sh" in runs["request"]
    assert "examples/promotion/pr-diff.sh" in runs["preview"] and "pulumi preview" in runs["preview"]
    assert "examples/promotion/after-merge.sh" in runs["aliases"]
    # No ${{ }} expression is spliced into a shell text: inputs and event fields reach it as environment.
    assert all("${{" not in step.get("run", "") for job in jobs.values() for step in job["steps"])
    for script in ("promote-pr.sh", "pr-diff.sh", "after-merge.sh"):
        assert os.access(EXAMPLE / script, os.X_OK), script
