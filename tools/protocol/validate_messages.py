#!/usr/bin/env python3
"""Check connector output against the Airbyte protocol, one message per line.

The JSON Schema is generated from the pinned pydantic-v1 models of PyPI
``airbyte-protocol-models`` (``AirbyteMessage.schema(by_alias=True)``), which are
generated from the protocol's canonical YAML. On top of the schema, each line must
be a JSON object whose payload key matches its ``type`` (the schema alone leaves
every payload optional).

Usage:
    validate_messages.py PATH [PATH ...]   # .jsonl files, or directories of them
    validate_messages.py -                 # read one stream from stdin

Prints one line per problem (``file:line: where: what``), then the closing line
``N passed, M failed`` counting lines. Exit status: 0 when every line is valid,
1 when any line is invalid, 2 on usage errors (no input files, missing path).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterable, Iterator

import jsonschema
from airbyte_protocol.models import AirbyteMessage

#: Envelope type -> the key that must carry its payload (note the camelCase one).
PAYLOAD_KEY = {
    "RECORD": "record",
    "STATE": "state",
    "LOG": "log",
    "SPEC": "spec",
    "CONNECTION_STATUS": "connectionStatus",
    "CATALOG": "catalog",
    "TRACE": "trace",
    "CONTROL": "control",
    "DESTINATION_CATALOG": "destination_catalog",
}

#: How much of an offending line to echo back.
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class Problem:
    """One reason a line is not a valid Airbyte message."""

    source: str
    line: int
    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.where or '<message>'}: {self.what}"


def build_validator() -> jsonschema.Draft7Validator:
    """Draft-7 validator for one AirbyteMessage, from the pinned protocol models."""
    # by_alias: the wire name "global" rather than the Python field name "global_".
    schema = AirbyteMessage.schema(by_alias=True)
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def check_message(validator: jsonschema.Draft7Validator, msg: object) -> list[tuple[str, str]]:
    """Every problem with one decoded message, as (json path, description) pairs."""
    problems = [
        ("/".join(str(p) for p in err.absolute_path), err.message)
        for err in sorted(validator.iter_errors(msg), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if isinstance(msg, dict):
        kind = msg.get("type")
        key = PAYLOAD_KEY.get(kind) if isinstance(kind, str) else None
        if key is not None and msg.get(key) is None:
            problems.append(("", f"type {kind} needs a '{key}' payload"))
    return problems


def check_lines(
    validator: jsonschema.Draft7Validator, source: str, lines: Iterable[str]
) -> tuple[int, list[Problem]]:
    """Validates an iterable of lines; returns (valid line count, problems)."""
    passed = 0
    problems: list[Problem] = []
    for n, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            problems.append(Problem(source, n, "", "blank line (every stdout line must be a message)"))
            continue
        try:
            msg = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(Problem(source, n, "", f"not JSON ({e}): {line[:PREVIEW_CHARS]!r}"))
            continue
        found = check_message(validator, msg)
        if found:
            problems.extend(Problem(source, n, where, what) for where, what in found)
        else:
            passed += 1
    return passed, problems


def expand(paths: Iterable[str]) -> Iterator[Path]:
    """Files named directly, plus every ``*.jsonl`` under named directories (sorted)."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(q for q in path.rglob("*.jsonl") if q.is_file())
        elif path.is_file():
            yield path
        else:
            raise FileNotFoundError(f"no such file or directory: {p}")


def run(paths: list[str], out: IO[str], stdin: IO[str]) -> int:
    """Validates the inputs, reports to ``out``, and returns the exit status."""
    validator = build_validator()
    total_passed = 0
    failed_lines: set[tuple[str, int]] = set()
    all_problems: list[Problem] = []
    inputs = 0
    try:
        sources = [("-", None)] if paths == ["-"] else [(str(f), f) for f in expand(paths)]
    except FileNotFoundError as e:
        print(f"error: {e}", file=out)
        return 2
    for name, path in sources:
        inputs += 1
        if path is None:
            passed, problems = check_lines(validator, "<stdin>", stdin)
        else:
            with path.open(encoding="utf-8", errors="replace") as f:
                passed, problems = check_lines(validator, name, f)
        total_passed += passed
        all_problems.extend(problems)
        failed_lines.update((p.source, p.line) for p in problems)
    if inputs == 0:
        print("error: no .jsonl files found in " + ", ".join(paths), file=out)
        return 2
    for problem in all_problems:
        print(problem, file=out)
    print(f"{total_passed} passed, {len(failed_lines)} failed", file=out)
    return 1 if failed_lines else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help=".jsonl files or directories of them; '-' for stdin")
    args = parser.parse_args(argv)
    return run(args.paths, sys.stdout, sys.stdin)


if __name__ == "__main__":
    sys.exit(main())
