"""Hyperparameter sweeps: trial lists, their validation, running them, and their tables.

An experiment file may define `get_sweep()` returning a list of override dicts
({"model.latent_dim": 2, "train.seed": 0}, ...), usually built with `product` and `zip_`.
`launch.py --sweep` runs every trial in `<workdir>/<trial name>` and writes `sweep.csv` and
`sweep.md`; `--sweep_print` prints one launch.py command per trial instead. Trials that
differ only in vectorizable fields (seed, learning rate, the objectives' float fields) run
together as one vmapped program (aevb/vectorized.py); the rest one after another. A rerun
skips finished trials (those with a summary.json) and resumes the unfinished ones.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import shlex
from collections.abc import Sequence
from typing import Any

import ml_collections

from aevb import configs, train, vectorized

Overrides = dict[str, Any]


class SweepError(ValueError):
    """The sweep definition is unusable; nothing has run."""


def _check_axes(axes: dict[str, Sequence[Any]]) -> None:
    if not axes:
        raise SweepError("a sweep needs at least one field with a list of values")
    for field, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise SweepError(f"sweep field {field}: expected a list of values, got {values!r}")
        if not values:
            raise SweepError(f"sweep field {field}: the list of values is empty")


def product(axes: dict[str, Sequence[Any]]) -> list[Overrides]:
    """Every combination: product({"a.x": [1, 2], "b.y": [3, 4]}) -> 4 trials."""
    _check_axes(axes)
    fields = list(axes)
    return [dict(zip(fields, values, strict=True))
            for values in itertools.product(*axes.values())]


def zip_(axes: dict[str, Sequence[Any]]) -> list[Overrides]:
    """Values side by side: zip_({"a.x": [1, 2], "b.y": [3, 4]}) -> 2 trials."""
    _check_axes(axes)
    lengths = {len(v) for v in axes.values()}
    if len(lengths) != 1:
        raise SweepError(f"zip_ needs lists of one length, got {sorted(lengths)}")
    return [dict(zip(axes, values, strict=True)) for values in zip(*axes.values(), strict=True)]


def trial_name(overrides: Overrides) -> str:
    """A directory name from the overrides: 'latent_dim=2,seed=0'."""
    return ",".join(f"{field.split('.')[-1]}={value}" for field, value in overrides.items())


def apply_overrides(base: ml_collections.ConfigDict, overrides: Overrides
                    ) -> ml_collections.ConfigDict:
    """A copy of base with the overrides set; unknown fields and wrong types raise."""
    config = base.copy_and_resolve_references()
    for field, value in overrides.items():
        node, *path = field.split(".")
        parent = config
        for part in [node, *path][:-1]:
            if part not in parent or not isinstance(parent[part], ml_collections.ConfigDict):
                raise SweepError(f"sweep field {field}: no such config field")
            parent = parent[part]
        leaf = field.split(".")[-1]
        if leaf not in parent:
            raise SweepError(f"sweep field {field}: no such config field")
        try:
            parent[leaf] = value
        except (TypeError, ValueError) as e:
            raise SweepError(f"sweep field {field}={value!r}: {e}") from e
    return config


def make_trials(base: ml_collections.ConfigDict, sweep: Sequence[Overrides]
                ) -> list[tuple[str, Overrides, ml_collections.ConfigDict]]:
    """(name, overrides, config) per trial, every one validated before anything runs."""
    if not isinstance(sweep, Sequence) or isinstance(sweep, (str, bytes)) or not sweep:
        raise SweepError(f"get_sweep() must return a non-empty list of dicts, got {sweep!r}")
    trials, seen = [], {}
    for i, overrides in enumerate(sweep):
        if not isinstance(overrides, dict) or not overrides:
            raise SweepError(f"trial {i}: expected a non-empty dict of overrides, "
                             f"got {overrides!r}")
        name = trial_name(overrides)
        if name in seen:
            raise SweepError(f"trials {seen[name]} and {i} have the same name {name!r}")
        seen[name] = i
        config = apply_overrides(base, overrides)
        try:
            configs.validate(config)
        except configs.ConfigError as e:
            raise SweepError(f"trial {name}: {e}") from e
        trials.append((name, overrides, config))
    return trials


def group_for_vectorizing(trials) -> list[list]:
    """Trials that agree on every non-vectorizable override share a group, in order.

    Only plain runs (task `reconstruct`, schedule `joint`) vectorize; layer-wise and
    pretraining trials run one by one through their own pipelines.
    """
    groups: dict[str, list] = {}
    for i, trial in enumerate(trials):
        config = trial[2]
        if config.task != "reconstruct" or config.train.schedule != "joint":
            groups[f"alone-{i}"] = [trial]
            continue
        key = json.dumps({k: v for k, v in trial[1].items()
                          if k not in vectorized.VECTORIZABLE}, sort_keys=True, default=str)
        groups.setdefault(key, []).append(trial)
    return list(groups.values())


def _finished(workdir: str, name: str) -> dict | None:
    path = os.path.join(workdir, name, "summary.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return None


def run(base: ml_collections.ConfigDict, sweep: Sequence[Overrides], workdir: str,
        vectorize: bool = True) -> list[dict[str, Any]]:
    """Runs the sweep (skipping finished trials) and writes sweep.csv and sweep.md."""
    trials = make_trials(base, sweep)
    groups = group_for_vectorizing(trials) if vectorize else [[t] for t in trials]
    for group in groups:
        todo = [t for t in group if _finished(workdir, t[0]) is None]
        if not todo:
            continue
        if len(todo) == 1:
            name, _, config = todo[0]
            print(f"== trial {name}", flush=True)
            train.train_and_evaluate(config, os.path.join(workdir, name))
        else:
            vectorized.train_trials([(name, config) for name, _, config in todo], workdir)
    rows = [{"trial": name, **overrides, **_finished(workdir, name)}
            for name, overrides, _ in trials]
    write_tables(rows, [f for f in trials[0][1]], workdir)
    return rows


SUMMARY_COLUMNS = ("test_neg_elbo", "test_log_likelihood", "active_units", "test_mse",
                   "pca_mse", "test_denoising_mse", "code_mean_activation",
                   "code_fraction_near_zero", "train_seconds")


def write_tables(rows: list[dict[str, Any]], fields: list[str], workdir: str) -> None:
    """sweep.csv (every column) and sweep.md (the overrides and the headline metrics)."""
    os.makedirs(workdir, exist_ok=True)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(os.path.join(workdir, "sweep.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    shown = ["trial", *fields, *(c for c in SUMMARY_COLUMNS if any(c in r for r in rows))]
    fmt = lambda v: f"{v:.5g}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in shown) + " |" for r in rows]
    with open(os.path.join(workdir, "sweep.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def commands(config_arg: str, workdir: str, sweep: Sequence[Overrides],
             base: ml_collections.ConfigDict) -> list[str]:
    """One launch.py command per trial (validated first), for a scheduler or TPU VMs."""
    out = []
    for name, overrides, _ in make_trials(base, sweep):
        flags = [f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
                 for k, v in overrides.items()]
        out.append(shlex.join(["python", "launch.py", f"--config={config_arg}", *flags,
                               f"--workdir={os.path.join(workdir, name)}"]))
    return out
