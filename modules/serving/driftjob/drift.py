"""The drift job of a served model (serving.models[].drift): Evidently compares a logged window of the
model's inputs with its reference dataset column by column, and the job publishes

    plinth_model_drift_score{model, team}            share of drifted columns, 0-1 (the ModelDrift alert's gauge)
    plinth_model_drift_column_score{model, team, column, method}
                                                     each column's test statistic (p-value or distance)
    plinth_model_drift_column_drifted{model, team, column}
                                                     1 when Evidently found the column drifted

in Prometheus' text format: on /metrics (`--serve PORT`, until the process is stopped: the CronJob's next
run replaces it) and/or into a file (`--out FILE`). Runs with Evidently alone (no Plinth import): the image
is built from the Dockerfile beside this file.

Bad input (a missing or oversized file, too many rows, no common columns) ends the run with one line on
stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import http.server
import math
import os
import sys
import time

DRIFT_METRIC = "plinth_model_drift_score"
COLUMN_METRIC = "plinth_model_drift_column_score"
DRIFTED_METRIC = "plinth_model_drift_column_drifted"
DEFAULT_MAX_ROWS = 1_000_000
DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB per file
FORMATS = (".csv", ".parquet")


class InputError(Exception):
    """Bad input: reported as one line, exit code 2."""


def read_table(path: str, max_rows: int, max_bytes: int):
    """One .csv or .parquet file, refused before reading when larger than max_bytes or longer than max_rows."""
    import pandas as pd

    if not path.endswith(FORMATS):
        raise InputError(f"{path}: not a .csv or .parquet file")
    try:
        size = os.path.getsize(path)
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error.strerror}") from None
    if size > max_bytes:
        raise InputError(f"{path}: {size} bytes, more than the limit of {max_bytes} (--max-bytes)")
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            rows = pq.ParquetFile(path).metadata.num_rows
            if rows > max_rows:
                raise InputError(f"{path}: {rows} rows, more than the limit of {max_rows} (--max-rows)")
            return pd.read_parquet(path)
        # One row more than allowed tells a file that is too long without reading all of it.
        table = pd.read_csv(path, nrows=max_rows + 1)
    except InputError:
        raise
    except Exception as error:  # the reader's own message names what is wrong with the file
        raise InputError(f"{path}: not a readable {path.rsplit('.', 1)[-1]} file: {error}") from None
    if len(table) > max_rows:
        raise InputError(f"{path}: more than the limit of {max_rows} rows (--max-rows)")
    return table


def compare(reference, window) -> tuple[float, list[tuple[str, str, float, bool]]]:
    """Evidently's data drift over the reference's columns: (share of drifted columns, per column (name, method,
    statistic, drifted)). Each column's method and threshold are Evidently's defaults for its type and size."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    if reference.empty or window.empty:
        raise InputError(f"the {'reference' if reference.empty else 'window'} has no rows")
    missing = [c for c in reference.columns if c not in window.columns]
    if missing:
        raise InputError(f"the window lacks the reference's columns {', '.join(map(str, missing))}")
    columns = [str(c) for c in reference.columns]
    snapshot = Report([DataDriftPreset(columns=columns)], include_tests=True).run(
        window[columns], reference[columns]).dict()
    share, per_column, drifted = None, {}, set()
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if config["type"].endswith(":DriftedColumnsCount"):
            share = float(metric["value"]["share"])
        elif config["type"].endswith(":ValueDrift"):
            per_column[metric["id"]] = (config["column"], config["method"], float(metric["value"]))
    for test in snapshot["tests"]:
        metric_id = test["metric_config"]["metric_id"]
        if metric_id in per_column and str(test["status"]).endswith("FAIL"):
            drifted.add(metric_id)
    if share is None:
        raise RuntimeError("Evidently's report has no DriftedColumnsCount")
    return share, [(*per_column[m], m in drifted) for m in per_column]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def exposition(model: str, team: str, share: float, columns) -> str:
    """The gauges in Prometheus' text format (0.0.4)."""
    base = f'model="{_label(model)}",team="{_label(team)}"'
    lines = [f"# HELP {DRIFT_METRIC} Share of the model's input columns Evidently finds drifted (0-1).",
             f"# TYPE {DRIFT_METRIC} gauge", f"{DRIFT_METRIC}{{{base}}} {share:.6g}",
             f"# HELP {COLUMN_METRIC} Each column's drift statistic (p-value or distance, by method).",
             f"# TYPE {COLUMN_METRIC} gauge"]
    lines += [f'{COLUMN_METRIC}{{{base},column="{_label(c)}",method="{_label(m)}"}} '
              f"{f'{v:.6g}' if math.isfinite(v) else 'NaN'}" for c, m, v, _ in columns]
    lines += [f"# HELP {DRIFTED_METRIC} 1 when Evidently finds the column drifted.",
              f"# TYPE {DRIFTED_METRIC} gauge"]
    lines += [f'{DRIFTED_METRIC}{{{base},column="{_label(c)}"}} {int(d)}' for c, _, _, d in columns]
    return "\n".join(lines) + "\n"


def serve(port: int, body: bytes) -> None:
    """Serve the gauges on /metrics until the process is stopped."""

    class Metrics(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's API)
            if self.path.split("?")[0] != "/metrics":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes are not news
            pass

    http.server.ThreadingHTTPServer(("", port), Metrics).serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A served model's input drift, per column (Evidently).")
    parser.add_argument("--reference", required=True, help="reference dataset: a .csv or .parquet file")
    parser.add_argument("--window", required=True, help="logged window of the model's inputs (same columns)")
    parser.add_argument("--model", required=True, help="the model's name (label model)")
    parser.add_argument("--team", required=True, help="the model's team (label team)")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                        help=f"rows each file may have at most (default: {DEFAULT_MAX_ROWS})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"bytes each file may have at most (default: {DEFAULT_MAX_BYTES})")
    parser.add_argument("--out", help="write the gauges to this file (e.g. for a textfile collector)")
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve the gauges on :PORT/metrics until stopped")
    args = parser.parse_args(argv)
    if args.max_rows < 1 or args.max_bytes < 1:
        parser.error("--max-rows and --max-bytes must be positive")
    if not args.out and args.serve is None:
        parser.error("give --out FILE, --serve PORT or both")
    started = time.monotonic()
    try:
        reference = read_table(args.reference, args.max_rows, args.max_bytes)
        window = read_table(args.window, args.max_rows, args.max_bytes)
        share, columns = compare(reference, window)
    except InputError as error:
        print(f"drift: {error}", file=sys.stderr)
        return 2
    body = exposition(args.model, args.team, share, columns)
    drifted = [c for c, _, _, d in columns if d]
    print(f"drift: {args.team}/{args.model}: score {share:.3f} ({len(drifted)} of {len(columns)} columns drifted"
          f"{': ' + ', '.join(drifted) if drifted else ''}; {len(reference)} reference and {len(window)} window "
          f"rows in {time.monotonic() - started:.1f}s)", file=sys.stderr)
    if args.out:
        # Whole or nothing: a collector reading the file never sees half of it.
        with open(args.out + ".tmp", "w", encoding="utf-8") as file:
            file.write(body)
        os.replace(args.out + ".tmp", args.out)
    if args.serve is not None:
        serve(args.serve, body.encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
