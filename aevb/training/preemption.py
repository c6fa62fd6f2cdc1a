"""Preemption: a run asked to stop (its machine taken back) stops after a round, saved.

Schedulers announce it with SIGTERM (Slurm at the time limit, spot and preemptible VMs,
Kubernetes), a user with Ctrl-C (SIGINT). `WATCH` is how the loop (`aevb/training/loop.py`)
learns of it: after every round it asks `WATCH.reached()`, and on True saves a checkpoint of
that round, writes a `"preempted": true` metrics line (the resume removes it) and raises
`checks.Preempted`; launch.py then exits with `EXIT_STATUS`, and the same command resumes
the run to the result of an uninterrupted one.

* One process: `WATCH.installed()` replaces the SIGTERM and SIGINT handlers by one that
  only notes the request, in the main thread, while a run trains (launch.py holds it for the
  whole command; the loop for each phase; a sweep's worker process for its life). A second
  SIGINT takes its usual action at once (KeyboardInterrupt), losing the round in progress;
  a second SIGTERM is ignored (schedulers follow it with SIGKILL when the grace ends).
* Several processes (after `jax.distributed.initialize`): JAX installs its own SIGTERM
  notifier, and its preemption sync point (`multihost_utils.reached_preemption_sync_point`)
  makes every process stop after the same round, whichever received the signal: the round
  after the furthest any process had reached when the notice arrived. Every process calls
  it once per round, in the same order (`WATCH` numbers the calls).
* A sweep: a trial in progress stops as above; a sweep in one process starts no further
  trial, and one in worker processes (`aevb/sweeps/workers.py`) passes SIGTERM on to its
  workers, each of which stops its unit and takes no other. The same command resumes the
  unfinished trials.

So the time between the signal and the exit is the rest of the round in progress (two
rounds with several processes), one evaluation if due, and the checkpoint save: a
scheduler's grace period (Slurm's KillWait, 30 s by default; GCE spot VMs, 30 s) must
cover that, or the run loses its progress since the last periodic checkpoint.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
from jax.experimental import multihost_utils

# The exit status of a preempted run: sysexits.h's EX_TEMPFAIL, "a temporary failure; the
# user is invited to retry". Not an error: rerun the same command.
EXIT_STATUS = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Watch:
    """Whether this process has been asked to stop; `WATCH` is the process's one watch."""

    def __init__(self) -> None:
        self.requested = 0          # the signal received (0: none)
        self._calls = 0             # the sync point's step ids: one per round, every process
        self._depth = 0
        self._previous: dict[int, Any] = {}
        self._forward: Callable[[], Sequence[int]] = tuple

    @contextlib.contextmanager
    def installed(self, forward_to: Callable[[], Sequence[int]] | None = None
                  ) -> Iterator[None]:
        """The handlers of `SIGNALS` while the block runs (nested blocks share the
        outermost's; it starts with no request), in a single process's main thread
        (several processes: JAX's notifier; another thread cannot take signals).
        `forward_to()`: process ids that receive a SIGTERM this process receives."""
        if jax.process_count() > 1 or threading.current_thread() is not threading.main_thread():
            yield
            return
        if self._depth == 0:
            self.requested = 0
            self._previous = {s: signal.signal(s, self._note) for s in SIGNALS}
        self._depth += 1
        outer, self._forward = self._forward, forward_to or self._forward
        try:
            yield
        finally:
            self._forward = outer
            self._depth -= 1
            if self._depth == 0:
                for s, handler in self._previous.items():
                    signal.signal(s, signal.SIG_DFL if handler is None else handler)

    def _note(self, signum: int, frame: object) -> None:
        del frame
        if signum == signal.SIGTERM:
            for pid in self._forward():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        if not self.requested:
            self.requested = signum
        elif signum == signal.SIGINT:  # a second Ctrl-C: at once
            previous = self._previous.get(signum)
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
            signal.raise_signal(signum)

    def reached(self) -> bool:
        """Whether to stop after the round just run (the same answer in every process)."""
        self._calls += 1
        if jax.process_count() > 1:
            return multihost_utils.reached_preemption_sync_point(self._calls)
        return bool(self.requested)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.requested).name if self.requested else "a preemption notice"


WATCH = Watch()
