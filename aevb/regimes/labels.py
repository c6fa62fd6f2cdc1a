"""The labeled examples of the label-scarce regimes (pretrain, semisupervised): which
training examples are labeled (`labels.num`, `labels.seed`), which labeled ones validate
(`labels.num_validation`), and, under `labels.hold_out`, the validation examples taken out
of the training split so that no model trains on their images.

Indices are rows of the training split as `data.load` gives it (after `data.num_validation`
has taken its share). Both subsets are class-balanced and drawn by `labels.seed`.
"""

from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from aevb import data as data_lib
from aevb.config.checks import ConfigError
from aevb.regimes.validation import validation_size


def _balanced(labels: np.ndarray, num: int, rng: np.random.Generator, field: str
              ) -> np.ndarray:
    """Positions of `num` examples of `labels`, class-balanced: every class gets num // C
    examples and num % C classes, drawn by `rng`, one more; each class's examples in the
    order of one permutation. Raises ConfigError (`field`) when a class has too few."""
    classes = np.unique(labels)
    orders = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    per_class = np.full(len(classes), num // len(classes))
    per_class[rng.permutation(len(classes))[:num % len(classes)]] += 1
    for c, order, k in zip(classes, orders, per_class):
        if k > len(order):
            raise ConfigError(
                f"config field {field}={num} is not allowed: class {c} has only "
                f"{len(order)} training examples left, {k} needed for a balanced subset")
    return np.sort(np.concatenate([order[:k] for order, k in zip(orders, per_class)]))


def labeled_subset(labels: np.ndarray, num: int, seed: int) -> np.ndarray:
    """Sorted indices of `num` labeled examples, class-balanced (0 = all examples).

    Every class gets num // C examples and num % C classes, drawn by the seed, one more.
    Each class's examples are taken in the order of one permutation drawn from the seed,
    so with one seed a smaller balanced subset is part of a larger one. Raises ConfigError
    (labels.num) when a class has too few examples.
    """
    labels = np.asarray(labels)
    if num == 0:
        return np.arange(len(labels))
    return _balanced(labels, num, np.random.default_rng(seed), "labels.num")


def validation_subset(labels: np.ndarray, labeled: np.ndarray, num: int, seed: int
                      ) -> np.ndarray:
    """Sorted indices of `num` labeled validation examples, class-balanced, drawn by the
    seed from the training examples outside `labeled` (so they never train a classifier,
    and the labeled subset is the one `labeled_subset` draws without a validation split).
    Model selection and early stopping read them; the test set is never read for that."""
    labels = np.asarray(labels)
    rest = np.setdiff1d(np.arange(len(labels)), labeled)
    if num == 0:
        return rest[:0]
    return rest[_balanced(labels[rest], num, np.random.default_rng([seed, 1]),
                          "labels.num_validation")]


def labeled_and_validation(config: ml_collections.ConfigDict, labels: np.ndarray
                           ) -> tuple[np.ndarray, np.ndarray]:
    """The indices of the labeled training subset (`labels.num`, `labels.seed`) and of the
    labeled validation subset outside it (`labels.num_validation`)."""
    labeled = labeled_subset(labels, config.labels.num, config.labels.seed)
    return labeled, validation_subset(labels, labeled, validation_size(config.labels),
                                      config.labels.seed)


def hold_out(config: ml_collections.ConfigDict, datasets: data_lib.Datasets
             ) -> data_lib.Datasets:
    """Under `labels.hold_out`, the datasets with the labeled validation examples moved from
    the training split to the validation split: a run on them (the pretraining run of
    pretrain, M1 of semisupervised) never trains on those images, and evaluates its
    validation measures on them; `labeled_rows` are the labeled examples' rows in the
    training split left (for the probe, `aevb/regimes/probe.py`). Otherwise (or with no
    validation examples) unchanged."""
    if not config.labels.hold_out or validation_size(config.labels) == 0:
        return datasets
    labeled, held_out = labeled_and_validation(config, datasets.train.labels)
    # the labeled rows, renumbered in the training split without the validation rows
    labeled_rows = labeled - np.searchsorted(held_out, labeled)
    return dataclasses.replace(datasets.move_to_validation(held_out), labeled_rows=labeled_rows)
