#!/usr/bin/env bash
# Creates (or reuses) the venv that holds Airbyte's own Python source-salesforce, the reference
# implementation our emulator is checked against (tests/e2e/fidelity.rs).
#
#   tools/reference-source/setup.sh            # create or reuse <repo>/.venv-reference
#   REFERENCE_VENV=/path tools/reference-source/setup.sh
#   tools/reference-source/setup.sh --force    # rebuild from scratch
#
# Installs only from PyPI through pip. The pinned connector version and every transitive version
# (constraints.txt, a `pip freeze` of a known-good install) make the run reproducible. The venv is
# reused when it already holds exactly those versions (stamp file written after a good install).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${REFERENCE_VENV:-$ROOT/.venv-reference}"
PACKAGE="airbyte-source-salesforce"
VERSION="2.10.3"
CONSTRAINTS="$HERE/constraints.txt"
STAMP="$VENV/.reference-stamp"

force=0
if [[ "${1:-}" == "--force" ]]; then force=1; fi

want_stamp() {
  # What a good install of this script's pins looks like: package==version + constraints digest.
  local digest="none"
  if [[ -f "$CONSTRAINTS" ]]; then digest="$(sha256sum "$CONSTRAINTS" | cut -d' ' -f1)"; fi
  echo "$PACKAGE==$VERSION constraints-sha256=$digest"
}

installed_ok() {
  [[ -x "$VENV/bin/python" && -f "$STAMP" ]] || return 1
  [[ "$(cat "$STAMP")" == "$(want_stamp)" ]] || return 1
  # The stamp could be stale if someone pip-installed into the venv by hand; check the real version.
  local got
  got="$("$VENV/bin/python" - "$PACKAGE" <<'PY' 2>/dev/null || true
import importlib.metadata, sys
print(importlib.metadata.version(sys.argv[1]))
PY
)"
  [[ "$got" == "$VERSION" ]] || return 1
  "$VENV/bin/python" -c 'import source_salesforce.run, requests' 2>/dev/null
}

if [[ $force -eq 0 ]] && installed_ok; then
  echo "reference source: reusing $VENV ($PACKAGE==$VERSION)" >&2
  exit 0
fi

# airbyte-cdk 7 supports Python 3.10-3.13; prefer 3.11 (the version the anchors study used).
pick_python() {
  local c
  for c in "${REFERENCE_PYTHON:-}" python3.11 python3.12 python3.13 python3.10 python3; do
    [[ -n "$c" ]] || continue
    command -v "$c" >/dev/null 2>&1 || continue
    if "$c" -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
      echo "$c"; return 0
    fi
  done
  return 1
}
PY="$(pick_python)" || { echo "reference source: need Python 3.10-3.13 (set REFERENCE_PYTHON)" >&2; exit 1; }

start=$(date +%s)
echo "reference source: creating $VENV with $("$PY" --version 2>&1)" >&2
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
args=(install --quiet "$PACKAGE==$VERSION")
if [[ -f "$CONSTRAINTS" ]]; then args+=(--constraint "$CONSTRAINTS"); fi
"$VENV/bin/python" -m pip "${args[@]}" >&2
"$VENV/bin/python" -c 'import source_salesforce.run, requests' >&2
want_stamp >"$STAMP"
end=$(date +%s)
echo "reference source: installed $PACKAGE==$VERSION into $VENV in $((end - start))s" >&2
