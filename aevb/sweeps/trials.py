"""Hyperparameter sweeps: trial lists, their validation, running them, and their tables.

An experiment file may define `get_sweep(name: str = "")` returning a list of override
dicts ({"model.latent_dim": 2, "train.seed": 0}, ...), usually built with `product` and
`zip_`; `named` picks one of several sweeps by name ("" is the file's default sweep).
`launch.py --sweep` runs the default sweep and `--sweep=NAME` the named one, every trial in
`<workdir>/<trial name>` (`runner.py`: trials that differ only in vectorizable fields train
together as one vmapped program, the rest one after another; a rerun skips finished
trials), and writes `sweep.csv` and `sweep.md` with `write_tables`; `--sweep_print[=NAME]`
prints one launch.py command per trial instead. `report.py` tabulates mean ± std of any
summary field over the trials, grouped by config fields.
"""

from __future__ import annotations

import csv
import itertools
import os
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from ml_collections.config_flags import config_path

from aevb.config.checks import ConfigError, UserError
from aevb.regimes.validation import validate

Overrides = dict[str, Any]


class SweepError(UserError, ValueError):
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
    """A directory name from the overrides: 'latent_dim=2,seed=0'; fields whose last parts
    coincide keep their whole names: 'train.seed=0,labels.seed=0,num=100'."""
    last = [field.split(".")[-1] for field in overrides]
    return ",".join(f"{field if last.count(short) > 1 else short}={value}"
                    for short, (field, value) in zip(last, overrides.items(), strict=True))


def named(name: str, known: dict[str, Callable[[], list[Overrides]]], file: str
          ) -> list[Overrides]:
    """The sweep called `name` among an experiment file's `known` ones, for its
    `get_sweep(name)`; "" is the file's default sweep (`--sweep` alone). An unknown name is
    a SweepError naming the known ones."""
    if name not in known:
        allowed = ", ".join(f"--sweep={n}" if n else "--sweep" for n in known)
        what = f"--sweep={name}: {file} has no sweep of that name" if name else (
            f"--sweep: {file} has no default sweep")
        raise SweepError(f"{what}; use {allowed}")
    return known[name]()


def apply_overrides(base: ml_collections.ConfigDict, overrides: Overrides
                    ) -> ml_collections.ConfigDict:
    """A copy of base with the overrides set; unknown fields and wrong types raise."""
    config = base.copy_and_resolve_references()
    for field, value in overrides.items():
        try:
            old = config_path.get_value(field, config)
        except (KeyError, AttributeError, IndexError, ValueError) as e:
            raise SweepError(f"sweep field {field}: no such config field") from e
        if isinstance(old, ml_collections.ConfigDict):
            raise SweepError(f"sweep field {field}: a section, not a field")
        try:
            config_path.set_value(field, config, value)
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
            validate(config)
        except ConfigError as e:
            raise SweepError(f"trial {name}: {e}") from e
        trials.append((name, overrides, config))
    return trials


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

    def fmt(v: Any) -> str:
        return f"{v:.5g}" if isinstance(v, float) else str(v)

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
