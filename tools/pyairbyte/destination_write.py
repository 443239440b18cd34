#!/usr/bin/env python3
"""Writes records into our destination-salesforce binary through PyAirbyte.

    .venv-pyairbyte/bin/python tools/pyairbyte/destination_write.py \\
        --emulator-url http://127.0.0.1:PORT --destination target/debug/destination-salesforce \\
        --records records.json --via stream|cache --work-dir /tmp/pyairbyte-dst [--output out.json]

With `--check-only` it only runs the destination's `check()`. Otherwise the records come from a
small PyAirbyte source, fixture_source.py (beside this file), whose config is the `--records`
file ({"streams": [{"name", "primary_key", "records"}]}). Two ways PyAirbyte feeds a
destination, both used by data engineers:

- `--via stream`: `dst.write(source, cache=False)`: the source's stdout is piped straight into the
  destination (every message type, with PyAirbyte's null-filled envelopes);
- `--via cache`: `source.read(cache)` into a local DuckDB cache, then `dst.write(read_result)`:
  records come back out of the cache (lower-cased keys, `_airbyte_*` columns, decimals as text).

With the default write strategy (auto) a stream with a primary key is sent as `append_dedup`
(our destination: upsert on that key); `--write-strategy append` sends `append` (insert).

Prints (or writes to `--output`) one JSON object:

    {"check": {"source": "succeeded", "destination": "succeeded"},
     "catalog": [{"stream", "destination_sync_mode", "primary_key"}],  # what the destination got
     "records_delivered": {"Account": n},   # RECORD messages PyAirbyte sent to the destination
     "records_confirmed": {"Account": n},   # sum of destinationStats.recordCount in echoed states
     "states": [<STATE messages the destination echoed>]}

On failure it prints {"error": {...}} and exits 1 (see source_read.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# Sets the offline environment; must come before PyAirbyte is imported.
from driver import CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN, drive

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--emulator-url", required=True, help="base URL of the Salesforce emulator (login_url)")
    p.add_argument("--destination", required=True, type=Path, help="path of the destination-salesforce binary")
    p.add_argument("--records", type=Path, help="fixture source config (streams and records)")
    p.add_argument("--check-only", action="store_true", help="only run the destination's check")
    p.add_argument("--via", choices=["stream", "cache"], default="stream")
    p.add_argument("--work-dir", type=Path, help="directory for the caches (required unless --check-only)")
    p.add_argument("--write-strategy", default="auto", choices=["auto", "append", "merge", "replace"])
    p.add_argument(
        "--config-extra",
        default="{}",
        help="JSON object merged into the destination config",
    )
    p.add_argument("--output", type=Path, help="write the JSON result here instead of stdout")
    return p.parse_args(argv)


def destination_config(args: argparse.Namespace) -> dict:
    config = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "login_url": args.emulator_url,
    }
    config.update(json.loads(args.config_extra))
    return config


def run(args: argparse.Namespace) -> dict:
    import airbyte as ab
    from airbyte.strategies import WriteStrategy

    if args.check_only:
        ab.get_destination(
            "destination-salesforce",
            config=destination_config(args),
            local_executable=args.destination.resolve(),
        ).check()
        return {"check": {"destination": "succeeded"}}
    if not args.records or not args.work_dir:
        raise SystemExit("--records and --work-dir are required unless --check-only")
    fixture = json.loads(args.records.read_text())
    source = ab.get_source(
        "source-pyairbyte-fixture",
        config=fixture,
        local_executable=HERE / "fixture_source.py",
        streams="*",
    )
    source.check()
    destination = ab.get_destination(
        "destination-salesforce",
        config=destination_config(args),
        local_executable=args.destination.resolve(),
    )
    destination.check()
    result: dict = {"check": {"source": "succeeded", "destination": "succeeded"}}

    args.work_dir.mkdir(parents=True, exist_ok=True)
    strategy = WriteStrategy(args.write_strategy)
    # The destination's echoed states are kept in this cache so they can be reported.
    state_cache = ab.new_local_cache("destination_state", cache_dir=args.work_dir / "state")
    if args.via == "stream":
        written = destination.write(source, cache=False, state_cache=state_cache, write_strategy=strategy)
    else:
        cache = ab.new_local_cache("fixture", cache_dir=args.work_dir / "cache")
        read_result = source.read(cache=cache)
        written = destination.write(read_result, state_cache=state_cache, write_strategy=strategy)

    provider = written._catalog_provider.with_write_strategy(strategy)  # noqa: SLF001
    result["catalog"] = [
        {
            "stream": s.stream.name,
            "destination_sync_mode": s.destination_sync_mode.value,
            "primary_key": s.primary_key,
        }
        for s in provider.configured_catalog.streams
    ]
    tracker = written._progress_tracker  # noqa: SLF001 - pinned PyAirbyte version
    result["records_delivered"] = {k: int(v) for k, v in tracker.destination_stream_records_delivered.items()}
    result["records_confirmed"] = {k: int(v) for k, v in tracker.destination_stream_records_confirmed.items()}
    result["states"] = [
        m.model_dump(mode="json", exclude_none=True)
        for m in state_cache.get_state_provider(
            source_name=source.name, destination_name=destination.name
        ).state_message_artifacts
    ]
    return result


if __name__ == "__main__":
    sys.exit(drive(sys.argv[1:], parse_args, run))
