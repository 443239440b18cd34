#!/usr/bin/env python3
"""A tiny Airbyte source that emits the records written in its config (Python stdlib only).

It feeds destination_write.py: PyAirbyte runs it as a `local_executable` source and pipes what it
reads into our destination, as it would with any other source. Config:

    {"streams": [{"name": "Account", "primary_key": [["External_Id__c"]],
                  "records": [{"External_Id__c": "X-1", "Name": "Acme", ...}, ...]}]}

Commands: spec, check, discover (JSON schema inferred from the records' values), read (for each
configured stream: STARTED, RUNNING, the records, one STREAM state with sourceStats, COMPLETE).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

SPEC = {
    "documentationUrl": "https://example.invalid/pyairbyte-fixture-source",
    "connectionSpecification": {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "PyAirbyte fixture source",
        "type": "object",
        "required": ["streams"],
        "additionalProperties": True,
        "properties": {
            "streams": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "records"],
                    "properties": {
                        "name": {"type": "string"},
                        "primary_key": {"type": "array"},
                        "records": {"type": "array", "items": {"type": "object"}},
                    },
                },
            }
        },
    },
}


def now_ms() -> int:
    return int(time.time() * 1000)


def out(message: dict) -> None:
    sys.stdout.write(json.dumps(message, separators=(",", ":")) + "\n")


def json_type(value) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return "string"


def stream_schema(records: list[dict]) -> dict:
    props: dict[str, dict] = {}
    for record in records:
        for key, value in record.items():
            if value is None:
                props.setdefault(key, {"type": ["null", "string"]})
                continue
            t = json_type(value)
            known = props.get(key)
            if known is None or known["type"] == ["null", "string"]:
                props[key] = {"type": ["null", t]}
            elif known["type"][1] == "integer" and t == "number":
                props[key] = {"type": ["null", "number"]}
    return {"type": "object", "additionalProperties": True, "properties": props}


def catalog(config: dict) -> dict:
    streams = []
    for s in config["streams"]:
        stream = {
            "name": s["name"],
            "json_schema": stream_schema(s["records"]),
            "supported_sync_modes": ["full_refresh"],
        }
        if s.get("primary_key"):
            stream["source_defined_primary_key"] = s["primary_key"]
        streams.append(stream)
    return {"streams": streams}


def status(name: str, value: str) -> None:
    out(
        {
            "type": "TRACE",
            "trace": {
                "type": "STREAM_STATUS",
                "emitted_at": now_ms(),
                "stream_status": {"stream_descriptor": {"name": name}, "status": value},
            },
        }
    )


def read(config: dict, configured: dict) -> None:
    by_name = {s["name"]: s for s in config["streams"]}
    for configured_stream in configured["streams"]:
        name = configured_stream["stream"]["name"]
        records = by_name.get(name, {}).get("records", [])
        status(name, "STARTED")
        status(name, "RUNNING")
        for data in records:
            out({"type": "RECORD", "record": {"stream": name, "data": data, "emitted_at": now_ms()}})
        out(
            {
                "type": "STATE",
                "state": {
                    "type": "STREAM",
                    "stream": {
                        "stream_descriptor": {"name": name},
                        "stream_state": {"records_emitted": len(records)},
                    },
                    "sourceStats": {"recordCount": float(len(records))},
                },
            }
        )
        status(name, "COMPLETE")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["spec", "check", "discover", "read"])
    p.add_argument("--config")
    p.add_argument("--catalog")
    p.add_argument("--state")
    args = p.parse_args(argv)
    if args.command == "spec":
        out({"type": "SPEC", "spec": SPEC})
        return 0
    with open(args.config) as f:
        config = json.load(f)
    if args.command == "check":
        ok = isinstance(config.get("streams"), list)
        out(
            {
                "type": "CONNECTION_STATUS",
                "connectionStatus": {"status": "SUCCEEDED" if ok else "FAILED"},
            }
        )
    elif args.command == "discover":
        out({"type": "CATALOG", "catalog": catalog(config)})
    else:
        with open(args.catalog) as f:
            read(config, json.load(f))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
