"""The linter and the type checker, as CI runs them: `ruff check` and `mypy` (configured in pyproject.toml).

Both come with the test extra; without them these tests skip and say so.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _needs(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: pip install -e '.[test]'")


def test_ruff_finds_nothing():
    _needs("ruff")
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--output-format", "concise"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr


def package_tree(into: Path) -> Path:
    """The package laid out as it installs (`modules/` as `plinth/modules`), as links to the sources.

    The project maps `plinth.modules` to `modules/` (pyproject's package-dir); mypy names a module after its
    directory, so it reads the package through these links (without them every `plinth.modules` import
    would be reported missing).
    """
    package = into / "plinth"
    package.mkdir(parents=True)
    for entry in (ROOT / "plinth").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    (package / "modules").symlink_to(ROOT / "modules")
    return into


def test_mypy_finds_nothing(tmp_path):
    _needs("mypy")
    tree = package_tree(tmp_path / "tree")
    run = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                          "--cache-dir", str(tmp_path / "cache"), "--no-error-summary", "-p", "plinth"],
                         cwd=tree, capture_output=True, text=True, timeout=600)
    # Name the files as they are in the repository.
    found = (run.stdout + run.stderr).replace("plinth/modules/", "modules/")
    assert run.returncode == 0, found

