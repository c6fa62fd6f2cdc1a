"""M1, M2 and M1 + M2 against a network on the labels alone, over label counts and seeds
(a report, not a test; Kingma, Rezende, Mohamed & Welling 2014, Table 1).

    python benchmarks/semisupervised.py                      # experiments/semisupervised.py
    python benchmarks/semisupervised.py --seeds=0,1,2 --labels=100,1000 --m2_seeds=0
    python benchmarks/semisupervised.py --config.train.num_epochs=20 --config.m2.num_epochs=5

For each seed (train.seed = labels.seed = seed) the M1 VAE is trained once, without labels,
exactly as `launch.py --config=experiments/semisupervised.py` trains it (in
`<workdir>/seed_<s>/m1`: a rerun with the same --workdir reuses it). Then, for every label
count, on the same class-balanced labeled subset and the same labeled validation split
outside it (as many examples; every choice is made on it, the test set is only reported):
  nn        a small MLP on the labeled pixels alone (the paper's "NN" baseline);
  m1 <c>    each host classifier c on M1's posterior means (logistic, mlp, knn, svm);
  m1+m2     M2 on M1's codes, `m2.num_epochs` epochs, the epoch of the best validation
            accuracy;
  m2        M2 on the pixels (for the seeds of --m2_seeds only: it decodes every unlabeled
            example once per class, the costliest).
Prints one line per run, then the test error (%) as mean ± sample std over the seeds, with
the wall time of each kind of run.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

# The repository root: benchmarks.report, and experiment files that import their siblings.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aevb import data as data_lib
from aevb import regimes
from aevb.regimes import pretrain, semisupervised
from aevb.regimes.validation import validate
from aevb.training import loop
from benchmarks.report import mean_std, quiet

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/semisupervised.py",
                                          lock_config=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (M1, M2 and the labeled subsets).")
_LABELS = flags.DEFINE_list("labels", ["100", "1000"], "Label counts.")
_M2_SEEDS = flags.DEFINE_list("m2_seeds", ["0"], "Seeds that also train M2 on the pixels.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where the runs go (default: a fresh "
                               "temporary directory).")
HOST = ("logistic", "mlp", "knn", "svm")


def runs_of_one_count(config, root: str, datasets, m1: semisupervised.Features,
                      pixels: semisupervised.Features, with_m2: bool
                      ) -> dict[str, tuple[float, float, str]]:
    """{method: (test error, seconds, what was selected)} on one labeled subset."""
    labels, test_labels = datasets.train.labels, datasets.test.labels
    labeled, held_out = pretrain.labeled_and_validation(config, labels)
    out = {}
    for name, features, kind in [("nn", pixels, "mlp"),
                                 *((f"m1 {c}", m1, c) for c in HOST)]:
        config.semisupervised.classifier = kind
        t0 = time.perf_counter()
        result = semisupervised.host_classifier(config, features, labels, test_labels,
                                                labeled, held_out)
        chosen = " ".join(f"{k[9:]}={v}" for k, v in result.items() if k.startswith("selected_"))
        out[name] = (1 - result["test_accuracy"], time.perf_counter() - t0, chosen)
    config.semisupervised.classifier = "m2"
    for name, features in [("m1+m2", m1), *([("m2", pixels)] if with_m2 else [])]:
        t0 = time.perf_counter()
        workdir = os.path.join(root, name)
        os.makedirs(workdir, exist_ok=True)
        with quiet():
            result, _ = semisupervised.train_m2(config, workdir, features, datasets, labeled,
                                                held_out, loop.Run([workdir]))
        out[name] = (1 - result["test_accuracy"], time.perf_counter() - t0,
                     f"epoch {result['selected_epoch']}/{config.m2.num_epochs}")
    return out


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    start = time.perf_counter()
    base = _CONFIG.value
    validate(base)
    datasets = data_lib.load(base.data)
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="aevb-semisupervised-")
    counts, seeds = [int(n) for n in _LABELS.value], [int(s) for s in _SEEDS.value]
    m2_seeds = {int(s) for s in _M2_SEEDS.value}
    print(f"M1: VAE {base.model.hidden_sizes}+{base.model.latent_dim} {base.model.activation}, "
          f"{base.train.num_epochs} epochs, {base.train.optimizer} {base.train.learning_rate:g};"
          f" M2: {base.m2.hidden_sizes}+{base.m2.latent_dim}, {base.m2.num_epochs} epochs of "
          f"{base.m2.batch_size} unlabeled + {base.m2.labeled_batch_size} labeled, alpha "
          f"{base.m2.alpha:g}; validation as many as the labels; workdir {workdir}", flush=True)
    errors: dict[tuple[str, int], list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for seed in seeds:
        config = base.copy_and_resolve_references()
        config.train.seed = config.labels.seed = seed
        t0 = time.perf_counter()
        with quiet():
            m1 = semisupervised.m1_features(config, os.path.join(workdir, f"seed_{seed}"),
                                            datasets, regimes.run)
        seconds.setdefault("M1 VAE", []).append(time.perf_counter() - t0)
        pixels = semisupervised.pixel_features(config, datasets)
        print(f"seed {seed}: M1 in {seconds['M1 VAE'][-1]:.0f} s, test -ELBO "
              f"{m1.summary['m1_test_neg_elbo']:.1f}, {m1.summary['m1_active_units']} active "
              "units", flush=True)
        for num in counts:
            config.labels.num = num
            root = os.path.join(workdir, f"seed_{seed}", f"labels_{num}")
            results = runs_of_one_count(config, root, datasets, m1, pixels, seed in m2_seeds)
            for name, (error, secs, chosen) in results.items():
                errors.setdefault((name, num), []).append(error)
                seconds.setdefault(name, []).append(secs)
                print(f"seed {seed}, {num:5d} labels: {name:12s} test error {100 * error:6.2f}%"
                      f"  ({secs:.1f} s; {chosen})", flush=True)

    methods = list(dict.fromkeys(name for name, _ in errors))
    print()
    print(f"Test error (%), mean ± std over seeds {seeds} (m2: seeds {sorted(m2_seeds)}).")
    print()
    print("| method | " + " | ".join(f"{n:,} labels" for n in counts) + " | wall time per run |")
    print("|---|" + "---|" * len(counts) + "---|")
    for name in methods:
        cells = [mean_std(errors[(name, n)]) if (name, n) in errors else "–" for n in counts]
        print(f"| {name} | " + " | ".join(cells) + f" | {np.mean(seconds[name]):.1f} s |")
    print()
    print(f"M1 VAE: {np.mean(seconds['M1 VAE']):.0f} s per seed; total "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    app.run(main)
