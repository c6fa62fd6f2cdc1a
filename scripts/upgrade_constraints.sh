#!/usr/bin/env bash
# Upgrades constraints.txt on purpose: installs aevb[test,tensorboard] into a scratch environment with the
# newest versions allowed by pyproject.toml, and writes what it got to constraints.txt.
# Then: rerun the tests and the README's figures with `bash scripts/setup.sh`, commit both.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --upgrade pip
"$scratch/venv/bin/python" -m pip install -q -e ".[test,tensorboard]"
{ sed -n '1,3p' constraints.txt
  "$scratch/venv/bin/python" -m pip freeze --exclude-editable; } > "$scratch/constraints.txt"
mv "$scratch/constraints.txt" constraints.txt
git --no-pager diff --stat constraints.txt || true
