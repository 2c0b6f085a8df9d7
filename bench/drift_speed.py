"""Time the drift job (modules/serving/driftjob/drift.py) with the real Evidently on 100k logged rows.

Writes a synthetic reference (100k rows) and a shifted logged window (100k rows) of six numeric columns and
two categorical ones, as CSV and as Parquet, and times the whole program (interpreter start, reading,
Evidently's per-column drift, writing the gauges), best of --repeat. Runs the drift environment's Python:
$PLINTH_DRIFT_PYTHON, else .venv-drift/bin/python (see .ci/run).

Usage: python bench/drift_speed.py [--rows 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "modules" / "serving" / "driftjob" / "drift.py"

# Written by the drift environment's own pandas/numpy (the benchmark's Python needs neither).
MAKE = """
import sys, numpy as np, pandas as pd
rows, out = int(sys.argv[1]), sys.argv[2]
for name, seed, shift in (("reference", 1, 0.0), ("window", 2, 0.5)):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({f"x{i}": rng.normal(shift * (i % 2), 1, rows) for i in range(6)})
    frame["country"] = rng.choice(["de", "fr", "nl", "it"], rows, p=[0.4, 0.3, 0.2, 0.1] if not shift else
                                  [0.1, 0.2, 0.3, 0.4])
    frame["device"] = rng.choice(["ios", "android", "web"], rows)
    frame.to_csv(f"{out}/{name}.csv", index=False)
    frame.to_parquet(f"{out}/{name}.parquet")
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    python = os.environ.get("PLINTH_DRIFT_PYTHON") or str(ROOT / ".venv-drift" / "bin" / "python")
    if not Path(python).exists():
        print(f"no drift environment at {python}: set PLINTH_DRIFT_PYTHON (see .ci/run)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([python, "-c", MAKE, str(args.rows), tmp], check=True)
        for fmt in ("csv", "parquet"):
            best, line = float("inf"), ""
            for _ in range(args.repeat):
                started = time.perf_counter()
                done = subprocess.run([python, str(PROGRAM), f"--reference={tmp}/reference.{fmt}",
                                       f"--window={tmp}/window.{fmt}", "--model=bench", "--team=bench",
                                       f"--out={tmp}/drift.prom"], capture_output=True, text=True, check=True)
                took = time.perf_counter() - started
                if took < best:
                    best, line = took, done.stderr.strip()
            print(f"{fmt:8} {args.rows} reference + {args.rows} window rows, 8 columns: {best:.2f}s (best of "
                  f"{args.repeat})\n         {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
