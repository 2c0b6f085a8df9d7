"""Benchmark the offline engine: `plinth plan` wall time (interpreter start included)
for the minimal blueprint and for generated specs with 10 / 100 / 1,000 teams.

Usage: python bench/plan_speed.py [--teams 10,100,1000] [--repeat 3]
Prints one row per case: wall seconds (best of --repeat), resources, resources per second.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLINTH = str(Path(sys.executable).parent / "plinth")


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


def timed_plan(blueprint: Path, out: Path, repeat: int) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([PLINTH, "plan", str(blueprint), "--out", str(out)], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    resources = sum(r["custom"] for r in json.loads((out / "plan.json").read_text())["resources"])
    return best, resources


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teams", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'case':<22}{'wall s':>9}{'resources':>11}{'resources/s':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("minimal blueprint", ROOT / "blueprints" / "minimal.yaml")]
        for n in (int(x) for x in args.teams.split(",") if x):
            path = Path(tmp) / f"teams-{n}.yaml"
            path.write_text(generated_blueprint(n))
            cases.append((f"{n} teams", path))
        for label, path in cases:
            repeat = args.repeat if "minimal" in label or "10 " in label else 1
            wall, resources = timed_plan(path, Path(tmp) / "out", repeat)
            print(f"{label:<22}{wall:>9.2f}{resources:>11}{resources / wall:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
