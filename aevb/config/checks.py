"""The errors a run stops with, and the field checks every config validation uses.

A `UserError` is the user asking for something impossible: a config field (`ConfigError`,
naming the field and what is allowed), the data (`datasets.DataError`), a sweep
(`sweeps.SweepError`), a workdir (`WorkdirError`: busy, or not a directory) or its
checkpoints (`CheckpointError`: none can be restored). `launch.py` turns every one into one
line on stderr and exit status 2, before anything is written where it can be; any other
exception is a bug and keeps its traceback. The `check_*` helpers read a field by its dotted path
(`ml_collections`' own path walker) so every message names the field the same way.
"""

from __future__ import annotations

import math
from typing import Any

from ml_collections.config_flags import config_path


class UserError(Exception):
    """The user asked for something impossible; the message says what and what to do."""


class ConfigError(UserError, ValueError):
    """A config field has a value the code cannot run with."""


class WorkdirError(UserError):
    """The workdir cannot be used: another process holds it, or it is not a directory."""


class CheckpointError(UserError):
    """No checkpoint of the workdir can be restored; every file is left where it is."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class Preempted(Exception):
    """The run was asked to stop (SIGTERM, SIGINT) and stopped after a round, with a
    checkpoint of it: not an error; the same command resumes (aevb/training/preemption.py)."""

    def __init__(self, message: str, checkpoint_dir: str = "", round_: int = 0):
        super().__init__(message)
        self.checkpoint_dir, self.round = checkpoint_dir, round_


def get(config: Any, field: str) -> Any:
    """The value at dotted path `field` ('train.batch_size'); ConfigError if it is missing."""
    try:
        return config_path.get_value(field, config)
    except (KeyError, AttributeError, IndexError, ValueError) as e:
        raise ConfigError(f"config field {field} is missing") from e


def fail(field: str, value: Any, allowed: str) -> None:
    """Raises the ConfigError of `field=value`, saying what is `allowed`."""
    raise ConfigError(f"config field {field}={value!r} is not allowed: {allowed}")


def check_choice(config: Any, field: str, choices: tuple) -> None:
    value = get(config, field)
    if value not in choices:
        fail(field, value, f"must be one of {list(choices)}")


def check_int(config: Any, field: str, minimum: int, maximum: int | None = None) -> None:
    value = get(config, field)
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        fail(field, value, f"must be an integer >= {minimum}" if maximum is None else
             f"must be an integer in [{minimum}, {maximum}]")


SEED_MAX = 2**31 - 1  # a seed enters compiled programs as an int32


def check_number(config: Any, field: str, low: float, high: float | None = None,
                 low_open: bool = False, high_open: bool = True) -> None:
    """A finite number in [low, high) by default; `low_open` / `high_open` exclude the ends."""
    value = get(config, field)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if ok:
        return
    if high is None:
        fail(field, value, f"must be a number {'>' if low_open else '>='} {low:g}")
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    fail(field, value, f"must be a number in {lo}{low:g}, {high:g}{hi}")


def check_int_tuple(config: Any, field: str) -> None:
    """A tuple (or list) of positive integers, such as model.hidden_sizes."""
    value = get(config, field)
    if (not isinstance(value, (tuple, list))
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in value)):
        fail(field, value, f"must be a tuple of positive integers, e.g. --config.{field}='(500,)'")
