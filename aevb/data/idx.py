"""The four standard IDX files (MNIST, Fashion-MNIST, KMNIST): reading and checking them.

`load_idx_dir` decodes them once and keeps the arrays in ``$AEVB_CACHE_DIR/idx``
(`aevb/data/cache.py`): gunzipping Fashion-MNIST took 0.3 s of every run's start-up.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from aevb.data import cache
from aevb.data.datasets import DataError, Split

# Bumped when reading changes, so that old cache entries are not read.
_READER_VERSION = b"aevb-idx-1"

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
def _gunzipped(path: Path, raw: bytes) -> bytes:
    """The content `raw` of `path`, gunzipped when it starts with the gzip magic.

    Sniffing the magic instead of trusting the '.gz' suffix accepts files that
    were decompressed but kept their name, and vice versa.
    """
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
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read IDX file {path}: {err}") from err
    return _unpack(path, raw)


def _unpack(path: Path, raw: bytes) -> np.ndarray:
    """`read_idx` of the content `raw` of `path`."""
    data = _gunzipped(path, raw)
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


def _idx_split(arrays: dict[str, np.ndarray], files: dict[str, Path], split: str) -> Split:
    """One Split from its images file [N, H, W] and its labels file [N]."""
    images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
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
    roles = list(files)

    def decode(contents: list[bytes]) -> dict[str, np.ndarray]:
        return {role: _unpack(files[role], raw) for role, raw in zip(roles, contents)}

    arrays = cache.decoded("idx", _READER_VERSION, directory,
                           [str(files[role]) for role in roles], decode, "IDX file")
    train, test = (_idx_split(arrays, files, split) for split in ("train", "test"))
    if train.images.shape[1:] != test.images.shape[1:]:
        raise DataError(
            f"train images in {directory} are {list(train.images.shape[1:])} but test "
            f"images are {list(test.images.shape[1:])}"
        )
    return train, test
