"""Shared helpers for the benchmark scenarios: emulator processes, HTTP, connector runs, metrics.

Everything runs on loopback. Each scenario starts its own emulator on port 0 and stops it when
done. Connector runs are measured with os.wait4 (user+sys CPU seconds and peak RSS of the child,
including any processes it waited for) and the emulator's `/__emulator/calls` counter (token
requests are not counted there).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
EMULATOR_BIN = RELEASE / "salesforce-emulator"
SOURCE_BIN = RELEASE / "source-salesforce"
DEST_BIN = RELEASE / "destination-salesforce"
REF_VENV = Path(os.environ.get("REFERENCE_VENV", ROOT / ".venv-reference"))
REF_PYTHON = REF_VENV / "bin" / "python"
REF_LAUNCH = ROOT / "tools" / "reference-source" / "launch.py"
API = "v62.0"
CREDS = {
    "client_id": "emulator-client-id",
    "client_secret": "emulator-client-secret",
    "refresh_token": "emulator-refresh-token",
}


class NotRun(Exception):
    """A scenario (or one side of it) cannot run yet; the message says precisely why."""


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Emulator


class Emulator:
    """A `salesforce-emulator` child process on 127.0.0.1:<free port>."""

    def __init__(self, config: dict, workdir: Path):
        if not EMULATOR_BIN.exists():
            raise NotRun(f"{EMULATOR_BIN} not built")
        cfg = workdir / f"emulator-{time.monotonic_ns()}.json"
        cfg.write_text(json.dumps(config))
        self.stderr = open(workdir / "emulator.stderr", "ab")
        self.proc = subprocess.Popen(
            [str(EMULATOR_BIN), "--port", "0", "--config", str(cfg)],
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env={**os.environ, "RUST_LOG": "warn"},
        )
        assert self.proc.stdout is not None
        self.base = self.proc.stdout.readline().decode().strip()
        ready = self.proc.stdout.readline().decode()
        if not self.base.startswith("http://") or "ready" not in ready:
            self.stop()
            raise NotRun(f"emulator did not start (printed {self.base!r} {ready!r})")
        u = urllib.parse.urlsplit(self.base)
        self.host, self.port = u.hostname, u.port
        self._token: str | None = None

    # --- plain HTTP (one connection per request keeps this simple and robust)
    def request(self, method: str, path: str, body=None, headers=None, auth=True):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        h = dict(headers or {})
        if auth:
            h["Authorization"] = f"Bearer {self.token()}"
        data = None
        if body is not None:
            if isinstance(body, (bytes, str)):
                data = body if isinstance(body, bytes) else body.encode()
            else:
                data = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        return conn, resp

    def json(self, method: str, path: str, body=None, auth=True):
        conn, resp = self.request(method, path, body, auth=auth)
        try:
            raw = resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {path}: HTTP {resp.status}: {raw[:300]!r}")
            return json.loads(raw) if raw else None
        finally:
            conn.close()

    def token(self) -> str:
        if self._token is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
            form = urllib.parse.urlencode({"grant_type": "refresh_token", **CREDS})
            conn.request(
                "POST",
                "/services/oauth2/token",
                body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            r = conn.getresponse()
            self._token = json.loads(r.read())["access_token"]
            conn.close()
        return self._token

    def calls(self) -> int:
        return int(self.json("GET", "/__emulator/calls", auth=False)["total"])

    def calls_detail(self) -> dict:
        return self.json("GET", "/__emulator/calls", auth=False)

    def data(self, path: str) -> str:
        return f"/services/data/{API}{path}"

    def query(self, soql: str) -> dict:
        return self.json("GET", self.data("/query?" + urllib.parse.urlencode({"q": soql})))

    def rss_kb(self) -> tuple[int, int]:
        """(current VmRSS, peak VmHWM) in KiB."""
        cur = peak = 0
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    cur = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1])
        except OSError:
            pass
        return cur, peak

    def cpu_s(self) -> float:
        """User+sys CPU seconds the emulator process has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def emulator_config(rows: dict[str, int], default_rows: int = 0, extra: int = 0, **more) -> dict:
    cfg = {"seed": 42, "rows": rows, "default_rows": default_rows, "extra_custom_objects": extra}
    cfg.update(more)
    return cfg


# --------------------------------------------------------------------------------------------
# Connector runs


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    records: int
    exit_code: int
    calls: int
    states: dict = field(default_factory=dict)  # stream name -> last STATE message body
    global_state: dict | None = None
    messages: list = field(default_factory=list)  # non-RECORD/STATE/LOG messages (small)
    error: str | None = None
    stderr_tail: str = ""
    by_endpoint: dict = field(default_factory=dict)  # API calls per endpoint during the run
    emulator_cpu_s: float = 0.0  # CPU the emulator spent during the run (context, not the connector)

    @property
    def records_per_s(self) -> float:
        return self.records / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def records_per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s > 0 else 0.0

    def state_list(self) -> list:
        if self.global_state is not None:
            return [self.global_state]
        return list(self.states.values())


def _consume(stdout, res: RunResult) -> None:
    count = 0
    for line in stdout:
        head = line[:48]
        if b"RECORD" in head:
            count += 1
            continue
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        t = msg.get("type")
        if t == "STATE":
            st = msg.get("state", {})
            if st.get("type") == "STREAM":
                name = st["stream"]["stream_descriptor"]["name"]
                res.states[name] = st
            elif st.get("type") == "GLOBAL":
                res.global_state = st
            else:
                res.global_state = st
        elif t == "RECORD":
            count += 1
        elif t == "TRACE":
            tr = msg.get("trace", {})
            if tr.get("type") == "ERROR":
                err = tr.get("error", {})
                res.error = (err.get("message") or "") + (
                    f" ({err.get('internal_message')})" if err.get("internal_message") else ""
                )
            if len(res.messages) < 2000:
                res.messages.append(msg)
        elif t != "LOG" and len(res.messages) < 2000:
            res.messages.append(msg)
    res.records = count


