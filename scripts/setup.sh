#!/usr/bin/env bash
# Sets up a fresh machine for aevb: Fashion-MNIST from Debian (when apt is there), a virtual
# environment in .venv, and the package with the extras named as arguments (default: test).
#   bash scripts/setup.sh          # .venv with aevb + test tools
#   bash scripts/setup.sh tfds     # also TensorFlow Datasets + TensorFlow (MNIST etc. by name)
# Versions come from constraints.txt (those the README's figures were measured with);
# scripts/upgrade_constraints.sh moves them forward on purpose.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${*:-test}"
extras="${extras// /,}"

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if command -v apt-get >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "== installing Fashion-MNIST (Debian package dataset-fashion-mnist)"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "== no apt-get: put the four Fashion-MNIST IDX files in a directory and pass" \
         "--config.data.dir=DIR (see README)"
  fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
echo "== installing aevb[$extras] into .venv, at the versions of constraints.txt"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[$extras]"
echo "== ready: .venv/bin/python launch.py --config=experiments/vae.py"
