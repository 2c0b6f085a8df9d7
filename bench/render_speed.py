"""Benchmark the whole-platform offline path on the regulated blueprint: `plinth plan` and
`plinth render` with the real charts (interpreter start included, best of --repeat).

Usage: python bench/render_speed.py [--charts ../shared/charts] [--repeat 3]
Needs `helm` on PATH or PLINTH_HELM for the chart render (tests/e2e/toolchain/build.sh builds one).
Prints wall seconds, resources planned, objects rendered (Plinth's own + the charts').
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
BLUEPRINT = "blueprints/onprem-airgap-regulated.yaml"


def best_of(repeat: int, args: list[str]) -> tuple[float, str]:
    best, err = float("inf"), ""
    for _ in range(repeat):
        started = time.perf_counter()
        proc = subprocess.run([PLINTH, *args], cwd=ROOT, check=True, capture_output=True, text=True)
        best, err = min(best, time.perf_counter() - started), proc.stderr
    return best, err


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charts", default=str(ROOT.parent / "shared" / "charts"))
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plan_s, _ = best_of(opts.repeat, ["plan", BLUEPRINT, "--out", tmp])
        resources = sum(r["custom"] for r in json.loads((Path(tmp) / "plan.json").read_text())["resources"])
        render_s, summary = best_of(opts.repeat, ["render", BLUEPRINT, "--out", f"{tmp}/r", "--charts", opts.charts])
    print(f"{'step':<34}{'wall s':>8}  what")
    print(f"{'plinth plan ' + Path(BLUEPRINT).stem:<34}{plan_s:>8.2f}  {resources} resources")
    print(f"{'plinth render --charts':<34}{render_s:>8.2f}  {summary.strip().splitlines()[-1]}")


if __name__ == "__main__":
    main()
