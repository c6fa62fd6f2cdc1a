"""Claiming a workdir: the lock, `config.json`, `data.json` and the resume checks (`claim`),
and the one test of "this run is done" (`finished`).

A regime claims its workdir only after the config and the data have been checked, so a
mistake writes nothing, not even the lock file.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import ml_collections
from flax import traverse_util

from aevb.config import defaults
from aevb.config.checks import ConfigError, WorkdirError
from aevb.data.datasets import DataError
from aevb.run import files, lock, parallel

# Fields a resumed run may change: they do not alter the trajectory of earlier epochs. The
# joint regime checks train.patience against the run's history (`check_patience_change`).
RESUMABLE_CHANGES = ("train.num_epochs", "train.checkpoint_every_epochs",
                     "train.checkpoint_every_secs", "train.max_checkpoints", "train.profile",
                     "train.patience")


def _flat(config: dict) -> dict:
    flat = traverse_util.flatten_dict(config, sep=".")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in flat.items()}


def _check_resumable(config: ml_collections.ConfigDict, workdir: str
                     ) -> tuple[dict, dict | None]:
    """(the config as JSON, the workdir's config.json or None); ConfigError if `workdir`
    holds a run of a different history."""
    current, saved_json = json.loads(config.to_json()), saved_config(workdir)
    if saved_json is not None:
        saved, new = _flat(saved_json), _flat(current)
        # Fields newer than the saved run (absent from its config.json) are not compared.
        changed = sorted(k for k in saved
                         if saved[k] != new.get(k) and k not in RESUMABLE_CHANGES
                         and not k.startswith("eval."))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {new.get(k)!r}" for k in changed)
            raise ConfigError(
                f"workdir {workdir} holds a run with a different config ({diffs}); "
                "resume with the same config, or pass a new --workdir")
        _check_schedule_length(saved, new, workdir)
    return current, saved_json


def _check_schedule_length(saved: dict, new: dict, workdir: str) -> None:
    """A resume may change train.num_epochs only under a constant learning rate: a cosine or
    iwae schedule is laid over the run's length, so a new length would make the rate jump
    (cosine over 30 -> 60 epochs, resumed after 30: from 0 to half the peak) and the run
    would match neither the short nor the long straight run."""
    field, schedule = "train.num_epochs", new.get("train.lr_schedule")
    if saved.get(field) != new.get(field) and schedule != "constant":
        raise ConfigError(
            f"config field {field} cannot change on resume ({saved.get(field)} -> "
            f"{new.get(field)}) under train.lr_schedule={schedule!r}: the schedule spans the "
            f"run's length and would jump; start a fresh --workdir (only "
            f"train.lr_schedule='constant' resumes with more epochs), not {workdir}")


def saved_config(workdir: str) -> dict | None:
    """The `config.json` of the run in `workdir`, or None before its first claim."""
    path = files.path(workdir, files.CONFIG)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def check_same_data(workdir: str, data: dict) -> None:
    """Refuses to resume in `workdir` on data other than those it was trained on: the content
    hash in its `data.json` against `data["fingerprint"]` (a DataError naming both)."""
    path = files.path(workdir, files.DATA)
    if not os.path.exists(path):
        return
    with open(path) as f:
        saved = json.load(f)
    if saved.get("fingerprint") != data["fingerprint"]:
        raise DataError(
            f"workdir {workdir} holds a run on other data ({saved.get('name')}, content hash "
            f"{str(saved.get('fingerprint'))[:12]}; now {data['name']}, "
            f"{data['fingerprint'][:12]}): resume on the same data, or pass a new --workdir")


def lock_workdir(workdir: str, wait: bool = False) -> None:
    """Refuses a `workdir` that is not a directory, then takes its lock (process 0 only: the
    processes of one run share the workdir; every process learns process 0's answer);
    with `wait`, waits for another holder to let it go (`lock.acquire`)."""
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"--workdir {workdir} is a file, not a directory: pass a new "
                           "directory, or the workdir of the run to resume")
    error = ""
    if jax.process_index() == 0:
        try:
            lock.acquire(workdir, wait)
        except WorkdirError as e:
            error = str(e)
    if not parallel.process_0_says(not error):
        raise WorkdirError(error or f"workdir {workdir} is in use (see process 0's message)")


def claim(config: ml_collections.ConfigDict, workdir: str, data: dict) -> None:
    """Makes `workdir` this run's, after the config and the data have been checked: checks
    that it may resume there (the same config, up to `RESUMABLE_CHANGES`, and the same data,
    by `data` = `Datasets.record()`), locks it, and writes `config.json` and `data.json`. A
    changed config (a run extended) moves the earlier `summary.json` to
    `summary.stale.json` at once; the loop does the same for any run that restores a
    checkpoint with rounds left to run."""
    _check_resumable(config, workdir)  # a refusal writes nothing, not even the lock
    check_same_data(workdir, data)
    lock_workdir(workdir)
    current, saved = _check_resumable(config, workdir)  # again, now no one else writes it
    check_same_data(workdir, data)
    parallel.barrier("aevb: config.json read")  # every process read it before it changes
    if jax.process_index() == 0:
        if saved is not None and saved != current:
            files.set_summary_aside(workdir)
        with open(files.path(workdir, files.CONFIG), "w") as f:
            json.dump(current, f, indent=2)
        with open(files.path(workdir, files.DATA), "w") as f:
            json.dump(data, f, indent=2)


def finished(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
    """The summary of the run of `config` in `workdir` if it has ended, else None: its
    summary.json, written at the end of a run whose config.json is this config
    (`same_run`: up to fields added since, at their defaults)."""
    try:
        with open(files.path(workdir, files.SUMMARY)) as f:
            summary = json.load(f)
        with open(files.path(workdir, files.CONFIG)) as f:
            saved = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return summary if same_run(saved, json.loads(config.to_json())) else None


def same_run(saved: dict, current: dict) -> bool:
    """Whether a run whose config.json is `saved` is the run of the config `current` (both
    as JSON): the same fields and values, except that a field newer than the run (absent
    from `saved`) may be in `current` at its default (`defaults.base_config()`), which is
    what the run did before the field existed. At any other value it is another run."""
    saved, new, base = _flat(saved), _flat(current), _defaults()
    return set(saved) <= set(new) and all(
        saved[k] == v if k in saved else k in base and base[k] == v for k, v in new.items())


def value_in(saved: dict, field: str) -> Any:
    """The value of `field` (dotted: 'labels.num') in a run's config.json `saved`; for a
    field newer than the run, its default, which is what the run did (as `same_run`)."""
    flat = _flat(saved)
    return flat[field] if field in flat else _defaults()[field]


def _defaults() -> dict:
    """The shared defaults (`defaults.base_config()`) as a flat config.json."""
    return _flat(json.loads(defaults.base_config().to_json()))
