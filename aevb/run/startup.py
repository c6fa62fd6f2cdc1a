"""Where a run's time before its first training round goes: the start-up of its `time:` line.

`begin()` sets the origin: the process's start when launch.py runs as a program (Linux: read
from /proc; elsewhere: when this module was imported), or the moment a test calls
`launch.cli`. `mark(name)` adds the time since the previous mark to part `name`:

  imports  the interpreter, JAX, Flax, Optax, Orbax, the experiment file and the flags;
  backend  JAX's backend coming up (on a GPU, CUDA's initialization), and joining a
           multi-process run;
  data     reading, checking and hashing the data (`regimes/prepare.py`);
  setup    the model, its parameters and optimizer, the evaluation inputs and the workdir,
           up to the first phase's training (`training/loop.py`).

The restore of a checkpoint is the time line's `checkpoints` part, and the first round's
compilation (or its load from the compilation cache) its `compilation` part: no second of
the run is counted twice. The first `Run` of a process takes the split (`take`); later runs of the
same process (sweep trials, pretraining's classifier) start with no start-up of their own.
"""

from __future__ import annotations

import os
import time

_IMPORTED = time.time()
_origin: float | None = None
_last = 0.0
_parts: dict[str, float] = {}


def process_start() -> float:
    """The wall-clock time this process started (Linux), else when this module was imported."""
    try:
        with open("/proc/self/stat") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as f:
            boot = time.time() - float(f.read().split()[0])  # to 10 ms; btime is whole seconds
        return min(boot + ticks / os.sysconf("SC_CLK_TCK"), _IMPORTED)
    except (OSError, ValueError, IndexError):
        return _IMPORTED


def begin(origin: float | None = None) -> None:
    """Starts the count at `origin` (a `time.time()`; default: now), with no parts yet."""
    global _origin, _last, _parts
    _origin = _last = time.time() if origin is None else origin
    _parts = {}


def mark(name: str) -> None:
    """Adds the time since the previous mark (or the origin) to part `name`."""
    global _last
    if _origin is None:
        return
    now = time.time()
    _parts[name] = _parts.get(name, 0.0) + max(0.0, now - _last)
    _last = now


def take() -> dict[str, float]:
    """The parts so far ({} when nothing began, or a run took them already); ends the count."""
    global _origin
    parts, _origin = (dict(_parts) if _origin is not None else {}), None
    return parts
