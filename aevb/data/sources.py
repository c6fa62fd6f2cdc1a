"""Image data for the autoencoder and VAE experiments: sources and splits.

Every source delivers a train and a test `Split` of uint8 images [N, H, W, C] with int32
labels [N] (or none); `load` picks one by ``data.source``, one of `SOURCES`:

* ``idx``: the four IDX files of MNIST, Fashion-MNIST or KMNIST in ``data.dir`` (Debian's
  ``dataset-fashion-mnist`` package installs Fashion-MNIST to `FASHION_MNIST_DEBIAN_DIR`,
  the default). `aevb/data/idx.py`.
* ``npz``: your arrays, ``data.path`` an ``.npz`` file (or a directory of one per split).
  `aevb/data/arrays.py`.
* ``folder``: your image files, ``data.path`` a directory, class sub-folders as labels.
  `aevb/data/folder.py`.
* ``tfds``: any TFDS image-classification dataset by name, read by the optional module
  `aevb/data/tfds.py`, imported only when this source is chosen, so importing this module
  never loads TFDS or TensorFlow.

A source without a test split (an ``.npz`` without ``x_test``, a folder without ``test/``)
gets one held out by ``data.test_fraction``; `split_validation` then holds out a validation
split. The content hash of what the source delivered (`Datasets.fingerprint`) is what a
resumed run compares with its workdir's record.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from aevb.config.checks import ConfigError
from aevb.data.arrays import load_npz
from aevb.data.datasets import FASHION_MNIST_DEBIAN_DIR, DataError, Datasets, Split, fingerprint
from aevb.data.folder import load_folder
from aevb.data.idx import load_idx_dir

if TYPE_CHECKING:
    import ml_collections


# Values of data.source: 'auto' picks one of the concrete sources (see `_resolve_source`).
SOURCES = ("auto", "idx", "tfds", "npz", "folder")
# The sources that read data.path (the others read data.dir or a TFDS name).
PATH_SOURCES = ("npz", "folder")
# The test images a source without a test split gets do not depend on data.seed: every
# run on the same data tests on the same images.
_TEST_HOLD_OUT_SEED = 2014


# --- Config-driven loading -------------------------------------------------
def _config_field(config: ml_collections.ConfigDict, field: str) -> Any:
    """config.<field>, or a ValueError naming the missing data.<field>."""
    try:
        return config[field]
    except KeyError as err:
        raise ConfigError(f"config field data.{field} is missing") from err


def _resolve_path_source(source: str, directory: str, path: str) -> tuple[str, str] | None:
    """(npz | folder, data.path) when data.path is to be read, else None.

    'auto' with data.path: an `.npz` file, or a directory holding `train.npz`, is 'npz'; any
    other directory (or a path without the `.npz` suffix) is 'folder'."""
    if path and directory:
        raise ConfigError(f"config fields data.dir={directory!r} and data.path={path!r} are "
                          "both set: data.dir is a directory of IDX files, data.path an .npz "
                          "file or an image folder; set one")
    if source in PATH_SOURCES and not path:
        raise ConfigError(f"config field data.path is empty: data.source={source!r} reads "
                          "data.path (an .npz file, or a folder of images)")
    if path and source not in ("auto", *PATH_SOURCES):
        raise ConfigError(f"config field data.path={path!r} is read only by data.source "
                          f"'npz' or 'folder' (or 'auto'), not {source!r}")
    if not path:
        return None
    if source == "auto":
        is_npz = (Path(path).suffix == ".npz" and not Path(path).is_dir()) or (
            Path(path, "train.npz").is_file())
        source = "npz" if is_npz else "folder"
    return source, path


def _resolve_source(name: str, source: str, directory: str, path: str = "") -> tuple[str, str]:
    """(concrete source, where it reads) for the configured name/source/dir/path.

    'auto' means: data.path when set (`_resolve_path_source`); else IDX from data.dir when
    set; else Fashion-MNIST from the Debian directory when that is installed; else TFDS.
    """
    if source not in SOURCES:
        raise ConfigError(f"config field data.source={source!r} is not allowed: must be one "
                          f"of {', '.join(map(repr, SOURCES))}")
    by_path = _resolve_path_source(source, directory, path)
    if by_path is not None:
        return by_path
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


def _read_source(config: ml_collections.ConfigDict, name: str, source: str, where: str
                 ) -> tuple[Split, Split | None]:
    """(train, test or None) as the concrete `source` delivers them from `where`."""
    if source == "idx":
        return load_idx_dir(where)
    if source == "npz":
        return load_npz(where)
    if source == "folder":
        return load_folder(where)
    from aevb.data import tfds as tfds_data

    tfds_data_dir = os.path.expanduser(str(_config_field(config, "tfds_data_dir") or ""))
    return tfds_data.load_tfds(name, tfds_data_dir or None)


def load(config: ml_collections.ConfigDict) -> Datasets:
    """Loads the datasets described by the `data` section of an experiment config.

    Reads data.name, data.source (one of `SOURCES`), data.dir, data.path,
    data.tfds_data_dir, data.test_fraction, data.num_validation and data.seed; see
    `_resolve_source` for what 'auto' picks, `hold_out_test` for a source without a test
    split and `split_validation` for how validation is held out. The datasets' name is
    data.name, or the file's or folder's name for the `PATH_SOURCES`.

    Raises:
      ConfigError: a field is missing or has a value outside its allowed values.
      TypeError: data.num_validation is not an int.
      DataError: the data cannot be found or read; the message says what to do.
    """
    name = str(_config_field(config, "name"))
    directory = os.path.expanduser(str(_config_field(config, "dir") or ""))
    path = os.path.expanduser(str(_config_field(config, "path") or ""))
    source, where = _resolve_source(name, str(_config_field(config, "source")), directory,
                                    path)
    num_validation = _config_field(config, "num_validation")
    seed = _config_field(config, "seed")
    train, test = _read_source(config, name, source, where)
    content = fingerprint(train) if test is None else fingerprint(train, test)
    if source in PATH_SOURCES:
        name = Path(where).stem or name
    if test is None:
        train, test = hold_out_test(train, _config_field(config, "test_fraction"))
    train, validation = split_validation(train, num_validation, seed)
    return Datasets(name=name, train=train, validation=validation, test=test,
                    fingerprint=content)


def _hold_out(split: Split, num: int, rng: np.random.Generator) -> tuple[Split, Split]:
    """(the rest, the last `num` examples of a permutation drawn from `rng`), each in the
    original example order."""
    order = rng.permutation(len(split))
    cut = len(split) - num
    return split.take(np.sort(order[:cut])), split.take(np.sort(order[cut:]))


def hold_out_test(train: Split, fraction: float) -> tuple[Split, Split]:
    """(train, test) for a source without a test split: round(fraction * N) examples,
    the same ones on every run (a fixed seed, not data.seed).

    Raises:
      ConfigError: data.test_fraction leaves no test or no training example.
    """
    num_test = round(fraction * len(train)) if isinstance(fraction, (int, float)) else -1
    if isinstance(fraction, bool) or not 0 < num_test < len(train):
        raise ConfigError(
            f"config field data.test_fraction={fraction!r} is not allowed: the data have no "
            f"test split, and it must hold out between 1 and {len(train) - 1} of the "
            f"{len(train)} images for test")
    return _hold_out(train, num_test, np.random.default_rng(_TEST_HOLD_OUT_SEED))


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
    return _hold_out(train, num_validation, np.random.default_rng(seed))
