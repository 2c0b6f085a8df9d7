"""Benchmark the canary gate (`plinth canary set|promote --gate`) against a real local Prometheus.

The server is the toolchain's `prometheus` (tests/e2e/toolchain/build.sh, or $PLINTH_PROMETHEUS; promtool likewise),
its TSDB loaded with 20 minutes of synthetic serving series (tests/promserver.py: four models, two runtimes).
Prints, per model, the gate's own latency (its four instant queries: each track's error ratio and p95 over the
model's slo.window, and the judgement) as the median and best of --repeat runs, and the wall time of the whole
`plinth canary set --gate` command (interpreter start, the spec, the gate; refused, so no plan diff).

Usage: python bench/gate_latency.py [--repeat 50]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()

    from e2e.binaries import toolchain_tool
    from promserver import GATED_BLUEPRINT, prometheus, series

    from plinth.gate import gate
    from plinth.spec.load import load_spec

    tools = {name: toolchain_tool(name) for name in ("promtool", "prometheus")}
    if not all(tools.values()):
        sys.exit("no promtool or prometheus: run tests/e2e/toolchain/build.sh (or set PLINTH_PROMTOOL and "
                 "PLINTH_PROMETHEUS)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / "Pulumi.yaml").write_text((ROOT / "Pulumi.yaml").read_text())
        (root / "gated.yaml").write_text(GATED_BLUEPRINT)
        spec = load_spec(root / "gated.yaml")
        with prometheus(tools["promtool"], tools["prometheus"], root, series(int(time.time()))) as url:
            print(f"Prometheus at {url}; {args.repeat} runs per model")
            for model in spec.serving.models:
                gate(model, url, 10.0)  # the first query of a series reads its block: warm up
                seconds = []
                for _ in range(args.repeat):
                    started = time.perf_counter()
                    verdict = gate(model, url, 10.0)
                    seconds.append(time.perf_counter() - started)
                print(f"{model.team}/{model.name} ({model.runtime}): gate {statistics.median(seconds) * 1000:.1f} ms "
                      f"median, {min(seconds) * 1000:.1f} ms best ({'passed' if verdict.passed else 'refused'})")
            plinth = str(Path(sys.executable).parent / "plinth")
            started = time.perf_counter()
            run = subprocess.run([plinth, "canary", "set", "scorer", "gated.yaml", "--weight", "50", "--gate",
                                  "--prometheus", url], cwd=root, capture_output=True, text=True, timeout=120)
            print(f"plinth canary set --gate (refused, exit {run.returncode}): "
                  f"{time.perf_counter() - started:.2f} s wall")


if __name__ == "__main__":
    main()
