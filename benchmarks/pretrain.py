"""Pretrained against scratch classifiers over label counts and seeds (a report, not a test).

    python benchmarks/pretrain.py                          # experiments/pretrain.py settings
    python benchmarks/pretrain.py --seeds=0,1,2,3,4 --labels=100,1000
    python benchmarks/pretrain.py --config=experiments/pretrain.py:vae
    python benchmarks/pretrain.py --labels=100,1000 --weight_decays=0,1e-4,1e-3,1e-2

For each seed (train.seed = labels.seed = seed) the configured autoencoder is pretrained
once, without labels, exactly as `launch.py --config=experiments/pretrain.py` does it
(phase 1 in `<workdir>/seed_<s>/autoencoder`: a rerun with the same --workdir reuses it).
Then, for every label count (0 = all 60,000), the same class-balanced labeled subset
trains three classifiers of one architecture for the same `classifier.num_steps` steps in
the same batches: the pretrained encoder frozen (only the softmax head learns), the
pretrained encoder trainable, and the whole classifier from scratch. Each is the classifier
of its evaluation with the best accuracy on the labeled validation split outside the
labeled subset (`labels.num_validation`, default as many; early stopping after
`classifier.patience` evaluations), as in `launch.py`; with --weight_decays, each run also
picks its `classifier.weight_decay` on that split. The test set is only reported. Prints
one line per classifier, then a table of test accuracy, mean ± sample standard deviation
over the seeds, with the paired gains over scratch, and the wall times.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

# The repository root: benchmarks.report, and experiment files that import their siblings.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from aevb import data as data_lib
from aevb import families
from aevb import regimes as router
from aevb.regimes import classifier as classifier_family
from aevb.regimes import pretrain
from aevb.regimes.validation import validate
from aevb.training import keys, loop
from benchmarks.report import mean_std, quiet

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/pretrain.py",
                                          lock_config=True)
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds (pretraining and labeled subset).")
_LABELS = flags.DEFINE_list("labels", ["100", "600", "1000", "3000", "0"],
                            "Label counts (0 = every training image).")
_WEIGHT_DECAYS = flags.DEFINE_list(
    "weight_decays", [], "classifier.weight_decay values to choose among by mean validation "
    "accuracy (default: the config's alone).")
_WORKDIR = flags.DEFINE_string("workdir", "", "Where the pretraining runs go (default: a "
                               "fresh temporary directory).")
MODES = ("frozen", "trainable", "scratch")


def classifier_accuracies(config, datasets: data_lib.Datasets, ae_params, labeled: np.ndarray,
                          held_out: np.ndarray, test_x: jax.Array, workdir: str
                          ) -> dict[str, tuple[float, float, float]]:
    """{mode: (test accuracy, validation accuracy, seconds)} of the three classifiers on one
    labeled subset, each the one of its best validation accuracy: the phase `launch.py`
    runs (`pretrain.classifier_phase`, through the loop), checkpoints in `workdir`."""
    num_pixels = datasets.num_pixels
    run_keys = keys.run_keys(config.train.seed)
    model, pretrained, scratch = classifier_family.build(
        families.get(config.model.kind), config.model, datasets.image_shape, 10, ae_params,
        config.classifier.encoder_layers, jax.random.fold_in(run_keys.classifier, 0))
    flat = datasets.train.images.reshape(-1, num_pixels)
    labeled_set = (jnp.asarray(flat[labeled]), jnp.asarray(datasets.train.labels[labeled]))
    validation = (classifier_family.inputs(jnp.asarray(flat[held_out]), config.data.binarize),
                  datasets.train.labels[held_out])
    out = {}
    for mode in MODES:
        t0 = time.perf_counter()
        phase = pretrain.classifier_phase(
            config, model, scratch if mode == "scratch" else pretrained, mode == "frozen",
            labeled_set, (test_x, datasets.test.labels),
            jax.random.fold_in(run_keys.classifier, 1), None,
            os.path.join(workdir, mode, "checkpoints"), validation=validation)
        with quiet():
            result = loop.Run([os.path.join(workdir, mode)]).train(phase)
        out[mode] = (result.eval[0]["test_accuracy"],
                     result.eval[0].get("validation_accuracy", float("nan")),
                     time.perf_counter() - t0)
    return out


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    start = time.perf_counter()
    base = _CONFIG.value
    validate(base)
    datasets = data_lib.load(base.data)
    num_pixels = datasets.num_pixels
    test_x = classifier_family.inputs(
        jnp.asarray(datasets.test.images.reshape(-1, num_pixels)), base.data.binarize)
    workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="aevb-pretrain-")
    label_counts = [int(n) for n in _LABELS.value]
    seeds = [int(s) for s in _SEEDS.value]
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
    decays = [float(w) for w in _WEIGHT_DECAYS.value] or [base.classifier.weight_decay]
    # (labels, weight decay, mode) -> per seed (test accuracy, validation accuracy)
    runs: dict[tuple[int, float, str], list[tuple[float, float]]] = {}
    for seed in seeds:
        config = base.copy_and_resolve_references()
        config.train.seed = config.labels.seed = seed
        t0 = time.perf_counter()
        with quiet():  # the phase-1 run's per-epoch lines
            ae_summary, ae_params = pretrain.pretrain_autoencoder(
                config, os.path.join(workdir, f"seed_{seed}", "autoencoder"),
                datasets.image_shape, router.run)
        pretrain_seconds.append(time.perf_counter() - t0)
        headline = "test_mse" if "test_mse" in ae_summary else "test_neg_elbo"
        print(f"seed {seed}: pretrained in {pretrain_seconds[-1]:.0f} s, "
              f"{headline} {ae_summary[headline]:.4g}", flush=True)
        for num, decay in itertools.product(label_counts, decays):
            config.labels.num, config.classifier.weight_decay = num, decay
            labeled, held_out = pretrain.labeled_and_validation(config, datasets.train.labels)
            accuracies = classifier_accuracies(
                config, datasets, ae_params, labeled, held_out, test_x,
                os.path.join(workdir, f"seed_{seed}", f"labels_{num}", f"decay_{decay:g}"))
            for mode, (acc, val, seconds) in accuracies.items():
                runs.setdefault((num, decay, mode), []).append((acc, val))
                classifier_seconds.append(seconds)
            print(f"seed {seed}, {len(labeled):5d} labels ({len(held_out)} validation), weight "
                  f"decay {decay:g}: " + "  ".join(
                      f"{mode} {acc:.4f} (validation {val:.2f}, {seconds:.1f} s)"
                      for mode, (acc, val, seconds) in accuracies.items()), flush=True)
    print_tables(runs, label_counts, decays, seeds, len(datasets.train.labels))
    print()
    print(f"wall time: pretraining {np.mean(pretrain_seconds):.0f} s per seed, classifiers "
          f"{np.mean(classifier_seconds):.1f} s each ({len(classifier_seconds)} of them), "
          f"total {time.perf_counter() - start:.0f} s; device {jax.devices()[0].device_kind}")


def print_tables(runs, label_counts, decays, seeds, num_train: int) -> None:
    """The test accuracies of the classifiers selected on validation (each seed picks its
    own weight decay among `decays`, by its validation accuracy), and with several decays,
    the mean validation and test accuracy of each."""
    print()
    print(f"Test accuracy (%), mean ± std over seeds {seeds}; gains are paired by seed; "
          f"weight decay selected per run on validation among {decays}.")
    print()
    print("| labels | pretrained, frozen | pretrained, trainable | scratch "
          "| frozen − scratch | trainable − scratch |")
    print("|---|---|---|---|---|---|")
    for num in label_counts:
        acc = {}
        for mode in MODES:  # per seed: the decay of the best validation accuracy (first of equals)
            per_decay = np.asarray([runs[(num, d, mode)] for d in decays])  # [W, S, 2]
            best = np.argmax(np.nan_to_num(per_decay[:, :, 1], nan=-1.0), axis=0)
            acc[mode] = per_decay[best, np.arange(len(seeds)), 0]
        print(f"| {num or num_train:,} | {mean_std(acc['frozen'])} | "
              f"{mean_std(acc['trainable'])} | {mean_std(acc['scratch'])} | "
              f"{mean_std(acc['frozen'] - acc['scratch'])} | "
              f"{mean_std(acc['trainable'] - acc['scratch'])} |")
    if len(decays) > 1:
        print()
        print("Per weight decay: validation / test accuracy (%), means over the seeds.")
        print()
        print("| labels | weight decay | " + " | ".join(MODES) + " |")
        print("|---|---|" + "---|" * len(MODES))
        for num, decay in itertools.product(label_counts, decays):
            cells = [f"{100 * np.mean([v for _, v in runs[(num, decay, m)]]):.2f} / "
                     f"{100 * np.mean([a for a, _ in runs[(num, decay, m)]]):.2f}"
                     for m in MODES]
            print(f"| {num or num_train:,} | {decay:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    app.run(main)
