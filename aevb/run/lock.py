"""The workdir lock: one process at a time writes a workdir.

`acquire(workdir)` takes an exclusive `flock` on `<workdir>/.lock` and writes the holder
(host and pid) into it; a second process asking for the same workdir gets a `WorkdirError`
that names the holder. The lock belongs to the open file, so the OS releases it when the
holding process exits for any reason (kill -9 included): a killed run never blocks its own
resume, and no stale pid file has to be guessed at.

Within one process the lock is reentrant (a resumed run in the same process, the
autoencoder of a pretraining run, the trials of a sweep each take their own workdir's lock
once). `scope()` releases, when it exits, the locks taken inside it; `aevb/regimes/__init__.py`
wraps every run and sweep in one.

Network filesystems: on NFS (v4, or v3 with lockd) Linux emulates `flock` with byte-range
locks that the server enforces across hosts. Filesystems without locks (GCS FUSE, some
FUSE mounts) answer with an error: the run then warns once and goes on without the lock,
so two runs into one workdir there are not stopped. A filesystem that accepts a lock
without enforcing it across hosts cannot be detected from here.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import sys
from collections.abc import Iterator

from aevb.config.checks import WorkdirError
from aevb.run import files

LOCK_FILE = files.LOCK
_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_held: dict[str, int] = {}  # lock file path -> open descriptor, in this process


def _path(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), LOCK_FILE)


def _holder() -> str:
    """How this process names itself in the lock file: 'pid 123 on host tpu-vm-0'."""
    return f"pid {os.getpid()} on host {socket.gethostname()}"


def acquire(workdir: str, wait: bool = False) -> None:
    """Takes this process's lock on `workdir` (created if absent), or raises WorkdirError
    naming the process that holds it; with `wait`, waits for that process to let it go
    instead (a model that trials share, trained by whichever trial comes first). A workdir
    this process holds already is kept."""
    path = _path(workdir)
    if path in _held:
        return
    made = _make_directories(workdir)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        _remove_directories(made)
        raise _unusable(workdir, e) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
        if wait:
            print(f"waiting for {holder} to finish with {workdir}", file=sys.stderr,
                  flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.write(fd, (_holder() + "\n").encode())
            _held[path] = fd
            return
        os.close(fd)
        raise WorkdirError(
            f"workdir {workdir} is in use by {holder}: wait for that run to end (or stop "
            "it), or pass another --workdir") from None
    except OSError as e:
        os.close(fd)
        if e.errno not in _UNSUPPORTED:
            raise
        print(f"warning: the filesystem of {workdir} does not support file locks ({e}); "
              "running without the workdir lock, so start no second run into it",
              file=sys.stderr, flush=True)
        return
    os.ftruncate(fd, 0)
    os.write(fd, (_holder() + "\n").encode())
    _held[path] = fd


def _unusable(workdir: str, error: OSError) -> WorkdirError:
    return WorkdirError(f"--workdir {workdir} cannot be created or written "
                        f"({error.strerror or error}): pass a directory you can write to")


def _make_directories(workdir: str) -> list[str]:
    """Creates `workdir` and its missing parents; returns them, deepest first. If one cannot
    be created (a parent is a file, a name too long, a read-only or special filesystem, no
    permission), removes those it made and raises WorkdirError: nothing is left behind."""
    missing, path = [], os.path.abspath(workdir)
    while not os.path.lexists(path) and path != os.path.dirname(path):
        missing.append(path)
        path = os.path.dirname(path)
    made: list[str] = []
    try:
        for directory in reversed(missing):
            os.mkdir(directory)
            made.insert(0, directory)
    except OSError as e:
        _remove_directories(made)
        raise _unusable(workdir, e) from None
    return made


def _remove_directories(made: list[str]) -> None:
    for directory in made:  # deepest first
        with contextlib.suppress(OSError):
            os.rmdir(directory)


def _release(paths) -> None:
    for path in list(paths):
        os.close(_held.pop(path))  # closing the descriptor releases the flock


def release(workdir: str) -> None:
    """Releases this process's lock on `workdir`, if it holds one."""
    _release({_path(workdir)} & set(_held))


def release_all() -> None:
    """Releases every workdir lock this process holds."""
    _release(_held)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Releases, on exit (normal or not), the locks taken inside the `with` block."""
    before = set(_held)
    try:
        yield
    finally:
        _release(set(_held) - before)
