"""Vectorized against sequential sweeps, in one process (a benchmark, not a test).

    python benchmarks/sweep.py --config=experiments/vae.py [--trials=8 --over=seed]

Runs the same sweep of --trials trials (over `train.seed`, or `model.kl_weight` for a VAE,
or `sparsity.weight` for a sparse autoencoder) twice: vectorized, as one vmapped program
(aevb/vectorized.py), and sequentially, one `router.run` after another, each in a
fresh temporary workdir. Prints both wall times, the trials' mean final loss both ways, and
last `vectorized_over_sequential=<float>`.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # experiments/

import tempfile
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import router, sweeps, vectorized

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/vae.py", lock_config=True)
_TRIALS = flags.DEFINE_integer("trials", 8, "Trials in the sweep.")
_OVER = flags.DEFINE_enum("over", "seed", ["seed", "kl_weight", "sparsity_weight"],
                          "What the trials differ in.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs per trial.")

FIELDS = {"seed": "train.seed", "kl_weight": "model.kl_weight",
          "sparsity_weight": "sparsity.weight"}


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    base = _CONFIG.value
    base.train.num_epochs = _EPOCHS.value
    base.eval.every_epochs = _EPOCHS.value
    n = _TRIALS.value
    field = FIELDS[_OVER.value]
    values = (list(range(n)) if _OVER.value == "seed"
              else [float(f"{v:.3g}") for v in np.geomspace(0.25, 2.0, n) * (
                  1.0 if _OVER.value == "kl_weight" else base.sparsity.weight)])
    trials = sweeps.make_trials(base, sweeps.product({field: values}))
    print(f"{n} trials over {field}, {_EPOCHS.value} epochs each, "
          f"IWAE k={base.eval.iwae_k} on {base.eval.iwae_num_examples} examples")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        vec = vectorized.train_trials([(name, config) for name, _, config in trials],
                                      f"{tmp}/vectorized")
        vec_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        seq = [router.run(config, f"{tmp}/sequential/{name}")
               for name, _, config in trials]
        seq_seconds = time.perf_counter() - t0

    loss = lambda summaries: np.mean([s["train_loss"] for s in summaries])
    print(f"vectorized: {vec_seconds:.1f} s (mean final train loss {loss(vec):.4f})")
    print(f"sequential: {seq_seconds:.1f} s (mean final train loss {loss(seq):.4f})")
    print(f"vectorized_over_sequential={vec_seconds / seq_seconds:.3f}")


if __name__ == "__main__":
    app.run(main)
