"""Benchmark the whole-platform offline path on the regulated blueprint: `plinth plan` and
`plinth render` with the real charts (interpreter start included, best of --repeat).

Usage: python bench/render_speed.py [--charts ../shared/charts] [--repeat 3]
Needs `helm` on PATH or PLINTH_HELM for the chart render (tests/e2e/toolchain/build.sh builds one).
Prints wall seconds, resources planned, objects rendered (Plinth's own + the charts'), and the helm floor: `helm
template` of the same releases with the same values, one after another, output discarded (what rendering the charts
cannot take less than with one helm at a time; `plinth render` runs one per core, beside its plan), with render's
time against it and the goal (at most 1.5 times). The three are timed in turn, each round, best of --repeat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from plinth.engine.charts import HELM_RELEASE, chart_archive, helm_binary, helm_template
from plinth.plan import Plan
from plinth.spec.load import load_spec

ROOT = Path(__file__).resolve().parent.parent
PLINTH = str(Path(sys.executable).parent / "plinth")
BLUEPRINT = "blueprints/onprem-airgap-regulated.yaml"


def timed(args: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    proc = subprocess.run([PLINTH, *args], cwd=ROOT, check=True, capture_output=True, text=True)
    return time.perf_counter() - started, proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charts", default=str(ROOT.parent / "shared" / "charts"))
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    plan_s = render_s = floor_s = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        # Plan, render and the helm floor in turn, each round: a drift in the machine's speed hits all three.
        for _ in range(opts.repeat):
            plan_s = min(plan_s, timed(["plan", BLUEPRINT, "--out", tmp])[0])
            seconds, summary = timed(["render", BLUEPRINT, "--out", f"{tmp}/r", "--charts", opts.charts])
            render_s = min(render_s, seconds)
            seconds, releases = helm_floor(Plan.from_json((Path(tmp) / "plan.json").read_text()), Path(opts.charts),
                                           load_spec(ROOT / BLUEPRINT).kubernetes.version)
            floor_s = min(floor_s, seconds)
        resources = sum(r["custom"] for r in json.loads((Path(tmp) / "plan.json").read_text())["resources"])
    print(f"{'step':<34}{'wall s':>8}  what")
    print(f"{'plinth plan ' + Path(BLUEPRINT).stem:<34}{plan_s:>8.2f}  {resources} resources")
    print(f"{'plinth render --charts':<34}{render_s:>8.2f}  {summary.strip().splitlines()[-1]}")
    print(f"{'helm template, one at a time':<34}{floor_s:>8.2f}  the {releases} releases with their values (the helm floor); "
          f"render - plan: {(render_s - plan_s) / floor_s:.2f}x it, render {render_s / floor_s:.2f}x "
          f"(goal: at most {GOAL}x, {'met' if render_s / floor_s <= GOAL else 'NOT met'})")


GOAL = 1.5
"""`plinth render` against the helm floor."""


def helm_floor(plan: Plan, charts: Path, kube_version: str) -> tuple[float, int]:
    """Wall seconds of `helm template` of every release of the plan whose chart is in `charts`, in turn."""
    helm = helm_binary()
    if helm is None:
        sys.exit("no helm: put it on PATH or set PLINTH_HELM (tests/e2e/toolchain/build.sh builds one)")
    releases = [(res, chart_archive(res, charts)) for res in plan.resources if res.type == HELM_RELEASE]
    releases = [(res, archive) for res, archive in releases if archive is not None]
    started = time.perf_counter()
    for res, archive in releases:
        helm_template(res, archive, kube_version, helm)
    return time.perf_counter() - started, len(releases)


if __name__ == "__main__":
    main()
