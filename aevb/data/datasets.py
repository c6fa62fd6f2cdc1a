"""What a dataset is, for every source: `Split`, `Datasets`, and the `DataError` a source
raises when the data cannot be had. Every source (`idx.py`, `arrays.py`, `folder.py`, the
optional `tfds.py`) builds these, so none imports another's code; `fingerprint` is the content
hash a resume compares.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from aevb.config.checks import UserError

FASHION_MNIST_DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"


class DataError(UserError):
    """Data cannot be loaded; message says what to do."""


@dataclasses.dataclass(frozen=True)
class Split:
    """One split of a labelled image dataset, kept as compact host arrays.

    Attributes:
      images: uint8 [N, H, W, C], raw pixel values 0..255.
      labels: int32 [N], class indices 0..K-1, or None for unlabeled data (an `.npz` without
        labels, a folder of images without class sub-folders).
    """

    images: np.ndarray
    labels: np.ndarray | None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                "Split.images must be uint8 [N, H, W, C], got "
                f"{self.images.dtype} {list(self.images.shape)}"
            )
        if self.labels is None:
            return
        if self.labels.dtype != np.int32 or self.labels.ndim != 1:
            raise ValueError(
                f"Split.labels must be int32 [N], got {self.labels.dtype} {list(self.labels.shape)}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"Split has {len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    def take(self, indices: np.ndarray) -> Split:
        """The examples at `indices` (int [M]), labels with them when there are labels."""
        labels = None if self.labels is None else self.labels[indices]
        return Split(images=self.images[indices], labels=labels)


def fingerprint(*splits: Split) -> str:
    """A SHA-256 of the splits' shapes and bytes (images and labels): equal iff the data are.

    Hashes the arrays as loaded, so it is the same whichever file format held them; about
    30 ms for Fashion-MNIST. A resumed run compares it with the one its workdir recorded."""
    digest = hashlib.sha256()
    for split in splits:
        for array in (split.images, split.labels):
            if array is None:
                digest.update(b"no labels")
                continue
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype}{list(array.shape)}".encode())
            digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class Datasets:
    """Everything an experiment trains and evaluates on.

    Attributes:
      name: dataset name as configured (e.g. 'fashion_mnist').
      train: examples to fit on.
      validation: held-out part of the original train split for model selection,
        or None when `data.num_validation` is 0.
      test: the dataset's official test split (or the one held out by `data.test_fraction`
        when the source has none).
      fingerprint: `fingerprint` of the source's splits before any hold-out ('' = not
        computed): what a resume compares with the workdir's record.
      first_train_row, num_train_rows: `train` holds rows first_train_row.. of a training
        set of num_train_rows rows (0: `train` is the whole set). A process of a
        multi-process run keeps only its share (`share`).
      labeled_rows: the rows of `train` a pretraining run may read the labels of, for its
        probe (`aevb/regimes/labels.py`: `labels.hold_out`); None elsewhere.
    """

    name: str
    train: Split
    validation: Split | None
    test: Split
    fingerprint: str = ""
    first_train_row: int = 0
    num_train_rows: int = 0
    labeled_rows: np.ndarray | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        for split_name in ("test", "validation"):
            split = getattr(self, split_name)
            if split is not None and split.images.shape[1:] != self.image_shape:
                raise ValueError(
                    f"Datasets.{split_name} images are {list(split.images.shape[1:])} "
                    f"but train images are {list(self.image_shape)}"
                )

    def record(self) -> dict:
        """What a workdir records of its data (`data.json`): the content hash a resume
        compares, and the sizes and shape for a reader."""
        return {"name": self.name, "fingerprint": self.fingerprint,
                "train": self.num_train, "test": len(self.test),
                "validation": 0 if self.validation is None else len(self.validation),
                "image_shape": list(self.image_shape), "labels": self.has_labels}

    @property
    def num_train(self) -> int:
        """The number of training examples, in every process (not only this one's share)."""
        return self.num_train_rows or len(self.train)

    def share(self, rows: slice) -> Datasets:
        """These datasets with only `rows` of the whole training set kept (images and
        labels, copied, so that the rest can be freed)."""
        first, total = self.first_train_row, self.num_train
        if rows.start < first or rows.stop > first + len(self.train):
            raise ValueError(f"rows {rows.start}..{rows.stop} are not among the training "
                             f"rows held, {first}..{first + len(self.train)}")
        train = self.train.take(np.arange(rows.start - first, rows.stop - first))
        return dataclasses.replace(self, train=train, first_train_row=rows.start,
                                   num_train_rows=total)

    def move_to_validation(self, rows: np.ndarray) -> Datasets:
        """These datasets with the training `rows` (indices into `train`) moved out of the
        training split into the validation split, which must not exist yet."""
        if self.validation is not None or self.num_train_rows:
            raise ValueError("move_to_validation needs the whole training set and no "
                             "validation split")
        keep = np.setdiff1d(np.arange(len(self.train)), rows)
        return dataclasses.replace(self, train=self.train.take(keep),
                                   validation=self.train.take(np.sort(rows)))

    @property
    def has_labels(self) -> bool:
        """Whether every example has a class label (the classification regimes need them)."""
        return self.train.labels is not None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of every image."""
        height, width, channels = self.train.images.shape[1:]
        return int(height), int(width), int(channels)

    @property
    def num_pixels(self) -> int:
        """H * W * C: the length of a flattened image, i.e. the data dimension D."""
        return math.prod(self.image_shape)
