"""Image data for the autoencoder and VAE experiments.

Two sources deliver the same thing, a train and a test `Split` of uint8 images
[N, H, W, C] with int32 labels [N]:

* ``idx``: the four IDX files of MNIST, Fashion-MNIST or KMNIST in a local
  directory (Debian's ``dataset-fashion-mnist`` package installs Fashion-MNIST to
  `FASHION_MNIST_DEBIAN_DIR`). Needs nothing beyond NumPy.
* ``tfds``: any TFDS image-classification dataset by name. TFDS is imported only
  when this source is used, so that the rest of the project never pays for it.
  Reading a dataset prepared in the ``array_record`` format needs no TensorFlow;
  preparing (downloading) one does.

Without a network TFDS retries a download for minutes or hangs, so before asking
it to download anything `load_tfds` probes the download host with a short timeout
and fails fast with a `DataError` that lists the offline ways to get the data.

Images stay uint8 on the host (a quarter of the memory of float32); the model side
turns them into [0, 1] floats with `to_unit_interval` and, for Bernoulli decoders,
into {0, 1} with `binarize`, both pure `jax.numpy` so they run inside `jit`.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import math
import os
import socket
import struct
import threading
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    import ml_collections

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
SOURCES = ("idx", "tfds")
BINARIZATIONS = ("dynamic", "static", "none")

# `source` values accepted by `load`: the concrete sources plus the resolver.
_CONFIG_SOURCES = ("auto", *SOURCES)

# IDX magic numbers: two zero bytes, a type code (0x08 = unsigned byte) and the
# number of dimensions.
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

# Where TFDS's MNIST-family downloads (and its GCS metadata) live; used as the
# probe target when a dataset builder does not name its download URL.
_DEFAULT_DOWNLOAD_URL = "https://storage.googleapis.com/"
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Rows decoded per batch when reading a TFDS data source, to bound the list of
# per-example dicts held at once.
_TFDS_READ_CHUNK = 10_000

_TFDS_INSTALL_HINT = "pip install -e '.[tfds]'"


class DataError(Exception):
    """Data cannot be loaded; message says what to do."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a labelled image dataset, kept as compact host arrays.

    Attributes:
      images: uint8 [N, H, W, C], raw pixel values 0..255.
      labels: int32 [N], class indices.
    """

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                "Split.images must be uint8 [N, H, W, C], got "
                f"{self.images.dtype} {list(self.images.shape)}"
            )
        if self.labels.dtype != np.int32 or self.labels.ndim != 1:
            raise ValueError(
                f"Split.labels must be int32 [N], got {self.labels.dtype} {list(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"Split has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Everything an experiment trains and evaluates on.

    Attributes:
      name: dataset name as configured (e.g. 'fashion_mnist').
      train: examples to fit on.
      validation: held-out part of the original train split for model selection,
        or None when `data.num_validation` is 0.
      test: the dataset's official test split.
    """

    name: str
    train: Split
    validation: Split | None
    test: Split

    def __post_init__(self) -> None:
        for split_name, split in self._named_splits():
            if split.images.shape[1:] != self.image_shape:
                raise ValueError(
                    f"Datasets.{split_name} images are {list(split.images.shape[1:])} "
                    f"but train images are {list(self.image_shape)}"
                )

    def _named_splits(self) -> Iterator[tuple[str, Split]]:
        yield "test", self.test
        if self.validation is not None:
            yield "validation", self.validation

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        height, width, channels = self.train.images.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_pixels(self) -> int:
        """H * W * C: the length of a flattened image, i.e. the data dimension D."""
        return math.prod(self.image_shape)


# ---------------------------------------------------------------------------
# IDX files
# ---------------------------------------------------------------------------


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


def _idx_candidates(stem: str, kind: str) -> tuple[str, ...]:
    """File names that may hold one of the four files, most common first."""
    bases = (f"{stem}-{kind}", f"{stem}.{kind}")
    return tuple(f"{base}{suffix}" for base in bases for suffix in (".gz", ""))


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
        candidates = _idx_candidates(stem, kind)
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


