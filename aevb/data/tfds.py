"""Image-classification datasets from TensorFlow Datasets (TFDS), by name.

This is the ``tfds`` source of `aevb.data.load`, kept in its own module so that
TFDS stays optional: `aevb.data` imports this module only when ``data.source``
resolves to ``tfds``, and this module imports ``tensorflow_datasets`` only inside
`load_tfds`. Importing `aevb.data` (and so training from IDX files) therefore
never pays for TFDS or TensorFlow, and works where neither is installed.

`load_tfds` returns the same (train, test) pair of `aevb.data.Split` as the IDX
reader. A dataset already prepared in the ``array_record`` format is read
through TFDS's data source API, which needs no TensorFlow; preparing
(downloading) a dataset does need TensorFlow.

Without a network TFDS retries a download for minutes or hangs, so before asking
it to download anything `load_tfds` checks that TensorFlow is installed and
probes the download host with a short timeout (`host_reachable`). Either failing
raises a `DataError` at once, with the offline ways to get the data: the Debian
Fashion-MNIST package, a directory of IDX files, or a dataset prepared elsewhere
with ``tfds build``.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from aevb.data.datasets import FASHION_MNIST_DEBIAN_DIR, DataError, Split

# Where TFDS's MNIST-family downloads (and its GCS metadata) live; used as the
# probe target when a dataset builder does not name its download URL.
_DEFAULT_DOWNLOAD_URL = "https://storage.googleapis.com/"
_DEFAULT_PORTS = {"http": 80, "https": 443}

# Rows decoded per batch when reading a TFDS data source, to bound the list of
# per-example dicts held at once.
_TFDS_READ_CHUNK = 10_000

_TFDS_INSTALL_HINT = "pip install -e '.[tfds]'"


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

