#!/usr/bin/env python3
"""Render one or more bench result files (target/bench/results-*.json) as Markdown tables.

    python3 bench/report.py target/bench/results-2026-11-24T140500Z.json [...]

Rows of later files replace rows of earlier ones with the same scenario and metric (the metric text
includes the sizes), so a full run can be combined with a later re-run of some scenarios; the
"run" column gives the UTC start time of the run each row comes from.
"""

from __future__ import annotations

import json
import sys


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if abs(v) < 10:
            return f"{v:,.3f}".rstrip("0").rstrip(".")
        return f"{v:,.1f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def main() -> int:
    rows: dict[tuple, dict] = {}
    not_run: dict[str, str] = {}
    meta = []
    for path in sys.argv[1:]:
        d = json.load(open(path))
        meta.append(
            f"- `{path}`: {'quick' if d['quick'] else 'full'} sizes, started {d['started']}, "
            f"finished {d['finished']}, {d['machine']['nproc']} CPUs ({d['machine']['cpu']}), "
            f"{d['machine']['mem_gb']} GB, load average at start "
            f"{', '.join(f'{x:.1f}' for x in d['machine']['load_avg_at_start'])}"
        )
        scen = {r["scenario"] for r in d["results"]} | {s for s, _ in d["not_run"]}
        for s in scen:
            not_run.pop(s, None)
        for r in d["results"]:
            rows[(r["scenario"], r["metric"])] = {**r, "run": d["started"][11:16]}
        for s, why in d["not_run"]:
            not_run[s] = (not_run.get(s, "") + "; " if s in not_run else "") + why
    print("\n".join(meta))
    print()
    print("| scn | metric | ours | reference | ours / ref | target | ok | run |")
    print("|---|---|---:|---:|---:|---|---|---|")
    order = {k: i for i, k in enumerate(rows)}
    for r in sorted(rows.values(), key=lambda r: (r["scenario"], order[(r["scenario"], r["metric"])])):
        unit = f" [{r['unit']}]" if r["unit"] else ""
        ok = "" if r["ok"] is None else ("PASS" if r["ok"] else "**FAIL**")
        print(
            f"| {r['scenario']} | {r['metric']}{unit} | {fmt(r['ours'])} | {fmt(r['reference'])} | "
            f"{fmt(r['ratio'])} | {r['target']} | {ok} | {r['run']} |"
        )
    if not_run:
        print()
        for s, why in sorted(not_run.items()):
            print(f"- NOT RUN ({s}): {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