# ---------------------------------------------------------------------------
# TFDS
# ---------------------------------------------------------------------------


def host_reachable(host: str, port: int, timeout_s: float) -> bool:
    """Whether a TCP connection to host:port opens within `timeout_s` seconds.

    The attempt runs in a daemon thread joined with a timeout because a DNS
    lookup can block far longer than any socket timeout; an abandoned attempt
    finishes (or not) in the background without holding up the caller.
    """
    outcome: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    thread = threading.Thread(target=attempt, name=f"aevb-probe-{host}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return bool(outcome) and outcome[0]


def _download_address(builder_cls: type) -> tuple[str, int]:
    """(host, port) a download of `builder_cls` would connect to first.

    That is the dataset's URL host (MNIST-family builders name it in `URL`),
    or TFDS's storage host otherwise, or the configured HTTP(S) proxy when the
    environment sets one for that host.
    """
    url = getattr(builder_cls, "URL", None)
    parsed = urllib.parse.urlsplit(url if isinstance(url, str) else _DEFAULT_DOWNLOAD_URL)
    if not parsed.hostname:
        parsed = urllib.parse.urlsplit(_DEFAULT_DOWNLOAD_URL)
    proxy = urllib.request.getproxies().get(parsed.scheme)
    if proxy and not urllib.request.proxy_bypass_environment(parsed.hostname):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 443)
    return parsed.hostname or "", port


def _offline_ways(name: str) -> str:
    """The ways to get `name` without this process downloading it."""
    ways = [
        (
            "Fashion-MNIST from Debian, no network or TFDS needed: "
            "`apt-get install dataset-fashion-mnist`, then run with "
            f"--config.data.name=fashion_mnist (read from {FASHION_MNIST_DEBIAN_DIR})."
        ),
        (
            "IDX files: put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
            "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz in a directory "
            "and pass --config.data.dir=DIR."
        ),
        (
            "A prepared TFDS dataset: on a machine with network and TensorFlow run "
            f"`tfds build {name} --data_dir=DIR --file_format=array_record`, copy DIR "
            "here and pass --config.data.tfds_data_dir=DIR (array_record data is read "
            "without TensorFlow)."
        ),
    ]
    return "Ways to get the data:\n" + "\n".join(f"  * {way}" for way in ways)


