#!/usr/bin/env bash
# Installs everything the tests need (system packages, a venv with edgepose[all,dev]) and runs them.
# This is the README's test command; .ci/run runs exactly this, with missing test assets made fatal.
set -euo pipefail
cd "$(dirname "$0")/.."

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
    echo "installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: no apt-get here; install these yourself: ${missing[*]}" >&2
  fi
fi

PY="${PYTHON:-python3}"
VENV="${EDGEPOSE_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e '.[all,dev]'

set +e
"$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
