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

The window is a file (`--window`) or the model's logged requests (`--window-store s3://<bucket>/<prefix>`, what
the request logger writes: modules/serving/requestlog): the records of the last `--window-hours`, newest first,
at most `--max-rows` rows and `--max-bytes` read. Each record's request becomes rows of the reference's columns:

    {"inputs": [{"name": <column>, "shape": [n], "data": [...]}, ...]}   KServe v2 / Triton, one input per column
    {"inputs": [{"shape": [n, k], "data": [...]}]}                      one input of k = the reference's columns,
                                                                        in the reference's order
    {<column>: value, ...} or {<column>: [values], ...}                 a JSON object (one row, or column lists)
    [{<column>: value, ...}, ...]                                       a list of such objects (one row each)

A record in none of these forms (or without a body: binary or longer than the logger's bound) is skipped and
counted. The store's endpoint and keys come from the AWS SDKs' environment (the team's object-store-credentials:
AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, AWS_CA_BUNDLE), read with
pyarrow's S3 filesystem.

Bad input (a missing or oversized file, too many rows, no common columns, no usable record in the window) ends
the run with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import json
import math
import os
import sys
import time
import urllib.parse

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


def _flat(data) -> list:
    """A tensor's data as one flat list (KServe v2 allows nested rows or a flat list)."""
    if not isinstance(data, list):
        return [data]
    out: list = []
    for item in data:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out


def request_rows(request, columns: list[str]) -> list[dict] | None:
    """Rows of `columns` in one logged request body, or None when it has none (the forms: module docstring)."""
    if isinstance(request, dict) and isinstance(request.get("inputs"), list):
        inputs = [i for i in request["inputs"] if isinstance(i, dict) and isinstance(i.get("shape"), list)]
        named = {i.get("name"): i for i in inputs}
        if all(c in named for c in columns):
            values = [_flat(named[c].get("data")) for c in columns]
            n = len(values[0])
            if all(len(v) == n == math.prod(named[c]["shape"] or [1]) for v, c in zip(values, columns)):
                return [dict(zip(columns, row)) for row in zip(*values)]
            return None
        if len(inputs) == 1 and len(inputs[0]["shape"]) == 2 and inputs[0]["shape"][1] == len(columns):
            flat, width = _flat(inputs[0].get("data")), len(columns)
            if len(flat) != inputs[0]["shape"][0] * width:
                return None
            return [dict(zip(columns, flat[i:i + width])) for i in range(0, len(flat), width)]
        return None
    if isinstance(request, dict) and all(c in request for c in columns):
        values = [request[c] for c in columns]
        if all(isinstance(v, list) for v in values):
            if len({len(v) for v in values}) != 1:
                return None
            return [dict(zip(columns, row)) for row in zip(*values)]
        if any(isinstance(v, (list, dict)) for v in values):
            return None
        return [dict(zip(columns, values))]
    if isinstance(request, list) and request and all(isinstance(r, dict) for r in request):
        rows = [request_rows(r, columns) for r in request]
        if any(r is None or len(r) != 1 for r in rows):
            return None
        return [r[0] for r in rows]  # type: ignore[index]
    return None


def store_filesystem(env):
    """pyarrow's S3 filesystem on the endpoint and keys of the AWS SDKs' environment."""
    from pyarrow import fs

    missing = [k for k in ("AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if not env.get(k)]
    if missing:
        raise InputError(f"the environment lacks {', '.join(missing)} (the team's object-store-credentials)")
    endpoint = urllib.parse.urlsplit(env["AWS_ENDPOINT_URL_S3"])
    return fs.S3FileSystem(access_key=env["AWS_ACCESS_KEY_ID"], secret_key=env["AWS_SECRET_ACCESS_KEY"],
                           region=env.get("AWS_DEFAULT_REGION") or "us-east-1", scheme=endpoint.scheme,
                           endpoint_override=endpoint.netloc, tls_ca_file_path=env.get("AWS_CA_BUNDLE"),
                           retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=2))


def read_logged(url: str, hours: int, columns: list[str], max_rows: int, max_bytes: int, env=None,
                now: datetime.datetime | None = None):
    """The last `hours` of logged requests under s3://<bucket>/<prefix> as a table of `columns`: newest batches
    first, at most `max_rows` rows and `max_bytes` read. Returns (table, records used, records skipped)."""
    import pandas as pd
    from pyarrow import fs

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not bucket or not prefix:
        raise InputError(f"{url}: not s3://<bucket>/<prefix>")
    s3 = store_filesystem(os.environ if env is None else env)
    now = now or datetime.datetime.now(datetime.UTC)
    since = now - datetime.timedelta(hours=hours)
    rows: list[dict] = []
    used = skipped = read = 0
    try:
        # The logger's keys: <prefix>/<YYYY-MM-DD>/<HH>/...: one listing per hour of the window, newest first.
        for back in range(hours + 1):
            hour = now - datetime.timedelta(hours=back)
            found = s3.get_file_info(fs.FileSelector(f"{bucket}/{prefix.strip('/')}/{hour:%Y-%m-%d}/{hour:%H}",
                                                     allow_not_found=True))
            batches = sorted((f for f in found if f.type == fs.FileType.File and f.path.endswith(".jsonl")),
                             key=lambda f: (f.mtime or now, f.path), reverse=True)
            for batch in batches:
                if read + (batch.size or 0) > max_bytes or len(rows) >= max_rows:
                    break
                with s3.open_input_stream(batch.path) as stream:
                    text = stream.read()
                read += len(text)
                for line in reversed(text.splitlines()):
                    if len(rows) >= max_rows:
                        break
                    try:
                        record = json.loads(line)
                        at = datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
                    except (ValueError, KeyError, TypeError, AttributeError):
                        skipped += 1
                        continue
                    if at < since:
                        continue
                    found_rows = request_rows(record.get("request"), columns)
                    if not found_rows:
                        skipped += 1
                        continue
                    used += 1
                    rows.extend(found_rows[:max_rows - len(rows)])
            if read >= max_bytes or len(rows) >= max_rows:
                break
    except OSError as error:
        raise InputError(f"{url}: cannot be read: {error}") from None
    if not rows:
        raise InputError(f"{url}: no logged request of the last {hours} hours carries the reference's columns "
                         f"({used + skipped} records; {skipped} in no known form)")
    return pd.DataFrame(rows, columns=columns), used, skipped


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
    window = parser.add_mutually_exclusive_group(required=True)
    window.add_argument("--window", help="logged window of the model's inputs (same columns): a file")
    window.add_argument("--window-store", metavar="S3_URL",
                        help="the model's logged requests: s3://<bucket>/<prefix> (the request logger's)")
    parser.add_argument("--window-hours", type=int, default=24,
                        help="with --window-store: the records of the last hours (default: 24)")
    parser.add_argument("--model", required=True, help="the model's name (label model)")
    parser.add_argument("--team", required=True, help="the model's team (label team)")
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS,
                        help=f"rows each file may have at most (default: {DEFAULT_MAX_ROWS})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"bytes each file may have at most (default: {DEFAULT_MAX_BYTES})")
    parser.add_argument("--out", help="write the gauges to this file (e.g. for a textfile collector)")
    parser.add_argument("--serve", type=int, metavar="PORT", help="serve the gauges on :PORT/metrics until stopped")
    args = parser.parse_args(argv)
    if args.max_rows < 1 or args.max_bytes < 1 or args.window_hours < 1:
        parser.error("--max-rows, --max-bytes and --window-hours must be positive")
    if not args.out and args.serve is None:
        parser.error("give --out FILE, --serve PORT or both")
    started = time.monotonic()
    try:
        reference = read_table(args.reference, args.max_rows, args.max_bytes)
        if args.window_store:
            window, used, skipped = read_logged(args.window_store, args.window_hours,
                                                [str(c) for c in reference.columns], args.max_rows, args.max_bytes)
            print(f"drift: {args.window_store}: {len(window)} rows from {used} logged requests of the last "
                  f"{args.window_hours} hours ({skipped} records skipped)", file=sys.stderr)
        else:
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
