"""The grouped report of a sweep: mean ± sample standard deviation (n - 1) and the number of
trials of any summary field, grouped by any config fields, as a markdown table.

    python -m aevb.sweeps.report runs/pretrain-labels --group_by=labels.num,classifier.encoder \\
        --fields=pretrained_test_accuracy,scratch_test_accuracy,accuracy_gain --scale=100

Reads every trial directly under WORKDIR (`launch.py --sweep --workdir=WORKDIR`) that holds
its `config.json` and `summary.json` (a finished trial; unfinished ones are counted and left
out), groups the trials by the values of the `--group_by` config fields (dotted names, as in
`--config.a.b=`; none: one group), and prints one row per group, ordered by those values:
each field's mean ± std over the group's trials that report it, and n. `--scale` multiplies
the values (100: fractions as percent), `--format` formats them (a Python format spec),
`--out` also writes the table to a file. A paired difference (a gain over a baseline in the
same trial, such as pretraining's `accuracy_gain`) is a summary field like any other.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from aevb.config.checks import UserError
from aevb.run import files
from aevb.sweeps.trials import SUMMARY_COLUMNS

Trial = tuple[str, dict[str, Any], dict[str, Any]]  # (name, config, summary)


class ReportError(UserError, ValueError):
    """The workdir or the requested fields cannot be reported."""


def load_trials(workdir: str) -> tuple[list[Trial], list[str]]:
    """(the finished trials under `workdir`, sorted by name; the names of the unfinished)."""
    if not os.path.isdir(workdir):
        raise ReportError(f"{workdir}: no such directory")
    finished, unfinished = [], []
    for name in sorted(os.listdir(workdir)):
        path = os.path.join(workdir, name)
        config_path, summary_path = files.path(path, files.CONFIG), files.path(path,
                                                                               files.SUMMARY)
        if not os.path.exists(config_path):
            continue  # not a trial: logs/, a vectorized group's checkpoints
        if not os.path.exists(summary_path):
            unfinished.append(name)
            continue
        with open(config_path) as f, open(summary_path) as g:
            finished.append((name, json.load(f), json.load(g)))
    if not finished:
        raise ReportError(f"{workdir}: no finished trial (a directory with config.json and "
                          f"summary.json){f'; {len(unfinished)} unfinished' if unfinished else ''}")
    return finished, unfinished


def config_value(config: dict[str, Any], field: str) -> Any:
    """The value of a dotted config field ('labels.num') in a config.json's dict."""
    value = config
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            raise ReportError(f"--group_by: {field} is not a config field")
        value = value[part]
    if isinstance(value, dict):
        raise ReportError(f"--group_by: {field} is a config section, not a field")
    return value


