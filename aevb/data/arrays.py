"""Your own arrays: the ``npz`` source, and the checks every user-supplied split gets.

`load_npz` reads ``data.path``, either

* one ``.npz`` file holding ``x_train`` and optionally ``y_train``, ``x_test``, ``y_test``
  (Keras's layout: ``np.savez(path, x_train=x, y_train=y)``), or
* a directory holding ``train.npz`` and optionally ``test.npz``, each with ``x`` and
  optionally ``y``.

Images are uint8 [N, H, W] (one channel) or [N, H, W, C] with C = 1 or 3; labels are
integers 0..K-1 [N], every class present in the training images. `user_split` and
`check_splits_agree` hold those rules, for this source and for image folders (`folder.py`):
each refusal is a `DataError` naming the array (or file) and saying how to fix it.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from aevb.data.datasets import DataError, Split

# Array names of the one-file layout, by split: (images, labels).
NPZ_ONE_FILE = {"train": ("x_train", "y_train"), "test": ("x_test", "y_test")}
# File names and array names of the one-file-per-split layout.
NPZ_PER_SPLIT = {"train": "train.npz", "test": "test.npz"}
NPZ_PER_SPLIT_ARRAYS = ("x", "y")
CHANNELS = (1, 3)


def _uint8_hint(array: np.ndarray) -> str:
    """How to turn `array` (numeric, not uint8) into uint8 grey levels 0..255."""
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if np.issubdtype(array.dtype, np.floating) and 0.0 <= low and high <= 1.0:
        return f"values in [{low:g}, {high:g}]: convert with (x * 255).round().astype(np.uint8)"
    if 0.0 <= low and high <= 255.0:
        return f"values in [{low:g}, {high:g}]: convert with x.round().astype(np.uint8)"
    return (f"values in [{low:g}, {high:g}]: rescale them to 0..255, then convert with "
            "astype(np.uint8)")


def user_images(images: np.ndarray, where: str) -> np.ndarray:
    """`images` as uint8 [N, H, W, C], C in (1, 3), or a DataError naming `where`."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        if images.dtype == bool or not (np.issubdtype(images.dtype, np.integer)
                                        or np.issubdtype(images.dtype, np.floating)):
            raise DataError(f"{where} has dtype {images.dtype}: images must be uint8 grey "
                            "levels 0..255")
        raise DataError(f"{where} is {images.dtype}, not uint8: {_uint8_hint(images)}")
    if images.ndim == 3:
        images = images[..., np.newaxis]
    if images.ndim != 4 or images.shape[-1] not in CHANNELS:
        raise DataError(f"{where} has shape {list(images.shape)}: images must be [N, H, W] or "
                        f"[N, H, W, C] with C = 1 or 3 channels")
    if 0 in images.shape:
        raise DataError(f"{where} holds no images (shape {list(images.shape)})")
    return images


def user_labels(labels: np.ndarray, num_images: int, where: str) -> np.ndarray:
    """`labels` as int32 [N] of non-negative class indices, or a DataError naming `where`."""
    labels = np.asarray(labels)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{where} is {labels.dtype}: labels must be integers 0..K-1 "
                        "(convert class names with np.unique(y, return_inverse=True)[1])")
    if labels.ndim != 1:
        raise DataError(f"{where} has shape {list(labels.shape)}: labels must be 1-D [N]")
    if len(labels) != num_images:
        raise DataError(f"{where} has {len(labels)} labels but there are {num_images} images")
    if labels.size and (labels.min() < 0 or labels.max() > np.iinfo(np.int32).max):
        raise DataError(f"{where} has labels from {labels.min()} to {labels.max()}: labels "
                        "must be class indices 0..K-1")
    return labels.astype(np.int32)


def user_split(images: np.ndarray, labels: np.ndarray | None, where: str,
               labels_where: str) -> Split:
    """A checked Split from a user's images and optional labels."""
    images = user_images(images, where)
    if labels is None:
        return Split(images=images, labels=None)
    return Split(images=images, labels=user_labels(labels, len(images), labels_where))


