"""Pretrained against scratch classifiers over label counts and seeds (a report, not a test).

    python benchmarks/pretrain.py                          # experiments/pretrain.py settings
    python benchmarks/pretrain.py --seeds=0,1,2,3,4 --labels=100,1000
    python benchmarks/pretrain.py --config=experiments/pretrain.py:vae

For each seed (train.seed = labels.seed = seed) the configured autoencoder is pretrained
once, without labels, exactly as `launch.py --config=experiments/pretrain.py` does it
(phase 1 in `<workdir>/seed_<s>/autoencoder`: a rerun with the same --workdir reuses it).
Then, for every label count (0 = all 60,000), the same class-balanced labeled subset
trains three classifiers of one architecture for the same `classifier.num_steps` steps in
the same batches: the pretrained encoder frozen (only the softmax head learns), the
pretrained encoder trainable, and the whole classifier from scratch. Prints one line per
classifier, then a table of test accuracy, mean ± sample standard deviation over the
seeds, with the paired gains over scratch, and the wall times.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import configs, families, keys, pretrain, router
from aevb import data as data_lib
from aevb.families import classifier as classifier_family

# Experiment files import their siblings (`from experiments import stacked`).
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/pretrain.py",
                                          lock_config=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (pretraining and labeled subset).")
_LABELS = flags.DEFINE_list("labels", ["100", "600", "1000", "3000", "0"],
                            "Label counts (0 = every training image).")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where the pretraining runs go (default: a "
                               "fresh temporary directory).")
MODES = ("frozen", "trainable", "scratch")


def classifier_accuracies(config, datasets: data_lib.Datasets, ae_params, labeled: np.ndarray,
                          test_x: jax.Array) -> dict[str, tuple[float, float]]:
    """{mode: (test accuracy, seconds)} of the three classifiers on one labeled subset,
    trained by the phase `launch.py` runs (`pretrain.classifier_phase`), without files."""
    num_pixels = datasets.num_pixels
    run_keys = keys.run_keys(config.train.seed)
    model, pretrained, scratch = classifier_family.build(
        families.get(config.model.kind), config.model, datasets.image_shape, 10, ae_params,
        config.classifier.encoder_layers, jax.random.fold_in(run_keys.classifier, 0))
    labeled_set = (jnp.asarray(datasets.train.images.reshape(-1, num_pixels)[labeled]),
                   jnp.asarray(datasets.train.labels[labeled]))
    out = {}
    for mode in MODES:
        t0 = time.perf_counter()
        phase = pretrain.classifier_phase(
            config, model, scratch if mode == "scratch" else pretrained, mode == "frozen",
            labeled_set, (test_x, datasets.test.labels),
            jax.random.fold_in(run_keys.classifier, 1), None, "unused")
        state = phase.state
        for r in range(1, phase.num_rounds + 1):
            state, _ = phase.run(state, r)
        test_accuracy = classifier_family.accuracy(model, state.params, test_x,
                                                   datasets.test.labels)
        out[mode] = (test_accuracy, time.perf_counter() - t0)
    return out


def mean_std(values: np.ndarray) -> str:
    """Fractions [S] as 'mean ± sample std' in percent."""
    values = np.asarray(values) * 100
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{values.mean():.2f} ± {std:.2f}"


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    start = time.perf_counter()
    base = _CONFIG.value
    configs.validate(base)
    datasets = data_lib.load(base.data)
    num_pixels = datasets.num_pixels
    test_x = classifier_family.inputs(
        jnp.asarray(datasets.test.images.reshape(-1, num_pixels)), base.data.binarize)
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="aevb-pretrain-")
    label_counts = [int(n) for n in _LABELS.value]
    seeds = [int(s) for s in _SEEDS.value]
    results: dict[tuple[int, str], list[float]] = {}
    pretrain_seconds, classifier_seconds = [], []
    depth = base.classifier.encoder_layers or families.get(base.model.kind).encoder_depth(
        base.model)
    widths = "-".join(map(str, (num_pixels, *base.model.hidden_sizes,
                                base.model.latent_dim)[:depth + 1]))
    print(f"pretraining: {base.model.kind} {base.model.hidden_sizes}+{base.model.latent_dim}, "
          f"noise {base.noise.kind} {base.noise.rate:g}, {base.train.num_epochs} epochs "
          f"({base.train.schedule}); classifier {widths}-10, {base.classifier.num_steps} steps "
          f"of {base.classifier.batch_size}, {base.classifier.optimizer} "
          f"{base.classifier.learning_rate:g}; workdir {workdir}", flush=True)
    for seed in seeds:
        config = base.copy_and_resolve_references()
        config.train.seed = config.labels.seed = seed
        t0 = time.perf_counter()
        with open(os.devnull, "w") as quiet:   # the phase-1 run's per-epoch lines
            stdout, sys.stdout = sys.stdout, quiet
            try:
                ae_summary, ae_params = pretrain.pretrain_autoencoder(
                    config, os.path.join(workdir, f"seed_{seed}", "autoencoder"),
                    datasets.image_shape,
                    router.run)
            finally:
                sys.stdout = stdout
        pretrain_seconds.append(time.perf_counter() - t0)
        headline = "test_mse" if "test_mse" in ae_summary else "test_neg_elbo"
        print(f"seed {seed}: pretrained in {pretrain_seconds[-1]:.0f} s, "
              f"{headline} {ae_summary[headline]:.4g}", flush=True)
        for num in label_counts:
            labeled = pretrain.labeled_subset(datasets.train.labels, num, seed)
            accuracies = classifier_accuracies(config, datasets, ae_params, labeled, test_x)
            for mode, (acc, seconds) in accuracies.items():
                results.setdefault((num, mode), []).append(acc)
                classifier_seconds.append(seconds)
            print(f"seed {seed}, {len(labeled):5d} labels: " + "  ".join(
                f"{mode} {acc:.4f} ({seconds:.1f} s)" for mode, (acc, seconds)
                in accuracies.items()), flush=True)

    print()
    print(f"Test accuracy (%), mean ± std over seeds {seeds}; gains are paired by seed.")
    print()
    print("| labels | pretrained, frozen | pretrained, trainable | scratch "
          "| frozen − scratch | trainable − scratch |")
    print("|---|---|---|---|---|---|")
    for num in label_counts:
        acc = {mode: np.asarray(results[(num, mode)]) for mode in MODES}
        print(f"| {num or len(datasets.train.labels):,} | {mean_std(acc['frozen'])} | "
              f"{mean_std(acc['trainable'])} | {mean_std(acc['scratch'])} | "
              f"{mean_std(acc['frozen'] - acc['scratch'])} | "
              f"{mean_std(acc['trainable'] - acc['scratch'])} |")
    print()
    print(f"wall time: pretraining {np.mean(pretrain_seconds):.0f} s per seed, classifiers "
          f"{np.mean(classifier_seconds):.1f} s each ({len(classifier_seconds)} of them), "
          f"total {time.perf_counter() - start:.0f} s; device {jax.devices()[0].device_kind}")


if __name__ == "__main__":
    app.run(main)