def _import_tfds() -> Any:
    """The `tensorflow_datasets` module, or a DataError saying how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise DataError(
            f"data.source='tfds' needs tensorflow-datasets, which failed to import "
            f"({err}); install it with `{_TFDS_INSTALL_HINT}`, or use data.source='idx'"
        ) from err
    return tfds


def _tensorflow_installed() -> bool:
    """Whether TensorFlow can be imported (TFDS needs it to prepare datasets)."""
    return importlib.util.find_spec("tensorflow") is not None


def _make_builder(tfds: Any, name: str, data_dir: str | None) -> Any:
    """The TFDS builder for `name`; unknown names are reported as data.name errors."""
    try:
        return tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as err:
        where = f" nor prepared in {data_dir}" if data_dir else ""
        raise DataError(
            f"data.name={name!r} is not a TFDS dataset{where}; set --config.data.name "
            "to a TFDS image-classification dataset such as 'mnist', 'fashion_mnist' "
            "or 'kmnist' (see https://www.tensorflow.org/datasets/catalog)"
        ) from err


def _check_can_prepare(name: str, builder: Any, network_timeout_s: float) -> None:
    """Raises DataError unless TFDS can download and prepare `builder` here.

    Preparing needs TensorFlow (TFDS encodes images with it) and the download
    host; both are checked up front so that an offline machine fails within
    `network_timeout_s` instead of waiting out TFDS's retries.
    """
    problem = f"TFDS dataset {name!r} is not prepared in {builder.data_dir}"
    if not _tensorflow_installed():
        raise DataError(
            f"{problem}, and preparing it needs TensorFlow, which is not installed "
            f"(`{_TFDS_INSTALL_HINT}` installs it).\n{_offline_ways(name)}"
        )
    host, port = _download_address(type(builder))
    if not host_reachable(host, port, network_timeout_s):
        raise DataError(
            f"{problem}, and its download host {host}:{port} is not reachable within "
            f"{network_timeout_s:g} s (no network?).\n{_offline_ways(name)}"
        )


def _open_data_source(builder: Any, split: str) -> Any | None:
    """TFDS's random-access reader for `split` (no TensorFlow needed), or None.

    None means the dataset is not stored in a random-access format such as
    array_record (TFDS raises NotImplementedError or ValueError for that).
    """
    try:
        return builder.as_data_source(split=split)
    except (NotImplementedError, ValueError):
        return None


def _iter_data_source(source: Any) -> Iterator[dict[str, Any]]:
    """Every example of a TFDS data source, read in chunks of _TFDS_READ_CHUNK.

    Batched reads (`__getitems__`) are about 4x faster than one key at a time,
    but the data source that `tfds.testing.mock_data` installs in TFDS 4.9.10
    has a broken `__getitems__` (TypeError); reading falls back to `source[i]`
    then, which re-raises any error that was not about batching.
    """
    size = len(source)
    batched = True
    for start in range(0, size, _TFDS_READ_CHUNK):
        keys = list(range(start, min(start + _TFDS_READ_CHUNK, size)))
        if batched:
            try:
                batch = source.__getitems__(keys)
            except TypeError:
                batched = False
            else:
                yield from batch
                continue
        yield from (source[key] for key in keys)


def _read_with_tensorflow(tfds: Any, builder: Any, name: str, split: str) -> dict[str, Any]:
    """All of `split` as one batch of numpy arrays through tf.data (needs TensorFlow)."""
    if not _tensorflow_installed():
        file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
        raise DataError(
            f"TFDS dataset {name!r} in {builder.data_dir} is stored as "
            f"{file_format}, which only TensorFlow can read; install it "
            f"with `{_TFDS_INSTALL_HINT}`, or prepare the dataset again with "
            f"`tfds build {name} --data_dir=DIR --file_format=array_record`, which "
            "is read without TensorFlow"
        )
    return tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))


def _feature_keys(builder: Any) -> tuple[str, str]:
    """(image key, label key) of the builder's examples."""
    keys = builder.info.supervised_keys
    if isinstance(keys, Sequence) and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        return keys[0], keys[1]
    return "image", "label"


