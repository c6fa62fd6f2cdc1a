"""A sweep three ways, each as the real `launch.py --sweep` command (a benchmark, not a test).

    python -m benchmarks.sweep --config=experiments/vae.py [--trials=8 --over=seed --epochs=2]
                               [--ways=sequential,vectorized,workers]

Runs the same sweep of --trials trials (over `train.seed`, or `model.kl_weight` for a VAE,
or `sparsity.weight` for a sparse autoencoder), each way in a fresh process with a fresh
workdir and a cold compilation cache of its own:

  * sequential: `--workers=0 --novectorize`, one trial after another;
  * vectorized: `--workers=0`, the trials as one vmapped program
    (aevb/regimes/vectorized.py);
  * workers: `--workers=<cores>`, one process per core taking trials in turn
    (aevb/sweeps/workers.py).

Prints each wall time (start-up, data loading, compilation, training, evaluation, all of
it), the trials' mean final loss each way, and last `vectorized_over_sequential=<float>`
and `workers_over_sequential=<float>` (of the ways run, `--ways`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags

from aevb.run import files

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = flags.DEFINE_string("config", "experiments/vae.py", "Experiment file.")
_TRIALS = flags.DEFINE_integer("trials", 8, "Trials in the sweep.")
_OVER = flags.DEFINE_enum("over", "seed", ["seed", "kl_weight", "sparsity_weight"],
                          "What the trials differ in.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Epochs per trial.")
_WORKERS = flags.DEFINE_integer("workers", len(os.sched_getaffinity(0)), "Worker processes.")
_WAYS = flags.DEFINE_list("ways", ["sequential", "vectorized", "workers"],
                          "Which ways to run (an accelerator: sequential,vectorized).")

FIELDS = {"seed": "train.seed", "kl_weight": "model.kl_weight",
          "sparsity_weight": "sparsity.weight"}
# An experiment file of its own: the experiment's config, this sweep (launch.py's directory,
# the repository root, is on the path of the process that loads it).
SWEEP_FILE = """
from aevb import sweeps
from {module} import get_config

def get_sweep():
    return sweeps.product({{{field!r}: {values!r}}})
"""


def _values(n: int) -> list:
    if _OVER.value == "seed":
        return list(range(n))
    scale = 1.0 if _OVER.value == "kl_weight" else 5e-3
    return [float(f"{v:.3g}") for v in np.geomspace(0.25, 2.0, n) * scale]


def _sweep(sweep_file: str, workdir: str, cache: str, *flags_: str) -> tuple[float, float]:
    """(wall seconds, mean final train loss) of one `launch.py --sweep` process."""
    cmd = [sys.executable, "launch.py", f"--config={sweep_file}", "--sweep",
           f"--config.train.num_epochs={_EPOCHS.value}",
           f"--config.eval.every_epochs={_EPOCHS.value}", f"--workdir={workdir}",
           f"--compilation_cache={cache}", *flags_]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    summaries = [files.path(os.path.join(workdir, name), files.SUMMARY)
                 for name in os.listdir(workdir)]
    losses = []
    for path in summaries:
        if os.path.exists(path):
            with open(path) as f:
                losses.append(json.load(f)["train_loss"])
    assert len(losses) == _TRIALS.value, losses
    return seconds, float(np.mean(losses))


def main(argv) -> None:
    del argv
    module = os.path.splitext(_CONFIG.value)[0].replace("/", ".")
    field = FIELDS[_OVER.value]
    with tempfile.TemporaryDirectory() as tmp:
        sweep_file = os.path.join(tmp, "sweep_experiment.py")
        with open(sweep_file, "w") as f:
            f.write(SWEEP_FILE.format(module=module, field=field,
                                      values=_values(_TRIALS.value)))
        print(f"{_TRIALS.value} trials of {_CONFIG.value} over {field}, {_EPOCHS.value} "
              f"epochs each; {_WORKERS.value} workers", flush=True)
        ways = {"sequential": ("--workers=0", "--novectorize"),
                "vectorized": ("--workers=0",),
                "workers": (f"--workers={_WORKERS.value}",)}
        results = {}
        for way, flags_ in ways.items():
            if way not in _WAYS.value:
                continue
            results[way] = _sweep(sweep_file, os.path.join(tmp, way),
                                  os.path.join(tmp, f"cache-{way}"), *flags_)
            print(f"{way}: {results[way][0]:.1f} s (mean final train loss "
                  f"{results[way][1]:.4f})", flush=True)
    if "sequential" in results:
        for way in ("vectorized", "workers"):
            if way in results:
                print(f"{way}_over_sequential={results[way][0] / results['sequential'][0]:.3f}")


if __name__ == "__main__":
    app.run(main)
