#!/usr/bin/env bash
# The README's IWAE-protocol figures on Fashion-MNIST: the `budget` variant shortened to
# about 15 minutes of training each on a 2-core CPU (560 passes at k = 1, 280 at k = 5,
# where a pass costs twice as much: benchmarks/samples.py), L_5000 on the whole test set.
#
#     bash scripts/iwae_figures.sh [ROOT]     # workdirs under ROOT (default runs/iwae15)
#
# One run after another, so that each has the machine to itself; a rerun skips finished
# runs and resumes an interrupted one from its last checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-runs/iwae15}"
py=".venv/bin/python"
[[ -x "$py" ]] || py=python
run() {
  local name="$1"; shift
  "$py" launch.py --config="experiments/iwae.py:budget,$1" "${@:2}" --workdir="$root/$name"
}
run vae_k1_constant  vae_k1,constant  --config.train.num_epochs=560
run vae_k1_schedule  vae_k1           --config.train.num_epochs=560
run iwae_k5_constant iwae_k5,constant --config.train.num_epochs=280
run iwae_k5_schedule iwae_k5          --config.train.num_epochs=280
run vae_k1_warmup    vae_k1           --config.train.num_epochs=560 \
                                      --config.train.kl_warmup_epochs=56
