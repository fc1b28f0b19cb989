#!/usr/bin/env bash
# Prints the constraints file for a Python version (X.Y): scripts/constraints-pyX.Y.txt when there is
# one, else scripts/constraints.txt. Used by test.sh and refresh-constraints.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f "scripts/constraints-py$1.txt" ]; then
  echo "scripts/constraints-py$1.txt"
else
  echo "scripts/constraints.txt"
fi
