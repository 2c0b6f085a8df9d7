"""Time the drift job (modules/serving/driftjob/drift.py) with the real Evidently on 100k logged rows.

Writes a synthetic reference (100k rows) and a shifted logged window (100k rows) of six numeric columns and
two categorical ones, as CSV and as Parquet, and times the whole program (interpreter start, reading,
Evidently's per-column drift, writing the gauges), best of --repeat. Runs the drift environment's Python:
$PLINTH_DRIFT_PYTHON, else .venv-drift/bin/python (see .ci/run).

With --store, the window is instead the request logger's records in a real SeaweedFS S3 gateway over TLS
(tests/s3server.py, the toolchain's `weed`): one record per row, 1000 records per object, as
modules/serving/requestlog writes them, read back with `--window-store` (the drift job of a model with
`drift.requestLog`).

Usage: python bench/drift_speed.py [--rows 100000] [--repeat 3] [--store]
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
# The window as the request logger's records: one row per request, 1000 records per object.
import datetime, json
now = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
records = frame.to_dict("records")
for start in range(0, rows, 1000):
    with open(f"{out}/window-{start // 1000:05d}.jsonl", "w") as file:
        for row in records[start:start + 1000]:
            file.write(json.dumps({"time": now, "track": "stable", "method": "POST", "path": "/predict",
                                   "status": 200, "ms": 1.0, "request": row, "response": {"score": 0.5}}) + "\\n")
"""


def store_window(tmp: str):
    """A real S3 store holding the logged window; yields (s3 URL, the drift job's environment)."""
    import contextlib
    import datetime

    sys.path.insert(0, str(ROOT / "tests"))
    from s3server import Identity, S3Server, weed  # the tests' SeaweedFS (the toolchain's weed)

    admin = Identity("admin", ("Admin", "Read", "List", "Write", "Tagging"))
    server = S3Server(weed(), Path(tmp) / "store", admin, [], ["bench-artifacts"])
    stack = contextlib.ExitStack()
    stack.enter_context(server)
    hour = datetime.datetime.now(datetime.UTC)
    prefix = "requests/bench/bench"
    for n, path in enumerate(sorted(Path(tmp).glob("window-*.jsonl"))):
        key = f"{prefix}/{hour:%Y-%m-%d}/{hour:%H}/bench-0-{int(hour.timestamp() * 1000)}-{n:06d}.jsonl"
        assert server.request(admin, "PUT", "bench-artifacts", key, path.read_bytes()).status == 200
    env = {**os.environ, **admin.aws_env(), "AWS_ENDPOINT_URL_S3": server.endpoint, "AWS_CA_BUNDLE": str(server.ca)}
    return stack, f"s3://bench-artifacts/{prefix}", env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store", action="store_true", help="the window from the request logger's records in S3")
    args = parser.parse_args()
    python = os.environ.get("PLINTH_DRIFT_PYTHON") or str(ROOT / ".venv-drift" / "bin" / "python")
    if not Path(python).exists():
        print(f"no drift environment at {python}: set PLINTH_DRIFT_PYTHON (see .ci/run)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([python, "-c", MAKE, str(args.rows), tmp], check=True)
        runs = [(fmt, [f"--reference={tmp}/reference.{fmt}", f"--window={tmp}/window.{fmt}"], None)
                for fmt in ("csv", "parquet")]
        if args.store:
            stack, url, env = store_window(tmp)
            runs = [("s3 jsonl", [f"--reference={tmp}/reference.parquet", f"--window-store={url}",
                                  "--window-hours=1"], env)]
        for fmt, window, env in runs:
            best, line = float("inf"), ""
            for _ in range(args.repeat):
                started = time.perf_counter()
                done = subprocess.run([python, str(PROGRAM), *window, "--model=bench", "--team=bench",
                                       f"--out={tmp}/drift.prom"], capture_output=True, text=True, env=env)
                if done.returncode:
                    print(done.stderr, file=sys.stderr)
                    return 1
                took = time.perf_counter() - started
                if took < best:
                    best, line = took, done.stderr.strip()
            print(f"{fmt:8} {args.rows} reference + {args.rows} window rows, 8 columns: {best:.2f}s (best of "
                  f"{args.repeat})\n         {line}")
        if args.store:
            stack.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
