"""Image data for the autoencoder and VAE experiments: sources, splits, binarization.

Every source delivers a train and a test `Split` of uint8 images [N, H, W, C] with
int32 labels [N]; `load` picks one by ``data.source``, one of `SOURCES`:

* ``idx``: the four IDX files of MNIST, Fashion-MNIST or KMNIST in a local
  directory (Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST to
  `FASHION_MNIST_DEBIAN_DIR`). Read here; needs nothing beyond NumPy.
* ``tfds``: any TFDS image-classification dataset by name, read by the optional
  module `aevb.tfds_data`, which `load` imports only when this source is chosen,
  so importing this module never loads TFDS or TensorFlow.

The types (`Split`, `Datasets`, `DataError`) live in `aevb/datasets.py`, which both
sources import. `split_validation` holds out a validation split. Images stay uint8 on the host (a
quarter of the memory of float32); the model side turns them into [0, 1] floats
with `to_unit_interval` and, for Bernoulli decoders, into {0, 1} with `binarize`,
both pure `jax.numpy` so they run inside `jit`.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from aevb.checks import ConfigError
from aevb.datasets import FASHION_MNIST_DEBIAN_DIR, Datasets, DataError, Split

if TYPE_CHECKING:
    import ml_collections

# Values of data.source: 'auto' picks one of the two concrete sources (see `load`).
SOURCES = ("auto", "idx", "tfds")
BINARIZATIONS = ("dynamic", "static", "none", "dequantize")

# IDX magic numbers: two zero bytes, type code 0x08 (unsigned byte), number of dimensions.
_IDX_MAGIC_IMAGES = 0x00000803
_IDX_MAGIC_LABELS = 0x00000801
_IDX_NDIM = {_IDX_MAGIC_IMAGES: 3, _IDX_MAGIC_LABELS: 1}
_GZIP_MAGIC = b"\x1f\x8b"

# The four files of the MNIST family, by role. Each may be gzipped or raw, and
# some mirrors write "train-images.idx3-ubyte" with a dot.
_IDX_STEMS = {
    "train_images": ("train-images", "idx3-ubyte"),
    "train_labels": ("train-labels", "idx1-ubyte"),
    "test_images": ("t10k-images", "idx3-ubyte"),
    "test_labels": ("t10k-labels", "idx1-ubyte"),
}




# --- IDX files -------------------------------------------------------------
def _read_file_bytes(path: Path) -> bytes:
    """Whole content of `path`, gunzipped when it starts with the gzip magic.

    Sniffing the magic instead of trusting the '.gz' suffix accepts files that
    were decompressed but kept their name, and vice versa.
    """
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from err
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"IDX file {path} is a corrupt or truncated gzip stream ({err}); download it again"
        ) from err


def _parse_idx_header(path: Path, data: bytes) -> tuple[int, ...]:
    """Dimensions from the big-endian IDX header of `data`, after checking its magic."""
    if len(data) < 4:
        raise DataError(
            f"IDX file {path} is truncated: expected at least 4 header bytes, got {len(data)}"
        )
    (magic,) = struct.unpack(">I", data[:4])
    if magic not in _IDX_NDIM:
        raise DataError(
            f"IDX file {path} has bad magic number 0x{magic:08x}; expected "
            f"0x{_IDX_MAGIC_IMAGES:08x} (uint8 images, 3-D) or "
            f"0x{_IDX_MAGIC_LABELS:08x} (uint8 labels, 1-D)"
        )
    ndim = _IDX_NDIM[magic]
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"IDX file {path} is truncated: expected {header_size} header bytes, got {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_size])
    if 0 in dims:
        raise DataError(f"IDX file {path} declares an empty dimension: {list(dims)}")
    return dims


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Reads one IDX file (gzipped or raw) of the MNIST family.

    Accepts the two layouts these datasets use: magic 0x00000803, uint8 images
    [N, H, W], and magic 0x00000801, uint8 labels [N]. The payload must hold
    exactly prod(dims) bytes, so a truncated download is reported instead of
    silently yielding fewer examples.

    Returns:
      uint8 array of the declared shape ([N, H, W] or [N]).

    Raises:
      DataError: naming the file and what is wrong (unreadable, bad magic,
        truncated header or payload, trailing bytes, corrupt gzip).
    """
    path = Path(path)
    data = _read_file_bytes(path)
    dims = _parse_idx_header(path, data)
    header_size = 4 + 4 * len(dims)
    expected = math.prod(dims)
    got = len(data) - header_size
    if got < expected:
        raise DataError(
            f"IDX file {path} is truncated: dims {list(dims)} need {expected} bytes "
            f"of data after the header, got {got}; download it again"
        )
    if got > expected:
        raise DataError(
            f"IDX file {path} has the wrong size: dims {list(dims)} need exactly "
            f"{expected} bytes of data after the header, got {got}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims).copy()


def _find_idx_files(directory: Path) -> dict[str, Path]:
    """Path of each of the four standard files in `directory`, by role."""
    if not directory.is_dir():
        raise DataError(
            f"IDX directory {directory} does not exist or is not a directory; point "
            "--config.data.dir at a directory holding train-images-idx3-ubyte.gz, "
            "train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
            "t10k-labels-idx1-ubyte.gz"
        )
    found, missing = {}, []
    for role, (stem, kind) in _IDX_STEMS.items():
        candidates = [f"{stem}{sep}{kind}{gz}" for sep in "-." for gz in (".gz", "")]
        path = next((directory / c for c in candidates if (directory / c).is_file()), None)
        if path is None:
            missing.append(f"{candidates[0]} (or {candidates[1]})")
        else:
            found[role] = path
    if missing:
        raise DataError(f"missing IDX file(s) in {directory}: {', '.join(missing)}")
    return found


def _idx_split(images_path: Path, labels_path: Path) -> Split:
    """One Split from an images file [N, H, W] and a labels file [N]."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3:
        raise DataError(f"{images_path} holds a 1-D array, expected 3-D images [N, H, W]")
    if labels.ndim != 1:
        raise DataError(f"{labels_path} holds a 3-D array, expected 1-D labels [N]")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels"
        )
    return Split(images=images[..., np.newaxis], labels=labels.astype(np.int32))


def load_idx_dir(directory: str | os.PathLike[str]) -> tuple[Split, Split]:
    """Loads (train, test) from the four standard IDX files in `directory`.

    Files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each with or
    without ``.gz`` (MNIST, Fashion-MNIST and KMNIST all use these names).

    Returns:
      (train, test), images uint8 [N, H, W, 1], labels int32 [N].

    Raises:
      DataError: a file is missing (all missing ones are named, with the
        directory), unreadable or malformed, or the counts disagree.
    """
    directory = Path(directory)
    files = _find_idx_files(directory)
    train = _idx_split(files["train_images"], files["train_labels"])
    test = _idx_split(files["test_images"], files["test_labels"])
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"train images in {directory} are {list(train.images.shape[1:])} but test "
            f"images are {list(test.images.shape[1:])}"
        )
    return train, test


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
        from aevb import tfds_data  # optional, so imported only when this source is chosen

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


# --- On-device preprocessing -----------------------------------------------
def to_unit_interval(images_u8: jax.Array) -> jax.Array:
    """uint8 pixels 0..255 (any shape) as float32 in [0, 1], same shape."""
    images_u8 = jnp.asarray(images_u8)
    if images_u8.dtype != jnp.uint8:
        raise TypeError(f"to_unit_interval expects uint8 pixels, got {images_u8.dtype}")
    return images_u8.astype(jnp.float32) / 255.0


def binarize(x: jax.Array, mode: str, key: jax.Array | None) -> jax.Array:
    """Turns grey levels x in [0, 1] (any shape) into Bernoulli-decoder targets.

    Modes:
      'dynamic': a fresh Bernoulli(x) sample per call, as float32 0/1; `key` is
        required. Resampling every step (Salakhutdinov & Murray 2008) acts as a
        regulariser and is the usual VAE setup on grey-level MNIST-like data.
      'static': the fixed threshold x > 0.5, as float32 0/1.
      'none': x unchanged (continuous targets).
      'dequantize': not binarized but dequantized: the grey level g = 255 x becomes
        (g + u) / 256 with a fresh u ~ U[0, 1) per pixel and call (`key` required), so the
        data have a density on [0, 1)^D and a continuous model's nats are a bound on the
        discrete data's (Theis et al. 2016); bits per dimension follow from them
        (`bits_per_dim`).

    Pure jax.numpy, so it works inside `jit` and `lax.scan` (mode is static).

    Raises:
      ValueError: `mode` is not one of BINARIZATIONS, or 'dynamic' without a key.
    """
    if mode not in BINARIZATIONS:
        raise ValueError(
            f"binarization mode {mode!r} is not one of {', '.join(map(repr, BINARIZATIONS))}"
        )
    if mode == "none":
        return x
    if mode == "static":
        return (x > 0.5).astype(jnp.float32)
    if key is None:
        raise ValueError(f"binarization mode {mode!r} needs a PRNG key, got key=None")
    if mode == "dequantize":
        grey = jnp.round(x * 255.0)
        return (grey + jax.random.uniform(key, x.shape, jnp.float32)) / 256.0
    return jax.random.bernoulli(key, x).astype(jnp.float32)


def bits_per_dim(log_likelihood: float, num_dims: int) -> float:
    """Bits per dimension of the 8-bit data from a log-likelihood (nats) of dequantized
    inputs in [0, 1)^D: -(log p - D log 256) / (D log 2). The density of (g + u) / 256 is
    256^D times the density of g + u, whose integral over each unit cube bounds the
    probability of the grey levels g."""
    return -(log_likelihood - num_dims * math.log(256.0)) / (num_dims * math.log(2.0))
