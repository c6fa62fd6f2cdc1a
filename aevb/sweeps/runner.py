"""Running a sweep: trials grouped for vectorizing, split over worker processes, finished
trials skipped, a table of their summaries at the end.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Sequence
from typing import Any

import ml_collections

from aevb import data as data_lib
from aevb.config.checks import Preempted, UserError
from aevb.regimes import run, vectorized
from aevb.regimes.validation import validate_against_data
from aevb.run import lock
from aevb.run.workdir import check_same_data, finished, lock_workdir
from aevb.sweeps import trials as sweeps
from aevb.sweeps import workers
from aevb.training import loop
from aevb.training.preemption import WATCH

Trial = tuple[str, sweeps.Overrides, ml_collections.ConfigDict]


def group_for_vectorizing(trials: Sequence[Trial]) -> list[list[Trial]]:
    """Trials that agree on every non-vectorizable override share a group, in order.

    Only plain runs (task `reconstruct`, schedule `joint`) with threefry keys vectorize;
    layer-wise and pretraining trials run one by one through their own regimes, and so do
    trials with `train.prng_impl` rbg or unsafe_rbg, whose draws under `jax.vmap` are not
    those of the trial alone (tests/test_sweeps.py), and trials that select on validation
    (`train.select_on`: each stops at its own epoch).
    """
    groups: dict[str, list[Trial]] = {}
    for i, trial in enumerate(trials):
        config = trial[2]
        if (config.task != "reconstruct" or config.train.schedule != "joint"
                or config.train.prng_impl != "threefry2x32" or config.train.select_on):
            groups[f"alone-{i}"] = [trial]
            continue
        key = json.dumps({k: v for k, v in trial[1].items()
                          if k not in vectorized.VECTORIZABLE}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(trial)
    return list(groups.values())


def grouping_note(trials: Sequence[Trial], groups: list[list[Trial]]) -> str:
    """Why the trials run as more than one program, naming the overridden fields that keep
    them apart ('' when they run as one)."""
    varying = sorted({field for _, overrides, _ in trials for field in overrides
                      if field not in vectorized.VECTORIZABLE
                      and len({json.dumps(o.get(field), default=str)
                               for _, o, _ in trials}) > 1})
    if len(groups) < 2 or not varying:
        return ""
    return (f"vectorizing: {len(trials)} trials in {len(groups)} programs; trials that "
            f"differ in {', '.join(varying)} run apart (only "
            f"{', '.join(vectorized.VECTORIZABLE)} vary within one program, e.g. the peak "
            "learning rate under one train.lr_schedule)")


def run_unit(unit: Sequence[tuple[str, ml_collections.ConfigDict]], root: str) -> None:
    """One trial in `root/<name>`, or several trials of one vectorizable group as one
    vmapped program (a sweep worker's unit of work)."""
    if len(unit) == 1:
        name, config = unit[0]
        run(config, os.path.join(root, name))
    else:
        vectorized.train_trials(list(unit), root)


def _units(groups: list[list[Trial]], root: str, num_workers: int
           ) -> list[list[tuple[str, ml_collections.ConfigDict]]]:
    """The unfinished trials as units for the workers: each group split into up to
    `num_workers` contiguous shares of near-equal size."""
    units = []
    for group in groups:
        todo = [(name, config) for name, _, config in group
                if finished(config, os.path.join(root, name)) is None]
        shares = min(num_workers, len(todo))
        bounds = [round(i * len(todo) / shares) for i in range(shares + 1)] if todo else []
        units += [todo[a:b] for a, b in itertools.pairwise(bounds)]
    return units


def _check_against_data(trials: Sequence[Trial], root: str) -> None:
    """Every trial's config against its data, each distinct `data` section loaded once, and
    every trial run before (finished ones included) against the data it ran on."""
    loaded: dict[str, data_lib.Datasets] = {}
    for name, _, config in trials:
        key = config.data.to_json()
        try:
            if key not in loaded:
                loaded[key] = data_lib.load(config.data)
            datasets = loaded[key]
            validate_against_data(config, datasets.train.images.shape[0], datasets.image_shape,
                                  datasets.has_labels)
            check_same_data(os.path.join(root, name), datasets.record())
        except UserError as e:
            raise sweeps.SweepError(f"trial {name}: {e}") from e


def run_sweep(base: ml_collections.ConfigDict, sweep: Sequence[sweeps.Overrides],
              root: str, vectorize: bool = True, num_workers: int = 0
              ) -> list[dict[str, Any]]:
    """Runs the sweep in `root` (every trial checked against the config rules and its data
    first; finished trials skipped) and writes sweep.csv and sweep.md. Returns one row per
    trial: its overrides and summary.

    Trials that can share one vmapped program do (`vectorize`); the rest run one by one.
    `num_workers` > 1: the work runs in that many processes, one per core
    (`aevb/sweeps/workers.py`, the faster way on a CPU), each vectorizable group split over them."""
    trials = sweeps.make_trials(base, sweep)
    _check_against_data(trials, root)
    groups = group_for_vectorizing(trials) if vectorize else [[t] for t in trials]
    note = grouping_note(trials, groups) if vectorize else ""
    if note:
        loop.Run.log(note)
    with lock.scope(), WATCH.installed():
        lock_workdir(root)
        if num_workers > 1:
            workers.run_units(_units(groups, root, num_workers), root, num_workers, run_unit)
            groups = []
        for group in groups:
            todo = [t for t in group if finished(t[2], os.path.join(root, t[0])) is None]
            if todo and WATCH.requested:  # between trials: start no other
                raise Preempted(f"{WATCH.signal_name}: the sweep in {root} stopped before "
                                f"trial {todo[0][0]}; the same command runs the unfinished "
                                "trials")
            if len(todo) == 1:
                name, _, config = todo[0]
                loop.Run.log(f"== trial {name}")
                run(config, os.path.join(root, name))
            elif todo:
                vectorized.train_trials([(name, config) for name, _, config in todo], root)
        rows = [{"trial": name, **overrides, **finished(config, os.path.join(root, name))}
                for name, overrides, config in trials]
        sweeps.write_tables(rows, list(trials[0][1]), root)
    return rows
