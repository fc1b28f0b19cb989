#!/usr/bin/env bash
# Installs everything the tests need (system packages, a venv with edgepose[all,dev] through the pinned
# constraints) and runs them. This is the README's test command; .ci/run runs exactly this, with missing
# test assets made fatal.
#
#   bash scripts/test.sh              everything (what CI runs)
#   bash scripts/test.sh --quick      everyday tier: skips tests marked slow (under 3 minutes here)
#   bash scripts/test.sh ARGS...      extra arguments go to pytest (e.g. tests/test_cli.py -k family)
#
# Environment: EDGEPOSE_VENV (default .venv), PYTHON (default python3), EDGEPOSE_CONSTRAINTS (default: the
# file for PYTHON's version, scripts/constraints-pyX.Y.txt or else scripts/constraints.txt; "none" installs
# the newest releases, which scripts/refresh-constraints.sh uses).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

quick=0
args=()
for a in "$@"; do
  if [ "$a" = "--quick" ]; then quick=1; else args+=("$a"); fi
done

# command the tests run -> the Debian package that provides it
TOOLS=(mosquitto:mosquitto mosquitto_pub:mosquitto-clients chromium:chromium systemd-analyze:systemd
       shellcheck:shellcheck openssl:openssl npm:npm)

missing=()
for pair in "${TOOLS[@]}"; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 \
    || missing+=("${pair##*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    step "installing system packages with apt: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: no apt-get here; install these yourself: ${missing[*]}" >&2
  fi
else
  step "system packages: all there (${#TOOLS[@]} tools)"
fi

PY="${PYTHON:-python3}"
VENV="${EDGEPOSE_VENV:-.venv}"
PYVER="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
CONSTRAINTS="${EDGEPOSE_CONSTRAINTS:-$(bash scripts/constraints-for.sh "$PYVER")}"
if [ ! -x "$VENV/bin/python" ]; then
  step "creating the venv $VENV with $("$PY" --version)"
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
if [ "$CONSTRAINTS" = "none" ]; then
  step "installing edgepose[all,dev] with the NEWEST releases (no constraints)"
  "${PIP[@]}" install -q --upgrade pip setuptools
  "${PIP[@]}" install -q --upgrade --upgrade-strategy eager --no-build-isolation -e '.[all,dev]'
else
  step "installing edgepose[all,dev] through $CONSTRAINTS (pinned; refresh: bash scripts/refresh-constraints.sh)"
  # pip and setuptools first, pinned too; then no build isolation, so the build uses the pinned setuptools
  "${PIP[@]}" install -q -c "$CONSTRAINTS" pip setuptools
  "${PIP[@]}" install -q -c "$CONSTRAINTS" --no-build-isolation -e '.[all,dev]'
  "${PIP[@]}" check
fi

marker=()
if [ "$quick" -eq 1 ]; then
  marker=(-m "not slow")
  step "running the quick tier (tests not marked slow)"
else
  step "running every test"
fi
set +e
"$VENV/bin/python" -m pytest -p no:cacheprovider -ra --durations=10 "${marker[@]}" "${args[@]}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
