"""Hostile input to the verbs: every input file read like a spec file, every output refused with exit 2 where
it cannot be written safely, what a previous report says escaped, helm's refusal of values named by key, and
the size bounds of a spec. Every command runs with a timeout, so a hang fails the test instead of the run."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from support import MINIMAL, ROOT

PLINTH = [str(Path(sys.executable).parent / "plinth")]


def plinth(*args, cwd: Path = ROOT, env: dict | None = None):
    return subprocess.run([*PLINTH, *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PLINTH_DEBUG": "", **(env or {})})


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "Pulumi.yaml").write_text("name: plinth\nruntime: python\n")
    (tmp_path / "blueprints").mkdir()
    (tmp_path / "stacks").mkdir()
    (tmp_path / "blueprints/b.yaml").write_text(MINIMAL)
    (tmp_path / "stacks/Pulumi.s.yaml").write_text("config:\n  plinth:blueprint: blueprints/b.yaml\n")
    return tmp_path


def odd_file(path: Path, kind: str) -> None:
    """A FIFO (reading it blocks forever) or a link to /dev/zero (reading it never ends)."""
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_report_since_reads_a_regular_file_only(project, kind):
    odd_file(project / "old.json", kind)
    run = plinth("report", "--stack", "s", "--out", "out", "--since", "old.json", cwd=project)
    assert (run.returncode, run.stderr) == (2, "--since: old.json: not a report.json (not a regular file)\n1 error\n")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_diff_reads_regular_plan_files_only(project, kind):
    odd_file(project / "old.json", kind)
    run = plinth("diff", "old.json", "blueprints/b.yaml", cwd=project)
    assert (run.returncode, run.stderr) == (2, "old.json: not a regular file\n1 error\n")


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_a_policy_configuration_that_is_no_regular_file_is_refused(project, kind):
    odd_file(project / "stacks/policy.s.json", kind)
    run = plinth("check", "--stack", "s", cwd=project)
    assert (run.returncode, run.stderr) == (
        2, f"policy: {project / 'stacks/policy.s.json'}: not a regular file\n1 error\n")


def test_a_plan_file_above_the_size_limit_is_refused(project, monkeypatch):
    from typer.testing import CliRunner

    import plinth.cli as cli
    from plinth.spec.errors import SpecInvalid

    monkeypatch.chdir(project)
    monkeypatch.setattr(cli, "MAX_PLAN_BYTES", 1024)
    (project / "big.json").write_text("[" + "0, " * 1000 + "0]")
    result = CliRunner().invoke(cli.app, ["diff", "big.json", "blueprints/b.yaml"])
    assert isinstance(result.exception, SpecInvalid)
    assert [str(e) for e in result.exception.errors] == ["big.json: larger than the 1 KiB limit for a plan file"]


def test_report_refuses_an_out_it_cannot_write_before_any_work(project):
    run = plinth("report", "--stack", "s", "--out", "/proc/sys/plinth-out", cwd=project)
    assert run.returncode == 2 and run.stderr.startswith("--out: /proc/sys/plinth-out: cannot create files in "
                                                         "/proc/sys (")
    (project / "afile").write_text("mine")
    run = plinth("report", "--stack", "s", "--out", "afile", cwd=project)
    assert (run.returncode, run.stderr) == (2, "--out: afile: exists and is not a directory\n1 error\n")


@pytest.mark.parametrize("verb, name", [("report", "report.json"), ("report", "report.md"), ("plan", "plan.json")])
def test_an_output_file_that_is_a_link_is_never_written_through(project, verb, name):
    (project / "out").mkdir()
    (project / "precious").write_text("mine")
    (project / "out" / name).symlink_to(project / "precious")
    run = plinth(verb, "--stack", "s", "--out", "out", cwd=project)
    assert run.returncode == 2, run.stderr
    assert run.stderr.endswith(f"--out: out/{name}: a symbolic link; refusing to write through it (remove it "
                               "first)\n1 error\n")
    assert (project / "precious").read_text() == "mine"
    assert sorted(p.name for p in (project / "out").iterdir() if not p.name.startswith("report.")) in ([], [name])


def test_what_a_previous_report_says_is_escaped_in_report_md(project):
    (project / "old.json").write_text(json.dumps({
        "provenance": {"spec_sha256": "<script>alert(1)</script>"},
        "access": ["<img src=x onerror=alert(1)>", "[click](javascript:alert(1)) | **bold**"]}))
    run = plinth("report", "--stack", "s", "--out", "out", "--since", "old.json", cwd=project)
    assert run.returncode == 0, run.stderr
    text = (project / "out/report.md").read_text()
    changes = text.split("## Changes since the previous report")[1]
    assert "<script>" not in changes and "<img" not in changes and "](javascript" not in changes
    assert "- spec: &lt;script&gt;alert\\(1\\)&lt;/script&gt; → " in changes
    assert '  - access: "&lt;img src=x onerror=alert\\(1\\)&gt;" → (none)' in changes


def _helm_rejecting_cert_manager_values(project, tmp_path, stderr: tuple[str, ...]):
    """A stand-in helm that refuses the values with `stderr`, a chart directory holding cert-manager's archive,
    and the blueprint b.yaml giving cert-manager a value its schema refuses: (helm, charts)."""
    from plinth.catalog import CHARTS

    helm = tmp_path / "helm"
    helm.write_text("#!/bin/sh\n" + "".join(f"echo {shlex.quote(line)} >&2\n" for line in stderr) + "exit 1\n")
    helm.chmod(0o755)
    charts = tmp_path / "charts"
    (charts / "charts").mkdir(parents=True)
    (charts / "charts" / CHARTS["cert-manager"].archive).write_bytes(b"")
    (project / "blueprints/b.yaml").write_text(MINIMAL + "certificates:\n  certManager:\n    enabled: true\n"
                                               "    values: {webhook: {serviceType: 5}}\n")
    return helm, charts


def test_values_helm_rejects_exit_2_naming_the_key(project, tmp_path):
    # helm's own message for a value its chart's schema refuses (helm 3.22, cert-manager's values.schema.json).
    helm, charts = _helm_rejecting_cert_manager_values(project, tmp_path, (
        "Error: values don't meet the specifications of the schema(s) in the following chart(s):",
        "cert-manager:", "- at '/webhook/serviceType': got number, want string"))
    from plinth.catalog import CHARTS

    run = plinth("render", "blueprints/b.yaml", "--out", "out", "--charts", str(charts), cwd=project,
                 env={"PLINTH_HELM": str(helm)})
    assert (run.returncode, run.stdout) == (2, "")
    assert run.stderr == (
        "certificates.certManager.values.webhook.serviceType: helm template cert-manager "
        f"({CHARTS['cert-manager'].archive}) rejects the values: values don't meet the specifications of the "
        "schema(s) in the following chart(s): cert-manager: - at '/webhook/serviceType': got number, want string\n"
        "1 error\n")


def test_check_names_the_values_key_helm_rejects_too(project, tmp_path):
    helm, charts = _helm_rejecting_cert_manager_values(
        project, tmp_path, ("Error: values don't meet the specifications of the schema(s)",))
    run = plinth("check", "blueprints/b.yaml", "--charts", str(charts), cwd=project, env={"PLINTH_HELM": str(helm)})
    assert run.returncode == 2 and "internal error" not in run.stderr, run.stderr
    assert run.stderr.startswith("certificates.certManager.values: helm template cert-manager"), run.stderr


@pytest.mark.parametrize("field, limit", [("teams", 2000), ("models", 1000)])
def test_teams_and_models_are_bounded(project, field, limit):
    from plinth.spec.errors import SpecInvalid
    from plinth.spec.load import load_spec

    if field == "teams":
        text = "extends: b.yaml\nteams:\n" + "".join(f"  - name: t{i}\n" for i in range(limit))  # and fraud
        where, path = "2:1", "teams"
    else:
        text = "extends: b.yaml\nserving:\n  models:\n" + "".join(
            f"    - {{name: m{i}, team: fraud, runtime: bentoml, image: r.internal/m, stable: {{version: '1'}}}}\n"
            for i in range(limit + 1))
        where, path = "3:3", "serving.models"
    (project / "blueprints/big.yaml").write_text(text)
    with pytest.raises(SpecInvalid) as caught:
        load_spec(project / "blueprints/big.yaml")
    assert str(caught.value.errors[0]).endswith(
        f"blueprints/big.yaml:{where}: {path}: {limit + 1} items, more than the limit of {limit} (a plan's memory "
        "grows with each): split the platform")