def number(summary: dict[str, Any], field: str, trial: str) -> float | None:
    """The summary field as a float (None when the trial does not report it)."""
    value = summary.get(field)
    if value is None:
        return None
    try:
        return float(value)  # bools, ints, and non-finite values written as "nan" or "inf"
    except (TypeError, ValueError):
        raise ReportError(f"--fields: {field} of trial {trial} is {value!r}, not a "
                          "number") from None


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation with n - 1 (nan for one value), n) of the values."""
    x = np.asarray(values, np.float64)
    return float(x.mean()), float(x.std(ddof=1)) if len(x) > 1 else math.nan, len(x)


def _sort_key(values: tuple[Any, ...]) -> tuple:
    """Numbers in numeric order, before strings; lists and the rest by their JSON text."""
    return tuple((0, v, "") if isinstance(v, (int, float)) and not isinstance(v, bool)
                 else (1, 0, json.dumps(v)) for v in values)


def group(trials: Sequence[Trial], group_by: Sequence[str]
          ) -> list[tuple[tuple[Any, ...], list[Trial]]]:
    """The trials grouped by the values of the config fields, ordered by those values."""
    groups: dict[str, tuple[tuple[Any, ...], list[Trial]]] = {}
    for trial in trials:
        values = tuple(config_value(trial[1], field) for field in group_by)
        groups.setdefault(json.dumps(values), (values, []))[1].append(trial)
    return sorted(groups.values(), key=lambda g: _sort_key(g[0]))


def table(trials: Sequence[Trial], group_by: Sequence[str], fields: Sequence[str],
          scale: float = 1.0, fmt: str = ".4g") -> str:
    """The markdown table: a row per group, its values, then per field 'mean ± std' (just
    the mean for one trial, '(n=k)' after it when only k of the group's trials report the
    field, '–' when none does), then n, the group's number of trials."""
    for field in fields:
        if not any(field in summary for _, _, summary in trials):
            known = sorted({k for _, _, s in trials for k in s if "/" not in k})
            raise ReportError(f"--fields: no trial reports {field}; the summaries have "
                              f"{', '.join(known[:30])}{', ...' if len(known) > 30 else ''}")

    def show(value: float) -> str:
        return format(value * scale, fmt)

    lines = ["| " + " | ".join([*group_by, *fields, "n"]) + " |",
             "|" + "---|" * (len(group_by) + len(fields) + 1)]
    for values, members in group(trials, group_by):
        cells = [json.dumps(v) if isinstance(v, (list, dict)) else str(v) for v in values]
        for field in fields:
            found = [x for name, _, s in members
                     if (x := number(s, field, name)) is not None]
            if not found:
                cells.append("–")
                continue
            mean, std, n = mean_std(found)
            cell = show(mean) if n == 1 else f"{show(mean)} ± {show(std)}"
            cells.append(cell + (f" (n={n})" if n < len(members) else ""))
        lines.append("| " + " | ".join([*cells, str(len(members))]) + " |")
    return "\n".join(lines) + "\n"


def report(workdir: str, group_by: Sequence[str] = (), fields: Sequence[str] = (),
           scale: float = 1.0, fmt: str = ".4g") -> str:
    """The report of the sweep in `workdir`: a line saying what it covers, and the table.
    `fields` default: the headline metrics of `sweep.md` the trials report."""
    trials, unfinished = load_trials(workdir)
    fields = list(fields) or [c for c in SUMMARY_COLUMNS if any(c in s for _, _, s in trials)]
    if not fields:
        raise ReportError("--fields: name the summary fields to report, e.g. "
                          f"--fields={','.join(sorted(trials[0][2])[:2])}")
    try:
        format(1.0, fmt)
    except ValueError:
        raise ReportError(f"--format={fmt}: not a format spec for numbers, e.g. .4g or "
                          ".2f") from None
    head = (f"{len(trials)} finished trials in {workdir}"
            + (f" ({len(unfinished)} unfinished, left out)" if unfinished else "")
            + (f"; values x {scale:g}" if scale != 1 else "")
            + "; mean ± sample std (n - 1) over each group's trials.")
    return head + "\n\n" + table(trials, group_by, fields, scale, fmt)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def main(argv: Sequence[str]) -> int:
    """The command line (module docstring); returns the exit status (2: a user error)."""
    parser = argparse.ArgumentParser(
        prog="python -m aevb.sweeps.report",
        description="Mean ± sample std of summary fields over a sweep's trials, grouped by "
                    "config fields: a markdown table.")
    parser.add_argument("workdir", help="the sweep's --workdir (one directory per trial)")
    parser.add_argument("--group_by", type=_names, default=[],
                        help="config fields, comma-separated, e.g. labels.num,classifier.encoder")
    parser.add_argument("--fields", type=_names, default=[],
                        help="summary fields, comma-separated (default: sweep.md's headline "
                             "metrics)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the values, e.g. 100 for percent")
    parser.add_argument("--format", default=".4g", help="format spec of the numbers")
    parser.add_argument("--out", default="", help="also write the report to this file")
    args = parser.parse_args(list(argv))
    try:
        text = report(args.workdir, args.group_by, args.fields, args.scale, args.format)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(text, end="")
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
