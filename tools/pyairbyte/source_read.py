#!/usr/bin/env python3
"""Reads our source-salesforce binary through PyAirbyte, the way a data engineer's script does.

    .venv-pyairbyte/bin/python tools/pyairbyte/source_read.py \\
        --emulator-url http://127.0.0.1:PORT --source target/debug/source-salesforce \\
        --streams Account,Contact --cache-dir /tmp/pyairbyte-cache [--reads 2] [--output out.json]

With `--check-only` it only runs `check()`. Otherwise: `ab.get_source(..., local_executable=...)`,
`check()`, then `--reads` times `read()` into a
local DuckDB cache kept in `--cache-dir`. PyAirbyte keeps the stream states in that cache and
passes them to the source (`--state`) on the next read, so a second read - in this process or in
a later run with the same `--cache-dir` - is incremental.

Prints (or writes to `--output`) one JSON object:

    {"check": "succeeded", "available_streams": [...], "reads": [
        {"records_read": {"Account": 500, ...},      # RECORD messages PyAirbyte counted per stream
         "cache_rows": {"Account": 500, ...},        # rows in the cache table after the read
         "new_rows": {"Account": {"count": n, "distinct_ids": n, "rows": [{"id", "name", ...}]}},
                                                     # rows this read wrote (new _airbyte_raw_id)
         "state": [<STATE messages PyAirbyte stored>]}]}

On failure it prints {"error": {"type", "message", "details"}} and exits 1; "details" holds what
PyAirbyte said (its exception text includes the connector's last log lines and its log file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Sets the offline environment; must come before PyAirbyte is imported.
from driver import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, drive

# Columns reported for each new row, when the stream has them (the cache lower-cases names).
ROW_COLUMNS = ("id", "name", "lastname", "systemmodstamp", "lastmodifieddate", "isdeleted")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emulator-url", required=True, help="base URL of the Salesforce emulator (login_url)")
    p.add_argument("--source", required=True, type=Path, help="path of the source-salesforce binary")
    p.add_argument("--streams", help="comma-separated stream names (required unless --check-only)")
    p.add_argument("--cache-dir", type=Path, help="directory of the DuckDB cache (required unless --check-only)")
    p.add_argument("--check-only", action="store_true", help="only run check (no discover, no read)")
    p.add_argument("--reads", type=int, default=1, help="reads to run back to back (default 1)")
    p.add_argument(
        "--config-extra",
        default="{}",
        help="JSON object merged into the source config (e.g. start_date, lookback_window)",
    )
    p.add_argument("--max-rows", type=int, default=1000, help="cap on rows listed per stream and read")
    p.add_argument("--output", type=Path, help="write the JSON result here instead of stdout")
    return p.parse_args(argv)


def source_config(args: argparse.Namespace) -> dict:
    config = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "login_url": args.emulator_url,
    }
    config.update(json.loads(args.config_extra))
    return config


def cell(value):
    """A JSON-friendly cell: timestamps as ISO-8601 text, NaN/NaT as null."""
    try:
        import pandas as pd

        if value is None or (not isinstance(value, (list, dict)) and pd.isna(value)):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def table_frame(cache, stream: str):
    """The cache table of `stream` as a DataFrame, or None before the first read created it."""
    if stream not in cache.streams:
        return None
    try:
        return cache.streams[stream].to_pandas()
    except Exception:  # noqa: BLE001 - a missing table is "no rows yet"
        return None


def raw_ids(frame) -> set:
    if frame is None or "_airbyte_raw_id" not in frame.columns:
        return set()
    return set(frame["_airbyte_raw_id"].tolist())


def one_read(source, cache, streams: list[str], max_rows: int) -> dict:
    before = {s: raw_ids(table_frame(cache, s)) for s in streams}
    result = source.read(cache=cache)
    # Per-stream RECORD counts as PyAirbyte tallied them while reading (ReadResult only exposes the
    # total; the tracker is what PyAirbyte prints in its own summary).
    tracker = result._progress_tracker  # noqa: SLF001 - pinned PyAirbyte version
    out = {"records_read": {}, "cache_rows": {}, "new_rows": {}, "state": []}
    for s in streams:
        out["records_read"][s] = int(tracker.stream_read_counts.get(s, 0))
        frame = table_frame(cache, s)
        if frame is None:
            out["cache_rows"][s] = 0
            out["new_rows"][s] = {"count": 0, "distinct_ids": 0, "rows": []}
            continue
        out["cache_rows"][s] = int(len(frame))
        new = frame[~frame["_airbyte_raw_id"].isin(before[s])]
        columns = [c for c in ROW_COLUMNS if c in new.columns]
        if "id" in new.columns:
            new = new.sort_values("id")
        rows = [
            {c: cell(v) for c, v in zip(columns, values)}
            for values in new[columns].head(max_rows).itertuples(index=False, name=None)
        ]
        out["new_rows"][s] = {
            "count": int(len(new)),
            "distinct_ids": int(new["id"].nunique()) if "id" in new.columns else None,
            "rows": rows,
        }
    provider = cache.get_state_provider(source_name=source.name)
    out["state"] = [m.model_dump(mode="json", exclude_none=True) for m in provider.state_message_artifacts]
    return out


def run(args: argparse.Namespace) -> dict:
    import airbyte as ab

    if args.check_only:
        ab.get_source(
            "source-salesforce", config=source_config(args), local_executable=args.source.resolve()
        ).check()
        return {"check": "succeeded"}
    if not args.streams or not args.cache_dir:
        raise SystemExit("--streams and --cache-dir are required unless --check-only")
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    source = ab.get_source(
        "source-salesforce",
        config=source_config(args),
        local_executable=args.source.resolve(),
        streams=streams,
    )
    source.check()
    result = {"check": "succeeded", "available_streams": sorted(source.get_available_streams())}
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    cache = ab.new_local_cache("salesforce", cache_dir=args.cache_dir)
    result["reads"] = [one_read(source, cache, streams, args.max_rows) for _ in range(args.reads)]
    return result


if __name__ == "__main__":
    sys.exit(drive(sys.argv[1:], parse_args, run))
