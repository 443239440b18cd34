#!/usr/bin/env python3
"""Run Airbyte's own Python source-salesforce against the local Salesforce emulator.

Usage (inside the venv made by setup.sh):

    SALESFORCE_EMULATOR_URL=http://127.0.0.1:8111 \
        .venv-reference/bin/python tools/reference-source/launch.py check --config config.json

Every argument is passed unchanged to the installed connector's own console entry point
(`source-salesforce` from the `airbyte-source-salesforce` distribution), so `spec`, `check`,
`discover` and `read --config --catalog [--state]` behave exactly as in production.

The connector hard-codes its OAuth token host (https://login.salesforce.com, or
https://test.salesforce.com when is_sandbox is set). Before the connector starts, this launcher
patches `requests.adapters.HTTPAdapter.send` (the transport every `requests` session uses, including
the connector's login session and the CDK's per-stream sessions) so that a request to one of those
hosts, or to any `*.my.salesforce.com` / `*.salesforce.com` host, is sent to the emulator instead,
keeping its path and query. Everything after login follows the `instance_url` the emulator returns.
The installed package itself is never edited.

Safety: the launcher refuses (raises a ConnectionError) any request to a host that is neither the
emulator's nor a loopback address, so a faithful-looking run can never reach the internet.

Optional environment:
  REFERENCE_TRAFFIC_LOG=/path/file.jsonl  append one JSON line per HTTP exchange (method, url,
      request headers with Authorization redacted, request body, status, response headers, a
      prefix of the response body). Used to write precise mismatch reports.
  REFERENCE_TRAFFIC_BODY_LIMIT=N  how many bytes of each response body the log keeps (default 4096).
  REFERENCE_WORKDIR=/some/dir  chdir there first: the connector's Bulk path spools CSV results to
      temp files in its working directory. Pass absolute --config/--catalog/--state paths then.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import threading
import time
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

EMULATOR_ENV = "SALESFORCE_EMULATOR_URL"
TRAFFIC_LOG_ENV = "REFERENCE_TRAFFIC_LOG"
BODY_LIMIT_ENV = "REFERENCE_TRAFFIC_BODY_LIMIT"
WORKDIR_ENV = "REFERENCE_WORKDIR"
BODY_PREFIX = 4096
DISTRIBUTION = "airbyte-source-salesforce"
ENTRY_POINT = "source-salesforce"


def _fail(message: str) -> NoReturn:
    # stderr only: stdout belongs to the Airbyte protocol.
    print(f"launch.py: {message}", file=sys.stderr)
    sys.exit(2)


def _is_salesforce_login_host(host: str) -> bool:
    """login.salesforce.com, test.salesforce.com, any My Domain (*.my.salesforce.com) or other
    *.salesforce.com host: all of them are the emulator here."""
    host = host.lower().rstrip(".")
    return host == "salesforce.com" or host.endswith(".salesforce.com")


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _redact_headers(headers) -> dict:
    out = {}
    for k, v in dict(headers or {}).items():
        if k.lower() == "authorization":
            v = v.split(" ", 1)[0] + " <redacted>" if isinstance(v, str) and " " in v else "<redacted>"
        out[k] = v
    return out


def _redact_form(body: str) -> str:
    # The token request carries client_secret and refresh_token; keep the keys, hide the values.
    parts = []
    for pair in body.split("&"):
        key, sep, value = pair.partition("=")
        if key in ("client_secret", "refresh_token", "client_assertion", "password"):
            value = "<redacted>"
        parts.append(f"{key}{sep}{value}")
    return "&".join(parts)


class _TrafficLog:
    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, entry: dict) -> None:
        line = json.dumps(entry, default=str)
        with self._lock, open(self._path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def install_redirect(emulator_url: str, traffic_log_path: str | None, body_limit: int = BODY_PREFIX) -> None:
    """Patch the requests transport so Salesforce login hosts go to `emulator_url`."""
    import requests
    from requests.adapters import HTTPAdapter

    target = urlsplit(emulator_url)
    if target.scheme not in ("http", "https") or not target.hostname:
        _fail(f"{EMULATOR_ENV}={emulator_url!r} is not an http(s) base URL")
    if not _is_loopback(target.hostname):
        _fail(f"{EMULATOR_ENV} must point at a loopback address, got {target.hostname!r}")
    log = _TrafficLog(traffic_log_path) if traffic_log_path else None
    original_send = HTTPAdapter.send

    def send(self, request, *args, **kwargs):
        parts = urlsplit(request.url)
        host = parts.hostname or ""
        original_url = request.url
        if _is_salesforce_login_host(host):
            request.url = urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))
            # Keep the Host header consistent with where the request really goes.
            request.headers.pop("Host", None)
        elif not _is_loopback(host):
            raise requests.exceptions.ConnectionError(
                f"launch.py refused a request to non-loopback host {host!r} ({request.method} {request.url})"
            )
        started = time.monotonic()
        sent_url = request.url
        try:
            response = original_send(self, request, *args, **kwargs)
        except Exception as exc:
            if log:
                log.write(
                    {
                        "method": request.method,
                        "url": sent_url,
                        "original_url": original_url,
                        "request_headers": _redact_headers(request.headers),
                        "error": repr(exc),
                    }
                )
            raise
        finally:
            # The connector inspects the request URL of responses (its error handler recognises the
            # token endpoint by "salesforce.com/services/oauth2/token"), so it must see the URL it
            # asked for, as in production; only the transport went elsewhere.
            request.url = original_url
        if sent_url != original_url:
            response.url = original_url
        if log:
            body = request.body
            if isinstance(body, bytes):
                body = body.decode("utf-8", "replace")
            if isinstance(body, str) and "grant_type=" in body:
                body = _redact_form(body)
            try:
                # Reading .content caches the (decoded) body, so the connector's later
                # iter_content() still sees every byte.
                text = response.content[:body_limit].decode("utf-8", "replace")
            except Exception as exc:  # diagnostics only: never break the connector
                text = f"<unreadable: {exc!r}>"
            log.write(
                {
                    "method": request.method,
                    "url": sent_url,
                    "original_url": original_url if original_url != sent_url else None,
                    "request_headers": _redact_headers(request.headers),
                    "request_body": body[:body_limit] if isinstance(body, str) else body,
                    "status": response.status_code,
                    "response_headers": dict(response.headers),
                    "response_body": text,
                    "elapsed_ms": round((time.monotonic() - started) * 1000),
                }
            )
        return response

    HTTPAdapter.send = send


def _entry_point():
    from importlib.metadata import distribution

    for ep in distribution(DISTRIBUTION).entry_points:
        if ep.group == "console_scripts" and ep.name == ENTRY_POINT:
            return ep.load()
    _fail(f"{DISTRIBUTION} has no console script {ENTRY_POINT!r}; is the venv from setup.sh?")


def main() -> None:
    emulator_url = os.environ.get(EMULATOR_ENV, "").strip()
    if not emulator_url:
        _fail(f"set {EMULATOR_ENV} to the emulator base URL, e.g. http://127.0.0.1:8111")
    try:
        body_limit = int(os.environ.get(BODY_LIMIT_ENV) or BODY_PREFIX)
    except ValueError:
        _fail(f"{BODY_LIMIT_ENV} must be a whole number of bytes")
    workdir = os.environ.get(WORKDIR_ENV)
    if workdir:
        os.chdir(workdir)
    install_redirect(emulator_url.rstrip("/"), os.environ.get(TRAFFIC_LOG_ENV) or None, body_limit)
    run = _entry_point()
    sys.argv = [ENTRY_POINT, *sys.argv[1:]]
    run()


if __name__ == "__main__":
    main()
