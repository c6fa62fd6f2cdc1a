"""A folder of image files: the ``folder`` source (``data.source=folder``, ``data.path=DIR``).

Layouts (torchvision's ``ImageFolder`` convention for labels)::

    DIR/*.png                       unlabeled images, one set
    DIR/<class>/*.png               labeled: class k is the k-th sub-folder name in sorted order
    DIR/train/..., DIR/test/...     either of the above in each, the official train/test split

Without ``train/`` and ``test/``, `sources.load` holds out ``data.test_fraction`` of the images
as the test set. Files are read by Pillow (PNG, JPEG, BMP, GIF, TIFF, WebP); other files and
hidden ones are skipped, as ``ImageFolder`` does. Grey-level images ("L", "1", "I", "F" and
their alpha forms) give one channel, the rest RGB (an alpha channel is dropped); every image
must have the same size and channel count. Sub-folders of a class folder belong to that class.

Decoding is done once: the arrays are cached in ``$AEVB_CACHE_DIR/images`` (default
``~/.cache/aevb/images``) by `aevb/data/cache.py`, under a SHA-256 of every file's path and
bytes, so a changed, added or removed file is a different key; a rerun over untouched files
reads the arrays alone.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from aevb.data import cache
from aevb.data.arrays import check_splits_agree
from aevb.data.datasets import DataError, Split

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
SPLIT_DIRS = ("train", "test")
_GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "F")
# Bumped when decoding changes, so that old cache entries are not read.
_DECODER_VERSION = b"aevb-folder-1"


def _visible(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if not p.name.startswith("."))


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _images_under(path: Path) -> list[str]:
    """Every image file under `path`, recursively, in sorted order (strings: pathlib costs
    seconds on 70,000 files)."""
    found = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names) if _is_image(n)]
    return found


def _list_split(path: Path) -> tuple[list[str], list[int] | None, list[str]]:
    """(image files, their class indices or None, class names) of one split's folder."""
    entries = _visible(path)
    classes = [p.name for p in entries if p.is_dir()]
    loose = [str(p) for p in entries if p.is_file() and _is_image(p.name)]
    if classes and loose:
        raise DataError(f"{path} holds image files ({os.path.basename(loose[0])}, ...) beside "
                        f"sub-folders ({classes[0]}, ...): put every image in a class "
                        "sub-folder, or none")
    if not classes:
        return loose, None, []
    files, labels = [], []
    for index, name in enumerate(classes):
        in_class = _images_under(path / name)
        if not in_class:
            raise DataError(f"class folder {path / name} holds no image file (one of "
                            f"{', '.join(IMAGE_SUFFIXES)})")
        files += in_class
        labels += [index] * len(in_class)
    return files, labels, classes


def _decode(name: str, content: bytes) -> np.ndarray:
    """One image file's content as uint8 [H, W, C], or a DataError naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            mode = "L" if image.mode in _GREY_MODES else "RGB"
            pixels = np.asarray(image.convert(mode), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"cannot read image {name}: {err}") from err
    return pixels[..., np.newaxis] if pixels.ndim == 2 else pixels


def _stack(files: list[str], contents: list[bytes]) -> np.ndarray:
    """The decoded images as uint8 [N, H, W, C]; a DataError names two files that differ."""
    first = _decode(files[0], contents[0])
    images = np.empty((len(files), *first.shape), np.uint8)
    images[0] = first
    for i in range(1, len(files)):
        pixels = _decode(files[i], contents[i])
        if pixels.shape != first.shape:
            what = "channel counts" if pixels.shape[:2] == first.shape[:2] else "sizes"
            raise DataError(
                f"images of mixed {what}: {files[0]} is {first.shape[1]}x{first.shape[0]} with "
                f"{first.shape[2]} channel(s), {files[i]} is {pixels.shape[1]}x"
                f"{pixels.shape[0]} with {pixels.shape[2]}: resize or convert them to one")
        images[i] = pixels
    return images


def _listing(path: Path) -> dict[str, tuple[list[str], list[int] | None, list[str]]]:
    """The files of each split ('all' when the folder has no train/ and test/)."""
    if not path.is_dir():
        raise DataError(f"data.path {path} does not exist or is not a directory")
    present = [d for d in SPLIT_DIRS if (path / d).is_dir()]
    if len(present) == 1:
        other = next(d for d in SPLIT_DIRS if d not in present)
        raise DataError(f"{path} has {present[0]}/ but not {other}/: give both, or put the "
                        f"images directly in {path} (then data.test_fraction of them are "
                        "held out for test)")
    splits = {d: _list_split(path / d) for d in present} if present else {
        "all": _list_split(path)}
    for split, (files, _, _) in splits.items():
        if not files:
            where = path / split if split != "all" else path
            raise DataError(f"no image files in {where}: expected files ending in "
                            f"{', '.join(IMAGE_SUFFIXES)}, directly or in class sub-folders")
    if present and splits["train"][2] != splits["test"][2]:
        train, test = set(splits["train"][2]), set(splits["test"][2])
        raise DataError(
            f"the class sub-folders of {path / 'train'} and {path / 'test'} differ: only in "
            f"train: {sorted(train - test) or 'none'}; only in test: "
            f"{sorted(test - train) or 'none'}")
    return splits


def _decoded(path: Path, splits: dict) -> dict[str, np.ndarray]:
    """The images of every split, uint8 [N, H, W, C]: decoded once, then from the cache."""
    names = [file for files, _, _ in splits.values() for file in files]

    def decode(contents: list[bytes]) -> dict[str, np.ndarray]:
        arrays, start = {}, 0
        for split, (files, _, _) in splits.items():
            arrays[split] = _stack(files, contents[start:start + len(files)])
            start += len(files)
        return arrays

    return cache.decoded("images", _DECODER_VERSION, path, names, decode, "image")


def load_folder(path: str | os.PathLike[str]) -> tuple[Split, Split | None]:
    """(train, test or None) from a folder of images; decoded once, then read from the cache.

    Raises:
      DataError: a missing folder, no image files, class folders that differ between train
        and test, an unreadable image (named), or images of mixed sizes or channel counts.
    """
    path = Path(path)
    splits = _listing(path)
    arrays = _decoded(path, splits)
    result = {split: Split(images=arrays[split],
                           labels=None if labels is None else np.asarray(labels, np.int32))
              for split, (_, labels, _) in splits.items()}
    train, test = (result["all"], None) if "all" in result else (result["train"],
                                                                 result["test"])
    check_splits_agree(train, test, str(path))
    return train, test
