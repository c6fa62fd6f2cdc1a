"""Checkpoints: Orbax managers, restore with fallback past damaged checkpoints, and reads.

Every phase of every regime saves and restores through these (`aevb/training/loop.py` calls them):
`checkpoint_manager` (asynchronous saves, the last few kept), `restore_or_keep` (the newest
checkpoint that restores; a damaged newer one is reported and moved aside, never deleted),
`saved_round` (what a directory holds, without reading it) and `latest_state` (the newest
checkpoint, strictly, for a finished run's parameters).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging

from aevb.config.checks import CheckpointError
from aevb.run import parallel


@contextlib.contextmanager
def _orbax_quiet() -> Iterator[None]:
    """Silences Orbax's log lines about damaged checkpoints: `restore_or_keep` reports them
    in one line of its own, with the round and the reason."""
    verbosity = logging.get_verbosity()
    logging.set_verbosity(logging.FATAL)
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)


def checkpoint_manager(directory: str, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """Orbax manager of `directory`: one checkpoint per saved round, the last few kept.

    Saves are asynchronous: `save` copies the state to host memory and returns; the files
    are written in the background, into a temporary directory renamed when complete (so a
    kill mid-write leaves the previous checkpoint whole). The next `save`, `restore`,
    `wait_until_finished` and `close` wait for a write in flight.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           enable_async_checkpointing=True)
    with _orbax_quiet():  # it reads every checkpoint's metadata, damaged ones too
        return ocp.CheckpointManager(os.path.abspath(directory), options=options)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200] if text else ''}"


def _set_aside(directory: str, broken: list[tuple[int, str]], unit: str, good: int) -> None:
    """Moves each broken checkpoint to `<round>.broken` (`.broken.2`, ... if taken), so its
    round can be saved again, and says so (process 0 moves and prints)."""
    if jax.process_index() == 0:
        for r, reason in broken:
            source, target = os.path.join(directory, str(r)), os.path.join(directory, f"{r}.broken")
            n = 1
            while os.path.exists(target):
                n += 1
                target = os.path.join(directory, f"{r}.broken.{n}")
            os.replace(source, target)
            print(f"warning: the checkpoint of {unit} {r} in {directory} cannot be restored "
                  f"({reason}); moved to {target}; resuming from {unit} {good}",
                  file=sys.stderr, flush=True)
    parallel.barrier("aevb: broken checkpoints set aside")


def restore_or_keep(manager: ocp.CheckpointManager, state: Any, unit: str = "round"
                    ) -> tuple[Any, int]:
    """The newest checkpoint that can be restored (with `state`'s structure and shardings)
    and its round, or (state, 0) when there is none.

    A newer checkpoint that cannot be restored (damaged files, a kill mid-write outside
    Orbax's atomic rename) is reported with its round and the reason and moved aside, never
    deleted; an older good one is used. When none can be restored, CheckpointError, and
    every file stays where it is.
    """
    broken: list[tuple[int, str]] = []
    for r in sorted(manager.all_steps(), reverse=True):
        try:
            with _orbax_quiet():
                restored = manager.restore(r, args=ocp.args.StandardRestore(state))
        except Exception as e:  # noqa: BLE001  a damaged checkpoint fails in many ways
            broken.append((int(r), _first_line(e)))
            continue
        if broken:
            _set_aside(str(manager.directory), broken, unit, int(r))
            manager.reload()
        return restored, int(r)
    if broken:
        reasons = "; ".join(f"{unit} {r}: {reason}" for r, reason in broken)
        raise CheckpointError(
            f"no checkpoint in {manager.directory} can be restored ({reasons}); every file "
            "is left where it is. If the config changed, resume with the one in the "
            "workdir's config.json; to start over, move that checkpoints directory aside")
    return state, 0


def saved_round(directory: str) -> int | None:
    """The latest round checkpointed in `directory`, None if none (reads, writes nothing)."""
    if not os.path.isdir(directory):
        return None
    rounds = [int(name) for name in os.listdir(directory) if name.isdigit()]
    return max(rounds) if rounds else None


def latest_state(directory: str, template: Any) -> Any:
    """The state in the newest checkpoint of `directory`, with no fallback to an older one:
    CheckpointError when there is none or it cannot be restored."""
    manager = checkpoint_manager(directory)
    try:
        r = manager.latest_step()
        if r is None:
            raise CheckpointError(f"no checkpoint in {directory}")
        try:
            return manager.restore(r, args=ocp.args.StandardRestore(template))
        except Exception as e:
            raise CheckpointError(f"the checkpoint of round {r} in {directory} cannot be "
                                  f"restored ({_first_line(e)})") from e
    finally:
        manager.close()