def _to_split(name: str, split: str, images: Any, labels: Any) -> Split:
    """Split from TFDS images [N, H, W, C] (or [N, H, W]) and integer labels [N]."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.dtype != np.uint8 or images.ndim != 4:
        raise DataError(
            f"TFDS dataset {name!r} split {split!r} has {images.dtype} images of shape "
            f"{list(images.shape)}; expected uint8 [N, H, W, C] (an image "
            "classification dataset)"
        )
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(
            f"TFDS dataset {name!r} split {split!r} has {labels.dtype} labels of shape "
            f"{list(labels.shape)}; expected integer class labels [N]"
        )
    return Split(images=images, labels=labels.astype(np.int32))


def _read_split(tfds: Any, builder: Any, name: str, split: str) -> Split:
    """One whole split of a prepared (or mocked) builder as a Split."""
    image_key, label_key = _feature_keys(builder)
    source = _open_data_source(builder, split)
    if source is None:
        batch = _read_with_tensorflow(tfds, builder, name, split)
        return _to_split(name, split, batch[image_key], batch[label_key])
    examples = list(_iter_data_source(source))
    if not examples:
        raise DataError(f"TFDS dataset {name!r} split {split!r} is empty")
    images = np.stack([np.asarray(ex[image_key]) for ex in examples])
    labels = np.array([ex[label_key] for ex in examples])
    return _to_split(name, split, images, labels)


def _check_splits(builder: Any, name: str) -> None:
    """Raises DataError when a prepared dataset lacks a 'train' or 'test' split."""
    available = set(builder.info.splits)
    missing = {"train", "test"} - available
    if available and missing:
        raise DataError(
            f"TFDS dataset {name!r} has splits {sorted(available)}, but 'train' and "
            f"'test' are needed; choose another data.name"
        )


def load_tfds(
    name: str,
    data_dir: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    network_timeout_s: float = 5.0,
) -> tuple[Split, Split]:
    """Loads (train, test) of the TFDS image-classification dataset `name`.

    A dataset already prepared in `data_dir` (TFDS's default directory when None)
    is read directly: through TFDS's data source API when it is stored as
    array_record (no TensorFlow needed), else through tf.data. Otherwise, when
    `download` is true, it is downloaded and prepared as array_record, but only
    after checking that TensorFlow is installed and the download host answers
    within `network_timeout_s`, so an offline run fails in seconds, not minutes.

    Returns:
      (train, test), images uint8 [N, H, W, C], labels int32 [N].

    Raises:
      DataError: TFDS is missing, `name` is unknown (reported as data.name), the
        dataset is not prepared and cannot be downloaded here (the message lists
        the offline alternatives), or its features are not images and labels.
    """
    tfds = _import_tfds()
    data_dir = os.fspath(data_dir) if data_dir else None
    builder = _make_builder(tfds, name, data_dir)
    if not builder.is_prepared():
        if not download:
            raise DataError(
                f"TFDS dataset {name!r} is not prepared in {builder.data_dir} and "
                f"download=False.\n{_offline_ways(name)}"
            )
        _check_can_prepare(name, builder, network_timeout_s)
        builder.download_and_prepare(file_format="array_record")
    _check_splits(builder, name)
    return _read_split(tfds, builder, name, "train"), _read_split(tfds, builder, name, "test")


# ---------------------------------------------------------------------------
# Config-driven loading
# ---------------------------------------------------------------------------


def _config_field(config: ml_collections.ConfigDict, field: str) -> Any:
    """config.<field>, or a ValueError naming the missing data.<field>."""
    try:
        return config[field]
    except KeyError as err:
        raise ValueError(f"data config has no field data.{field}") from err


def _resolve_source(name: str, source: str, directory: str) -> tuple[str, str]:
    """(concrete source, IDX directory) for the configured name/source/dir.

    'auto' means: IDX from data.dir when set; else Fashion-MNIST from the Debian
    directory when that is installed; else TFDS.
    """
    if source not in _CONFIG_SOURCES:
        raise ValueError(
            f"data.source={source!r} is not one of {', '.join(map(repr, _CONFIG_SOURCES))}"
        )
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
      ValueError: a field is missing or has a value outside its allowed values.
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
        tfds_data_dir = os.path.expanduser(str(_config_field(config, "tfds_data_dir") or ""))
        train, test = load_tfds(name, tfds_data_dir or None)
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
      ValueError: data.num_validation is negative or leaves no training examples.
    """
    if isinstance(num_validation, bool) or not isinstance(num_validation, (int, np.integer)):
        raise TypeError(f"data.num_validation must be an int, got {num_validation!r}")
    if not 0 <= num_validation < len(train):
        raise ValueError(
            f"data.num_validation={num_validation} must be >= 0 and less than the "
            f"{len(train)} training examples"
        )
    if num_validation == 0:
        return train, None
    order = np.random.default_rng(seed).permutation(len(train))
    keep = np.sort(order[: len(train) - num_validation])
    held_out = np.sort(order[len(train) - num_validation :])
    return _take(train, keep), _take(train, held_out)


def _take(split: Split, indices: np.ndarray) -> Split:
    """The examples of `split` at `indices` [K], as a new Split."""
    return Split(images=split.images[indices], labels=split.labels[indices])


# ---------------------------------------------------------------------------
# On-device preprocessing
# ---------------------------------------------------------------------------


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
        raise ValueError("binarization mode 'dynamic' needs a PRNG key, got key=None")
    return jax.random.bernoulli(key, x).astype(jnp.float32)