def run_connector(
    argv: list[str],
    emulator: Emulator | None,
    workdir: Path,
    env: dict | None = None,
    stdin_path: Path | None = None,
    timeout: float = 3600,
) -> RunResult:
    """Runs a connector process, counts its RECORD messages and measures it."""
    before = emulator.calls_detail() if emulator else None
    emu_cpu0 = emulator.cpu_s() if emulator else 0.0
    err_path = workdir / f"stderr-{time.monotonic_ns()}.log"
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL
    with open(err_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=err,
            env={**os.environ, **(env or {})},
            cwd=workdir,
            bufsize=1 << 20,
        )
        res = RunResult(0, 0, 0, 0, 0, 0)
        reader = threading.Thread(target=_consume, args=(proc.stdout, res))
        reader.start()
        deadline = t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
            time.sleep(0.01)
        wall = time.monotonic() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        reader.join()
    if stdin_path:
        stdin.close()
    res.wall_s = wall
    res.cpu_s = ru.ru_utime + ru.ru_stime
    res.peak_rss_mb = ru.ru_maxrss / 1024.0
    res.exit_code = proc.returncode
    if emulator and before is not None:
        res.emulator_cpu_s = emulator.cpu_s() - emu_cpu0
        after = emulator.calls_detail()
        res.calls = int(after["total"]) - int(before["total"])
        b = before.get("by_endpoint", {})
        res.by_endpoint = {
            k: v - b.get(k, 0) for k, v in after.get("by_endpoint", {}).items() if v - b.get(k, 0)
        }
    tail = err_path.read_bytes()[-4000:].decode("utf-8", "replace")
    res.stderr_tail = tail
    return res


def failure_reason(r: RunResult, what: str) -> str:
    """A precise one-line reason a run did not produce a usable measurement."""
    if r.error:
        why = r.error
    else:
        lines = [l for l in r.stderr_tail.splitlines() if l.strip()]
        why = lines[-1] if lines else "no error message"
    why = " ".join(why.split())
    return f"{what} exited {r.exit_code}: {why[:300]}"


def ours_source_config(emu: Emulator, **extra) -> dict:
    return {"auth_type": "Client", "is_sandbox": False, **CREDS, "login_url": emu.base, **extra}


def ref_source_config(**extra) -> dict:
    return {"auth_type": "Client", "is_sandbox": False, **CREDS, **extra}


def write_json(workdir: Path, name: str, value) -> Path:
    p = workdir / name
    p.write_text(json.dumps(value))
    return p


class Side:
    """One source implementation: ours (Rust binary) or the reference (Python)."""

    def __init__(self, name: str):
        self.name = name

    def available(self) -> None:
        if self.name == "ours":
            if not SOURCE_BIN.exists():
                raise NotRun(f"{SOURCE_BIN} not built")
        else:
            if not REF_PYTHON.exists():
                raise NotRun(
                    f"reference venv missing ({REF_PYTHON}); run tools/reference-source/setup.sh"
                )

    def argv(self, *args: str) -> list[str]:
        if self.name == "ours":
            return [str(SOURCE_BIN), *args]
        return [str(REF_PYTHON), str(REF_LAUNCH), *args]

    def env(self, emu: Emulator, workdir: Path) -> dict:
        if self.name == "ours":
            return {"RUST_LOG": "warn"}
        return {"SALESFORCE_EMULATOR_URL": emu.base, "REFERENCE_WORKDIR": str(workdir)}

    def config(self, emu: Emulator, **extra) -> dict:
        if self.name == "ours":
            return ours_source_config(emu, **extra)
        return ref_source_config(**extra)

    def run(self, emu: Emulator, workdir: Path, cmd: str, config: dict, catalog=None, state=None):
        self.available()
        args = [cmd, "--config", str(write_json(workdir, f"{self.name}-config.json", config))]
        if catalog is not None:
            args += ["--catalog", str(write_json(workdir, f"{self.name}-catalog.json", catalog))]
        if state is not None:
            args += ["--state", str(write_json(workdir, f"{self.name}-state.json", state))]
        return run_connector(self.argv(*args), emu, workdir, env=self.env(emu, workdir))

    def discover(self, emu: Emulator, workdir: Path, config: dict) -> tuple[RunResult, dict]:
        r = self.run(emu, workdir, "discover", config)
        cats = [m for m in r.messages if m.get("type") == "CATALOG"]
        if r.exit_code != 0 or not cats:
            raise NotRun(failure_reason(r, f"{self.name} discover"))
        return r, cats[-1]["catalog"]


def configured_catalog(catalog: dict, names: list[str], incremental: bool) -> dict:
    by_name = {s["name"]: s for s in catalog.get("streams", [])}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NotRun(f"discovered catalog lacks streams {missing}")
    streams = []
    for n in names:
        s = by_name[n]
        inc = incremental and "incremental" in s.get("supported_sync_modes", [])
        streams.append(
            {
                "stream": s,
                "sync_mode": "incremental" if inc else "full_refresh",
                "destination_sync_mode": "append",
                "cursor_field": s.get("default_cursor_field", []) if inc else [],
                "primary_key": s.get("source_defined_primary_key", []),
            }
        )
    return {"streams": streams}


def new_workdir(name: str) -> Path:
    base = ROOT / "target" / "bench" / "work"
    base.mkdir(parents=True, exist_ok=True)
    d = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=base))
    return d


def cleanup(d: Path) -> None:
    if os.environ.get("BENCH_KEEP") != "1":
        shutil.rmtree(d, ignore_errors=True)
