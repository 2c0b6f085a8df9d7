"""Benchmark the offline engine: `plinth plan` wall time (interpreter start included), with and
without the offline runtime's shortcuts (PLINTH_PLAN_PLAIN=1), against the import floor.

Usage: python bench/plan_speed.py [--teams 100,1000] [--models 100,1000] [--models-per-team 10]
                                  [--repeat 3] [--modes fast,plain]

One row per case: the minimal, regulated, eks-gpu and gke-gpu blueprints, generated specs with --teams teams, and
generated specs serving --models models (every one with a canary; one in five on a GPU), spread
over models/--models-per-team teams whose quotas fit them (the spec rules check it).
  resources  as `plinth plan` counts them (components excluded);
  floor s    the import floor: a fresh interpreter starting and importing every module a `plinth
             plan` of the case loads (found by planning it once; a 2-team spec stands in for
             generated ones), not counting its exit; those the plan loads while it runs (the cloud
             SDKs' modules, loaded on first use) with the garbage collector paused, as the run has it;
  <mode> s   wall seconds of `plinth plan SPEC` (best of --repeat; once for 1,000 teams or more);
  peak GB    peak resident memory of the last `plinth plan SPEC` (first mode);
  ms/res     planning work per resource beyond the floor: (wall - floor) / resources.
With a 1,000-team case: the goals for it, each with its number and whether it is met, and the time of a
`plinth diff` of it against the same spec with one quota changed (both sides planned), against one plan.

Then, per --models case, what serving costs per model (default mode): the wall time of the same
teams with no models is subtracted, so what is left is the models' own validation and planning.
  res/model  resources each model adds (Deployment, Service and PDB per track, route, policies, ...);
  ms/model   (wall - wall of the teams alone) / models;
  x first    ms/model against the first --models case: about 1.0 while the cost is linear.
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
from plinth.engine import offline
before = set()
recording = offline.record
def record(*args, **kwargs):
    before.update(sys.modules)
    return recording(*args, **kwargs)
offline.record = record
from plinth.cli import main
sys.argv = ["plinth", "plan", spec]
try:
    main()
except SystemExit as done:
    if done.code not in (None, 0):
        raise
# Leave out the lazily imported modules (importlib's and Pulumi's _LazyModule) never used: not loaded.
loaded = sorted(name for name, module in sys.modules.items() if type(module).__name__ != "_LazyModule")
with open(out, "w") as file:
    json.dump({"before": [name for name in loaded if name in before],
               "during": [name for name in loaded if name not in before]}, file)
"""
_IMPORT = """
import gc, importlib, json, os, sys
modules = json.load(open(sys.argv[1]))
for group in ("before", "during"):
    if group == "during":
        gc.disable()  # as the offline run does (plinth/engine/offline.py, 6.): what it imports, it imports so
    for name in modules[group]:
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


GPU_EVERY = 5
"""Every fifth generated model asks for a GPU (so the GPU placement and quota rules run too)."""


def generated_serving_blueprint(models: int, per_team: int, with_models: bool = True) -> str:
    """`models` Triton and BentoML models, each with a 10% canary, `per_team` to a team; quotas fit exactly
    what the rules count (stable, canary; 1 CPU, 2Gi and, for a GPU model, 1 GPU per replica). With
    `with_models` false: the same platform and teams serving nothing (the per-model baseline)."""
    teams = -(-models // per_team)
    lines = [
        "apiVersion: plinth.dev/v1alpha1", "kind: Platform",
        "metadata: {name: bench, environment: dev, costCenter: bench}",
        "target: {type: existing}", "rbac: {platformAdminGroup: admins}",
        "network: {cilium: {enabled: true, apiServer: {host: api.k8s.internal}}, loadBalancer: {ranges: [10.20.0.240/28]}}",
        "certificates: {certManager: {enabled: true}}",
        "monitoring: {enabled: true}",
        "gpu: {operator: {enabled: true}}",
        "teams:",
    ]
    for t in range(teams):
        count = min(per_team, models - t * per_team)
        gpus = sum(2 for m in range(t * per_team, t * per_team + count) if m % GPU_EVERY == 0)
        lines += [f"  - name: team-{t:04d}",
                  f"    groups: {{mlEngineer: [eng-{t}], dataScientist: [ds-{t}], viewer: [view-{t}]}}",
                  f"    quota: {{cpu: '{2 * count}', memory: {4 * count}Gi, gpu: {gpus}}}"]
    if not with_models:
        return "\n".join(lines) + "\n"
    lines += ["serving:", "  hostname: serving.models.plinth.internal", "  models:"]
    for m in range(models):
        team = f"team-{m // per_team:04d}"
        if m % 2:
            lines.append(f"    - {{name: model-{m:05d}, team: {team}, runtime: bentoml, "
                         f"image: registry.corp.internal/ml/model-{m:05d},")
        else:
            lines.append(f"    - {{name: model-{m:05d}, team: {team}, runtime: triton, "
                         f"modelRepository: 'pvc://models/model-{m:05d}',")
        lines.append(f"       gpu: {1 if m % GPU_EVERY == 0 else 0}, cpu: '1', memory: 2Gi, "
                     "stable: {version: '1.0.0'}, canary: {version: '1.1.0', weight: 10}}")
    return "\n".join(lines) + "\n"


PEAK_RSS: dict[str, float] = {}
"""Peak resident memory (GB) of the last `plinth plan` of each spec (see best_of)."""
GOALS = (("1,000 teams planned in at most 10 s", "wall", 10.0), ("1,000 teams peak RSS at most 0.5 GB", "rss", 0.5),
         ("1,000 teams at most 1.0 ms per resource beyond the import floor", "ms", 1.0))
"""(goal, measure of the 1,000-team row, bound); render against helm: bench/render_speed.py."""


def best_of(repeat: int, command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    best, out = float("inf"), ""
    for _ in range(repeat):
        started = time.perf_counter()
        with tempfile.TemporaryFile("w+") as stdout:
            proc = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, text=True,
                                    env={**os.environ, **(env or {})})
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak memory (ru_maxrss, KiB)
            proc.returncode = os.waitstatus_to_exitcode(status)
            seconds = time.perf_counter() - started
            if proc.returncode:
                raise subprocess.CalledProcessError(proc.returncode, command)
            stdout.seek(0)
            best, out = min(best, seconds), stdout.read()
        PEAK_RSS[command[-1]] = usage.ru_maxrss / 1024 / 1024
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
    parser.add_argument("--models", default="100,1000", help="served-model cases (empty: none)")
    parser.add_argument("--models-per-team", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="fast,plain", help="fast (default engine), plain (PLINTH_PLAN_PLAIN=1)")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        parser.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("minimal blueprint", ROOT / "blueprints" / "minimal.yaml", 0),
                 ("regulated blueprint", REGULATED, 0),
                 # The cloud targets: the VPC, cluster, node pools, identities, keys and buckets with the platform.
                 ("eks-gpu blueprint", ROOT / "blueprints" / "eks-gpu.yaml", 0),
                 ("gke-gpu blueprint", ROOT / "blueprints" / "gke-gpu.yaml", 0)]
        for n in (int(x) for x in args.teams.split(",") if x):
            cases.append((f"{n:,} teams", Path(tmp) / f"teams-{n}.yaml", n))
        for _, path, teams in cases:
            if teams:
                path.write_text(generated_blueprint(teams))
        served = []  # (models, teams, spec, the same teams serving nothing)
        for n in (int(x) for x in args.models.split(",") if x):
            teams = -(-n // args.models_per_team)
            spec, alone = Path(tmp) / f"models-{n}.yaml", Path(tmp) / f"models-{n}-none.yaml"
            spec.write_text(generated_serving_blueprint(n, args.models_per_team))
            alone.write_text(generated_serving_blueprint(n, args.models_per_team, with_models=False))
            served.append((n, teams, spec, alone))
            # Large cases are planned once, as for teams (1,000 teams or models and up).
            cases.append((f"{n:,} models", spec, max(n, teams)))
        small = Path(tmp) / "teams-2.yaml"
        small.write_text(generated_blueprint(2))
        header = f"{'case':<21}{'resources':>10}{'floor s':>9}{'peak GB':>9}" + "".join(
            f"{m + ' s':>10}{'ms/res':>8}" for m in modes)
        print(header + (f"{'speed-up':>10}" if len(modes) == 2 else ""), flush=True)
        measured: dict[str, dict[str, float]] = {}
        for label, path, teams in cases:
            floor = import_floor(small if teams else path, args.repeat, Path(tmp))
            repeat = 1 if teams >= 1000 else args.repeat
            row, walls = f"{label:<21}", []
            for mode in modes:
                wall, resources = timed_plan(path, mode, repeat)
                walls.append(wall)
                if len(walls) == 1:
                    row += f"{resources:>10,}{floor:>9.2f}{PEAK_RSS[str(path)]:>9.2f}"
                    measured[label] = {"wall": wall, "rss": PEAK_RSS[str(path)],
                                       "ms": (wall - floor) * 1000 / resources}
                row += f"{wall:>10.2f}{(wall - floor) * 1000 / resources:>8.2f}"
            if len(walls) == 2:
                row += f"{walls[1] / walls[0]:>9.1f}x"
            print(row, flush=True)
        if "1,000 teams" in measured:
            print(f"\ngoals ({modes[0]} mode)", flush=True)
            for goal, measure, bound in GOALS:
                value = measured["1,000 teams"][measure]
                print(f"  {goal}: {value:.2f} {'met' if value <= bound else 'NOT met'}", flush=True)
            # A review: `plinth diff` of the 1,000 teams and the same with one quota changed (both sides planned).
            spec = Path(tmp) / "teams-1000.yaml"
            changed = Path(tmp) / "teams-1000-changed.yaml"
            changed.write_text(spec.read_text().replace("quota: {gpu: 2}", "quota: {gpu: 3}", 1))
            wall, out = best_of(1, [PLINTH, "diff", str(spec), str(changed)],
                                {"PLINTH_PLAN_PLAIN": MODES[modes[0]]})
            print(f"  `plinth diff` of 1,000 teams, one quota changed: {wall:.2f} s, "
                  f"{wall / measured['1,000 teams']['wall']:.2f}x one plan ({out.strip().splitlines()[-1]})",
                  flush=True)
        if served:
            mode = modes[0]
            print(f"\nserving cost per model ({mode} mode; the same teams' plan without models subtracted)",
                  flush=True)
            print(f"{'case':<21}{'teams':>7}{'resources':>11}{'res/model':>11}{'teams s':>9}{'wall s':>9}"
                  f"{'ms/model':>10}{'x first':>9}", flush=True)
            first = None
            for n, teams, spec, alone in served:
                repeat = 1 if n >= 1000 else args.repeat
                base, base_resources = timed_plan(alone, mode, repeat)
                wall, resources = timed_plan(spec, mode, repeat)
                per_model = (wall - base) * 1000 / n
                first = first or per_model
                print(f"{f'{n:,} models':<21}{teams:>7,}{resources:>11,}{(resources - base_resources) / n:>11.1f}"
                      f"{base:>9.2f}{wall:>9.2f}{per_model:>10.2f}{per_model / first:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
