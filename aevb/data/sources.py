"""Image data for the autoencoder and VAE experiments: sources, splits, binarization.

Every source delivers a train and a test `Split` of uint8 images [N, H, W, C] with
int32 labels [N]; `load` picks one by ``data.source``, one of `SOURCES`:

* ``idx``: the four IDX files of MNIST, Fashion-MNIST or KMNIST in a local
  directory (Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST to
  `FASHION_MNIST_DEBIAN_DIR`). Read here; needs nothing beyond NumPy.
* ``tfds``: any TFDS image-classification dataset by name, read by the optional
  module `aevb.tfds_data`, which `load` imports only when this source is chosen,
  so importing this module never loads TFDS or TensorFlow.

The types (`Split`, `Datasets`, `DataError`) live in `aevb/data/datasets.py`, which both
sources import. `split_validation` holds out a validation split. Images stay uint8 on the host (a
quarter of the memory of float32); the model side turns them into [0, 1] floats
with `to_unit_interval` and, for Bernoulli decoders, into {0, 1} with `binarize`,
both pure `jax.numpy` so they run inside `jit`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aevb.config.checks import ConfigError
from aevb.data.datasets import FASHION_MNIST_DEBIAN_DIR, DataError, Datasets, Split
from aevb.data.idx import load_idx_dir

if TYPE_CHECKING:
    import ml_collections


# Values of data.source: 'auto' picks one of the two concrete sources (see `load`).
SOURCES = ("auto", "idx", "tfds")


# --- Config-driven loading -------------------------------------------------
def _config_field(config: ml_collections.ConfigDict, field: str) -> Any:
    """config.<field>, or a ValueError naming the missing data.<field>."""
    try:
        return config[field]
    except KeyError as err:
        raise ConfigError(f"config field data.{field} is missing") from err


def _resolve_source(name: str, source: str, directory: str) -> tuple[str, str]:
    """(concrete source, IDX directory) for the configured name/source/dir.

    'auto' means: IDX from data.dir when set; else Fashion-MNIST from the Debian
    directory when that is installed; else TFDS.
    """
    if source not in SOURCES:
        raise ConfigError(f"config field data.source={source!r} is not allowed: must be one "
                          f"of {', '.join(map(repr, SOURCES))}")
    debian_available = name == "fashion_mnist" and Path(FASHION_MNIST_DEBIAN_DIR).is_dir()
    if source == "auto":
        if directory:
            return "idx", directory
        if debian_available:
            return "idx", FASHION_MNIST_DEBIAN_DIR
        return "tfds", ""
    if source == "idx" and not directory:
        if name != "fashion_mnist":
            raise DataError(
                f"data.source='idx' with data.name={name!r} needs data.dir: set "
                "--config.data.dir to a directory with the four IDX .gz files"
            )
        return "idx", FASHION_MNIST_DEBIAN_DIR
    return source, directory


def load(config: ml_collections.ConfigDict) -> Datasets:
    """Loads the datasets described by the `data` section of an experiment config.

    Reads data.name, data.source ('auto' | 'idx' | 'tfds'), data.dir,
    data.tfds_data_dir, data.num_validation and data.seed; see `_resolve_source`
    for what 'auto' picks and `split_validation` for how validation is held out.

    Raises:
      ConfigError: a field is missing or has a value outside its allowed values.
      TypeError: data.num_validation is not an int.
      DataError: the data cannot be found or read; the message says what to do.
    """
    name = str(_config_field(config, "name"))
    directory = os.path.expanduser(str(_config_field(config, "dir") or ""))
    source, directory = _resolve_source(name, str(_config_field(config, "source")), directory)
    num_validation = _config_field(config, "num_validation")
    seed = _config_field(config, "seed")
    if source == "idx":
        train, test = load_idx_dir(directory)
    else:
        from aevb.data import tfds as tfds_data

        tfds_data_dir = os.path.expanduser(str(_config_field(config, "tfds_data_dir") or ""))
        train, test = tfds_data.load_tfds(name, tfds_data_dir or None)
    train, validation = split_validation(train, num_validation, seed)
    return Datasets(name=name, train=train, validation=validation, test=test)


def split_validation(train: Split, num_validation: int, seed: int) -> tuple[Split, Split | None]:
    """Holds out `num_validation` examples of `train` for validation.

    The held-out examples are the last `num_validation` of a permutation drawn
    from `seed`, so the split is the same on every run with the same seed. Both
    parts keep the original example order.

    Returns:
      (remaining train, validation), or (train, None) when num_validation is 0.

    Raises:
      TypeError: data.num_validation is not an int.
      ConfigError: data.num_validation is negative or leaves no training examples.
    """
    if isinstance(num_validation, bool) or not isinstance(num_validation, (int, np.integer)):
        raise TypeError(f"data.num_validation must be an int, got {num_validation!r}")
    if not 0 <= num_validation < len(train):
        raise ConfigError(
            f"config field data.num_validation={num_validation} is not allowed: must be >= 0 "
            f"and less than the {len(train)} training examples")
    if num_validation == 0:
        return train, None
    order = np.random.default_rng(seed).permutation(len(train))
    cut = len(train) - num_validation
    parts = (np.sort(order[:cut]), np.sort(order[cut:]))
    kept, held_out = (Split(images=train.images[i], labels=train.labels[i]) for i in parts)
    return kept, held_out
