"""Self-test of validate_messages.py: it must reject broken messages and accept valid ones.

Run with the protocol venv: ``.venv-proto/bin/python -m pytest tools/protocol``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import validate_messages as vm

REPO = Path(__file__).resolve().parents[2]
NOW_MS = 1_732_000_000_000


@pytest.fixture(scope="module")
def validator():
    return vm.build_validator()


def problems_of(validator, msg) -> list[tuple[str, str]]:
    return vm.check_message(validator, msg)


def record(**over):
    rec = {"stream": "Account", "data": {"Id": "001000000000001AAA"}, "emitted_at": NOW_MS}
    rec.update(over)
    return {"type": "RECORD", "record": rec}


VALID = [
    record(),
    record(namespace="sales", meta={"changes": [
        {"field": "Body", "change": "NULLED", "reason": "SOURCE_FIELD_SIZE_LIMITATION"}]}),
    {"type": "STATE", "state": {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "Account"},
                   "stream_state": {"SystemModstamp": "2024-01-01T00:00:00.000Z"}},
        "sourceStats": {"recordCount": 3.0},
        "id": 7}},
    {"type": "LOG", "log": {"level": "INFO", "message": "hello"}},
    {"type": "CONNECTION_STATUS", "connectionStatus": {"status": "FAILED", "message": "bad token"}},
    {"type": "CATALOG", "catalog": {"streams": [{
        "name": "Account", "json_schema": {"type": "object", "properties": {}},
        "supported_sync_modes": ["full_refresh", "incremental"],
        "source_defined_cursor": True, "default_cursor_field": ["SystemModstamp"],
        "source_defined_primary_key": [["Id"]], "is_resumable": True}]}},
    {"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": NOW_MS + 0.5,
        "stream_status": {"stream_descriptor": {"name": "Account"}, "status": "INCOMPLETE",
                          "reasons": [{"type": "RATE_LIMITED",
                                       "rate_limited": {"quota_reset": NOW_MS}}]}}},
    {"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": NOW_MS,
        "error": {"message": "Salesforce rejected the refresh token",
                  "internal_message": "invalid_grant", "failure_type": "config_error"}}},
    {"type": "CONTROL", "control": {"type": "CONNECTOR_CONFIG", "emitted_at": NOW_MS,
        "connectorConfig": {"config": {"refresh_token": "x"}}}},
    {"type": "DESTINATION_CATALOG", "destination_catalog": {"operations": [{
        "object_name": "Contact", "sync_mode": "append_dedup",
        "json_schema": {"type": "object"}, "matching_keys": [["Email__c"]]}]}},
]


INVALID = {
    "record emitted_at as string": (record(emitted_at="1732000000000"), "emitted_at"),
    "record emitted_at as float": (record(emitted_at=1.5), "emitted_at"),
    "record namespace null": (record(namespace=None), "namespace"),
    "record data not an object": (record(data=[1, 2]), "data"),
    "record without stream": ({"type": "RECORD", "record": {"data": {}, "emitted_at": NOW_MS}},
                              "stream"),
    "RECORD without payload": ({"type": "RECORD"}, "'record' payload"),
    "state type PER_STREAM": ({"type": "STATE", "state": {
        "type": "PER_STREAM", "stream": {"stream_descriptor": {"name": "Account"}}}}, "PER_STREAM"),
    "trace without emitted_at": ({"type": "TRACE", "trace": {
        "type": "ERROR", "error": {"message": "boom"}}}, "emitted_at"),
    "unknown stream status": ({"type": "TRACE", "trace": {"type": "STREAM_STATUS", "emitted_at": NOW_MS,
        "stream_status": {"stream_descriptor": {"name": "A"}, "status": "DONE"}}}, "DONE"),
    "unknown failure type": ({"type": "TRACE", "trace": {"type": "ERROR", "emitted_at": NOW_MS,
        "error": {"message": "m", "failure_type": "oops"}}}, "oops"),
    "log level lowercase": ({"type": "LOG", "log": {"level": "info", "message": "m"}}, "info"),
    "connection status without payload": ({"type": "CONNECTION_STATUS", "status": "SUCCEEDED"},
                                          "'connectionStatus' payload"),
    "unknown message type": ({"type": "HELLO"}, "HELLO"),
    "no type at all": ({"record": record()["record"]}, "type"),
    "not an object": (["RECORD"], "object"),
}


@pytest.mark.parametrize("msg", VALID, ids=lambda m: m["type"])
def test_accepts_valid_messages(validator, msg):
    assert problems_of(validator, msg) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_rejects_invalid_message(validator, name):
    msg, needle = INVALID[name]
    found = problems_of(validator, msg)
    assert found, f"{name}: accepted but should be rejected"
    text = " ".join(f"{where} {what}" for where, what in found)
    assert needle in text, f"{name}: {needle!r} not in {text!r}"


@pytest.mark.parametrize("spec_file", ["source-salesforce.spec.json",
                                       "destination-salesforce.spec.json"])
def test_our_spec_files_are_valid_spec_messages(validator, spec_file):
    spec = json.loads((REPO / "schemas" / spec_file).read_text())
    assert problems_of(validator, {"type": "SPEC", "spec": spec}) == []


def run_cli(tmp_path: Path, files: dict[str, str], args: list[str] | None = None):
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    out = io.StringIO()
    code = vm.run(args if args is not None else [str(tmp_path)], out, io.StringIO())
    return code, out.getvalue().splitlines()


def line(msg) -> str:
    return json.dumps(msg) + "\n"


def test_directory_of_valid_files_passes(tmp_path):
    code, out = run_cli(tmp_path, {
        "a.jsonl": "".join(line(m) for m in VALID[:4]),
        "sub/b.jsonl": "".join(line(m) for m in VALID[4:]),
        "ignored.txt": "not json\n",
    })
    assert code == 0, out
    assert out == [f"{len(VALID)} passed, 0 failed"]


def test_bad_lines_are_listed_with_file_and_line(tmp_path):
    code, out = run_cli(tmp_path, {
        "run.jsonl": line(VALID[0])
        + line(record(emitted_at="soon", namespace=None))
        + "not json at all\n"
        + "\n"
        + line(VALID[3]),
    })
    assert code == 1
    path = str(tmp_path / "run.jsonl")
    assert f"{path}:2: record/emitted_at: 'soon' is not of type 'integer'" in out
    assert f"{path}:2: record/namespace: None is not of type 'string'" in out
    assert any(o.startswith(f"{path}:3: <message>: not JSON") for o in out), out
    assert any(o.startswith(f"{path}:4: <message>: blank line") for o in out), out
    # Line 2 has two problems but counts as one failed line.
    assert out[-1] == "2 passed, 3 failed"


def test_empty_directory_is_a_usage_error(tmp_path):
    code, out = run_cli(tmp_path, {})
    assert code == 2
    assert "no .jsonl files" in out[0]


def test_missing_path_is_a_usage_error(tmp_path):
    code, out = run_cli(tmp_path, {}, [str(tmp_path / "nope.jsonl")])
    assert code == 2
    assert "no such file" in out[0]


def test_stdin_mode():
    out = io.StringIO()
    code = vm.run(["-"], out, io.StringIO(line(VALID[0]) + line({"type": "TRACE"})))
    assert code == 1
    assert out.getvalue().splitlines()[-1] == "1 passed, 1 failed"
