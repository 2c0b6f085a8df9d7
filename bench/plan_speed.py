"""Benchmark the offline engine: `plinth plan` wall time (interpreter start included), with and
without the offline runtime's shortcuts (PLINTH_PLAN_PLAIN=1), against the import floor.

Usage: python bench/plan_speed.py [--teams 100,1000] [--repeat 3] [--modes fast,plain]

One row per case: the minimal and regulated blueprints, and generated specs with --teams teams.
  resources  as `plinth plan` counts them (components excluded);
  floor s    the import floor: a fresh interpreter starting and importing every module a `plinth
             plan` of the case loads (found by planning it once; a 2-team spec stands in for
             generated ones), not counting its exit;
  <mode> s   wall seconds of `plinth plan SPEC` (best of --repeat; once for 1,000 teams or more);
  ms/res     planning work per resource beyond the floor: (wall - floor) / resources.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLINTH = str(Path(sys.executable).parent / "plinth")
REGULATED = ROOT / "blueprints" / "onprem-airgap-regulated.yaml"
MODES = {"fast": "0", "plain": "1"}
"""Mode name -> PLINTH_PLAN_PLAIN."""

_LOADED = """
import json, sys
spec, out = sys.argv[1:3]
from plinth.cli import main
sys.argv = ["plinth", "plan", spec]
try:
    main()
except SystemExit as done:
    if done.code not in (None, 0):
        raise
# Leave out the lazily imported modules (importlib's and Pulumi's _LazyModule) never used: not loaded.
with open(out, "w") as file:
    json.dump(sorted(name for name, module in sys.modules.items() if type(module).__name__ != "_LazyModule"), file)
"""
_IMPORT = """
import importlib, json, os, sys
for name in json.load(open(sys.argv[1])):
    try:
        importlib.import_module(name)
    except Exception:
        pass
os._exit(0)  # the floor is starting and importing; what exiting costs counts as the run's
"""


def generated_blueprint(teams: int) -> str:
    lines = [
        "apiVersion: plinth.dev/v1alpha1", "kind: Platform",
        "metadata: {name: bench, environment: dev, costCenter: bench}",
        "target: {type: existing}", "rbac: {platformAdminGroup: admins}", "teams:",
    ]
    for i in range(teams):
        lines += [f"  - name: team-{i:04d}",
                  f"    groups: {{mlEngineer: [eng-{i}], dataScientist: [ds-{i}], viewer: [view-{i}]}}",
                  "    quota: {gpu: 2}"]
    return "\n".join(lines) + "\n"


def best_of(repeat: int, command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True,
                              env={**os.environ, **(env or {})})
        best, out = min(best, time.perf_counter() - started), proc.stdout
    return best, out


def import_floor(spec: Path, repeat: int, tmp: Path) -> float:
    """Best wall seconds of a fresh interpreter importing what a `plinth plan SPEC` loads."""
    modules = tmp / f"{spec.stem}.modules.json"
    subprocess.run([sys.executable, "-c", _LOADED, str(spec), str(modules)], cwd=ROOT, check=True,
                   capture_output=True)
    seconds, _ = best_of(repeat, [sys.executable, "-c", _IMPORT, str(modules)])
    return seconds


def timed_plan(spec: Path, mode: str, repeat: int) -> tuple[float, int]:
    """(best wall seconds, resources) of `plinth plan SPEC` in the given mode."""
    wall, out = best_of(repeat, [PLINTH, "plan", str(spec)], {"PLINTH_PLAN_PLAIN": MODES[mode]})
    match = re.search(r": (\d+) resources? in ", out.splitlines()[0])
    return wall, int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", default="100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="fast,plain", help="fast (default engine), plain (PLINTH_PLAN_PLAIN=1)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("minimal blueprint", ROOT / "blueprints" / "minimal.yaml", 0),
                 ("regulated blueprint", REGULATED, 0)]
        for n in (int(x) for x in args.teams.split(",") if x):
            cases.append((f"{n:,} teams", Path(tmp) / f"teams-{n}.yaml", n))
        for _, path, teams in cases:
            if teams:
                path.write_text(generated_blueprint(teams))
        small = Path(tmp) / "teams-2.yaml"
        small.write_text(generated_blueprint(2))
        header = f"{'case':<21}{'resources':>10}{'floor s':>9}" + "".join(f"{m + ' s':>10}{'ms/res':>8}" for m in modes)
        print(header + (f"{'speed-up':>10}" if len(modes) == 2 else ""), flush=True)
        for label, path, teams in cases:
            floor = import_floor(small if teams else path, args.repeat, Path(tmp))
            repeat = 1 if teams >= 1000 else args.repeat
            row, walls = f"{label:<21}", []
            for mode in modes:
                wall, resources = timed_plan(path, mode, repeat)
                walls.append(wall)
                if len(walls) == 1:
                    row += f"{resources:>10,}{floor:>9.2f}"
                row += f"{wall:>10.2f}{(wall - floor) * 1000 / resources:>8.2f}"
            if len(walls) == 2:
                row += f"{walls[1] / walls[0]:>9.1f}x"
            print(row, flush=True)


if __name__ == "__main__":
    main()