def check_splits_agree(train: Split, test: Split | None, where: str) -> None:
    """Train and test have one image shape, both or neither have labels, and the labels are
    0..K-1 with every class among the training images; a DataError naming `where` if not."""
    if test is not None:
        if train.images.shape[1:] != test.images.shape[1:]:
            raise DataError(f"{where}: the training images are {list(train.images.shape[1:])} "
                            f"[H, W, C] but the test images are {list(test.images.shape[1:])}")
        if (train.labels is None) != (test.labels is None):
            which = "training" if test.labels is None else "test"
            raise DataError(f"{where}: only the {which} images have labels; give both splits "
                            "labels, or neither")
    if train.labels is None:
        return
    num_classes = int(train.labels.max()) + 1
    missing = sorted(set(range(num_classes)) - set(np.unique(train.labels).tolist()))
    if missing:
        raise DataError(f"{where}: no training image has class {missing[0]} (labels run to "
                        f"{num_classes - 1}): labels must be 0..K-1 with every class present")
    if test is not None and test.labels is not None and test.labels.max() >= num_classes:
        raise DataError(f"{where}: a test label is {int(test.labels.max())} but the training "
                        f"labels run 0..{num_classes - 1}")


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of the `.npz` at `path`, or a DataError saying what is wrong."""
    if not path.is_file():
        raise DataError(f"data.path {path} does not exist or is not a file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise DataError(f"{path} is a single .npy array, not an .npz: save it with "
                                "np.savez(path, x_train=images, y_train=labels)")
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as an .npz file: {err}") from err


def _split_of(arrays: dict[str, np.ndarray], names: tuple[str, str], path: Path) -> Split:
    images_name, labels_name = names
    return user_split(arrays[images_name], arrays.get(labels_name), f"{path}: {images_name}",
                      f"{path}: {labels_name}")


def _check_names(arrays: dict[str, np.ndarray], allowed: tuple[str, ...], required: str,
                 path: Path) -> None:
    """Refuses a missing images array and any array this source does not read (a typo)."""
    unknown = sorted(set(arrays) - set(allowed))
    if required not in arrays or unknown:
        what = (f"arrays aevb does not read ({', '.join(unknown)})" if unknown
                else f"no array named {required}")
        raise DataError(f"{path} holds {what}; it reads {', '.join(allowed)} "
                        f"(it holds: {', '.join(sorted(arrays)) or 'nothing'})")


def load_npz(path: str | os.PathLike[str]) -> tuple[Split, Split | None]:
    """(train, test or None) from `path`: one .npz file, or a directory of one per split.

    Raises:
      DataError: the file or directory is missing or unreadable, an array is missing,
        unknown, not uint8 (with how to convert), of the wrong shape, or its labels do not
        match the images in number or classes.
    """
    path = Path(path)
    splits: dict[str, Split | None] = {"train": None, "test": None}
    if path.is_dir():
        if not (path / NPZ_PER_SPLIT["train"]).is_file():
            raise DataError(f"data.path {path} is a directory without {NPZ_PER_SPLIT['train']}"
                            f": give the .npz file itself, or put train.npz (and test.npz) "
                            "there")
        for split, name in NPZ_PER_SPLIT.items():
            if (path / name).is_file():
                arrays = _read_npz(path / name)
                _check_names(arrays, NPZ_PER_SPLIT_ARRAYS, "x", path / name)
                splits[split] = _split_of(arrays, NPZ_PER_SPLIT_ARRAYS, path / name)
    else:
        arrays = _read_npz(path)
        allowed = tuple(n for names in NPZ_ONE_FILE.values() for n in names)
        _check_names(arrays, allowed, "x_train", path)
        for split, names in NPZ_ONE_FILE.items():
            if names[0] in arrays:
                splits[split] = _split_of(arrays, names, path)
            elif names[1] in arrays:
                raise DataError(f"{path} holds {names[1]} but no {names[0]}")
    check_splits_agree(splits["train"], splits["test"], str(path))
    return splits["train"], splits["test"]
