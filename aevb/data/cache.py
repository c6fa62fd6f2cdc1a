"""Decoded data kept on disk, so that a rerun reads arrays instead of decoding files again.

Two sources decode their files: IDX (gunzip; 0.24 s of every run's start-up for
Fashion-MNIST) and image folders (Pillow; 5 s for 70,000 PNG files). `decoded` keeps what they
return in ``$AEVB_CACHE_DIR/<kind>`` (default ``~/.cache/aevb/<kind>``, beside the compilation
cache) as an uncompressed .npz named by a SHA-256 of the files' names and bytes, so a changed,
added or removed file is another entry. A second, smaller key, of the files' absolute paths,
sizes and modification times (ns), points at that entry: a rerun over untouched files neither
reads nor hashes them (Fashion-MNIST's four IDX files: 8 ms instead of 0.3 s). A cache that
cannot be written only costs the next run its decoding; one that cannot be read is decoded
again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from aevb.data.datasets import DataError

Decode = Callable[[list[bytes]], dict[str, np.ndarray]]


def cache_root() -> str:
    """Where data-derived caches live: $AEVB_CACHE_DIR, by default ~/.cache/aevb."""
    return os.environ.get("AEVB_CACHE_DIR") or os.path.expanduser("~/.cache/aevb")


def decoded(kind: str, version: bytes, root: Path, files: list[str], decode: Decode,
            what: str) -> dict[str, np.ndarray]:
    """`decode(contents)` of the `files` (paths under `root`, in order), read from the cache
    when those files (found by their stat) or files of the same names relative to `root` and
    the same bytes were decoded before.

    `kind` names the cache's folder, `version` is bumped when decoding changes (so that old
    entries are not read) and `what` names a file in the error of one that cannot be read
    ("IDX file", "image").
    """
    where = Path(cache_root()) / kind
    by_stat = where / f"stat-{_stat_key(version, root, files, what)}.txt"
    try:
        arrays = _read(where / f"{by_stat.read_text().strip()}.npz")
    except OSError:
        arrays = None
    if arrays is not None:
        return arrays
    key, contents = _content_key(version, root, files, what)
    arrays = _read(where / f"{key}.npz")
    if arrays is None:
        arrays = decode(contents)
        _write_atomically(where / f"{key}.npz", lambda f: np.savez(f, **arrays))
    _write_atomically(by_stat, lambda f: f.write(key.encode()))
    return arrays


def _stat_key(version: bytes, root: Path, files: list[str], what: str) -> str:
    """A SHA-256 of `root` and every file's name, size and modification time (ns): the same
    on a rerun over untouched files, so that the content hash need not be redone."""
    digest = hashlib.sha256(version + os.fsencode(os.path.abspath(root)))
    for file in files:
        try:
            stat = os.stat(file)
        except OSError as err:
            raise DataError(f"cannot read {what} {file}: {err}") from err
        digest.update(f"{file}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _content_key(version: bytes, root: Path, files: list[str], what: str
                 ) -> tuple[str, list[bytes]]:
    """(a SHA-256 of every file's name relative to `root` and its bytes, the bytes)."""
    digest = hashlib.sha256(version)
    contents, start = [], len(str(root))
    for file in files:
        try:
            with open(file, "rb") as f:
                content = f.read()
        except OSError as err:
            raise DataError(f"cannot read {what} {file}: {err}") from err
        contents.append(content)
        digest.update(f"{file[start:]}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest(), contents


def _read(entry: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays by name, or None when absent or unreadable."""
    try:
        with np.load(entry, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError):
        return None


def _write_atomically(target: Path, write: Callable[[BinaryIO], None]) -> None:
    """`write(file)` to a temporary file renamed onto `target`, so that a reader in another
    process sees the whole file or none; an unwritable cache only costs the next run."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except OSError:
        pass
