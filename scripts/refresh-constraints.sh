#!/usr/bin/env bash
# Refreshes the constraints file for PYTHON's version (scripts/constraints.txt, or
# scripts/constraints-pyX.Y.txt where one exists): the exact versions the tests install.
#
# It makes a throwaway venv, installs edgepose[all,dev] with the NEWEST releases (no constraints),
# runs the whole suite there (scripts/test.sh), and rewrites that file from that venv
# only when every test passed. On a failure the old file stays as it is: pin the release that
# broke us, or fix the code, then run this again.
#
#   bash scripts/refresh-constraints.sh            refresh scripts/constraints.txt (python3)
#   PYTHON=python3.10 bash scripts/refresh-constraints.sh   refresh scripts/constraints-py3.10.txt
#   KEEP_VENV=1 bash scripts/refresh-constraints.sh   keep the throwaway venv for a look afterwards
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PYTHON:-python3}"
VENV="$(mktemp -d "${TMPDIR:-/tmp}/edgepose-refresh.XXXXXX")"
cleanup() { if [ -z "${KEEP_VENV:-}" ]; then rm -rf "$VENV"; else echo "venv kept at $VENV"; fi; }
trap cleanup EXIT
rmdir "$VENV"  # scripts/test.sh creates it

echo "==> running the suite against the newest releases in $VENV"
if ! EDGEPOSE_VENV="$VENV" EDGEPOSE_CONSTRAINTS=none PYTHON="$PY" bash scripts/test.sh "$@"; then
  echo "refresh-constraints: tests failed with the newest releases; the constraints file is unchanged" >&2
  exit 1
fi

out="$(bash scripts/constraints-for.sh "$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')")"
tmp="$(mktemp)"
{
  sed -n '/^# Resolved on/q; /^#/p' scripts/constraints.txt  # the explanatory header
  echo "# Resolved on $(date -u +%Y-%m-%d) with $("$VENV/bin/python" --version), $(uname -sm)."
  "$VENV/bin/python" -m pip --disable-pip-version-check freeze --all --exclude-editable | grep -v '^#' \
    | sort -f
} >"$tmp"
mv "$tmp" "$out"
echo "==> all tests passed; wrote $out ($(grep -c '==' "$out") packages)"
git --no-pager diff --stat -- "$out" 2>/dev/null || true
