"""What both PyAirbyte drivers share: offline settings, the emulator's credentials, error reports
and the one-JSON-object output. Import it before PyAirbyte (it sets the environment PyAirbyte reads
at import time)."""

from __future__ import annotations

import argparse
import json
import os
import traceback
from collections.abc import Callable
from pathlib import Path

# Must be set before PyAirbyte is imported: no registry look-ups (local executables only) and no
# usage telemetry.
os.environ["AIRBYTE_OFFLINE_MODE"] = "1"
os.environ["DO_NOT_TRACK"] = "1"

# Emulator defaults (crates/salesforce-emulator Config::default()).
CLIENT_ID = "emulator-client-id"
CLIENT_SECRET = "emulator-client-secret"
REFRESH_TOKEN = "emulator-refresh-token"


def describe_error(e: BaseException, log_lines: int = 40) -> str:
    """PyAirbyte's error text, its causes, and the end of each connector log file it names (the
    connector's own error message is often only there)."""
    parts = []
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        parts.append("".join(traceback.format_exception_only(type(e), e)))
        log_file = getattr(e, "log_file", None)
        if log_file:
            try:
                lines = Path(log_file).read_text(errors="replace").splitlines()[-log_lines:]
                parts.append(f"--- last {len(lines)} lines of {log_file} ---\n" + "\n".join(lines))
            except OSError as read_error:
                parts.append(f"(cannot read {log_file}: {read_error})")
        e = getattr(e, "original_exception", None) or e.__cause__
    return "\n".join(parts)


def emit(args: argparse.Namespace, value: dict) -> None:
    """Writes `value` as one JSON line to `args.output`, or to stdout when it is not set."""
    text = json.dumps(value, default=str)
    if args.output:
        args.output.write_text(text + "\n")
    else:
        print(text, flush=True)


def drive(
    argv: list[str],
    parse_args: Callable[[list[str]], argparse.Namespace],
    run: Callable[[argparse.Namespace], dict],
) -> int:
    """Parses `argv`, runs, and emits the result; on any exception emits {"error": {...}} with what
    PyAirbyte said and returns 1."""
    args = parse_args(argv)
    try:
        emit(args, run(args))
        return 0
    except Exception as e:  # noqa: BLE001 - report whatever PyAirbyte raised, then fail
        emit(
            args,
            {
                "error": {
                    "type": type(e).__name__,
                    "message": str(e),
                    "details": describe_error(e),
                    "traceback": traceback.format_exc(),
                }
            },
        )
        traceback.print_exc()
        return 1
