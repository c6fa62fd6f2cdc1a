"""Running the rows of the results page, one after another, each as the command a reader
would type (`python launch.py --config=... --workdir=ROOT/KEY`, a process of its own), and
keeping what each measured as a record (`RECORDS/KEY.json`).

Resumable row by row: a row with a record of the same command is not run again, and a row
whose process was interrupted resumes from its workdir's last checkpoint when the command
runs again (launch.py's own resume). The record holds the summary's numbers, the wall time
of the process that finished the row (start-up to exit, as the reader waits for it), the
machine and the date.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from aevb.results import page
from aevb.results.rows import ROWS, TABLES, Row, Table, put
from aevb.run import files

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


PREEMPTED = 75  # launch.py's exit status after SIGTERM or SIGINT: its round is saved


class RowError(RuntimeError):
    """A row's command failed or was preempted; the message names the row and what to do,
    `status` is the command's exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def _wait(proc: subprocess.Popen) -> int:
    """The row's exit status. A SIGTERM to this process is passed on to the row, and a
    Ctrl-C reaches it anyway (one process group): either way the row saves its round and
    exits with PREEMPTED, and this process waits for that instead of dying first."""
    previous = signal.signal(signal.SIGTERM, lambda signum, _: proc.send_signal(signum))
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)


def _check_status(name: str, status: int, log: str, saved: str) -> None:
    """RowError unless the command of `name` exited 0: preempted (`saved` says what was
    kept; the same command resumes it) or failed (its output is in `log`)."""
    if status == PREEMPTED:
        raise RowError(f"{name}: preempted, {saved}; the same command resumes it", status)
    if status != 0:
        raise RowError(f"{name}: exit status {status}; its output is in {log}", status)


def machine() -> str:
    """'2-core Intel(R) Xeon(R) ... CPU' and, where JAX sees one, its accelerator."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{os.cpu_count()}-core {model}"
    import jax  # only here: the page alone needs no JAX

    device = jax.devices()[0]
    return text if device.platform == "cpu" else f"{text}; {device.device_kind}"


def load_records(directory: str) -> dict[str, dict[str, Any]]:
    """Every record in `directory` by row key ({} when there is none)."""
    if not os.path.isdir(directory):
        return {}
    out = {}
    for name in sorted(os.listdir(directory)):
        if name.endswith(".json"):
            with open(os.path.join(directory, name)) as f:
                out[name[:-5]] = json.load(f)
    return out


def command(row: Row, quick: bool, flags: Sequence[str]) -> str:
    """The row's command line as recorded (without its --workdir)."""
    return " ".join([row.command(quick), shlex.join(flags)]).rstrip()


def learning_curves(workdir: str, path: str) -> str:
    """The run's training -ELBO per epoch and its validation (else test) -ELBO per
    evaluation, from metrics.jsonl, as a PNG at `path`: the y range from the curves' floor
    to their height after the first twentieth of the epochs (the first epochs' hundreds of
    nats would flatten the rest), the selected epoch marked when the run selects."""
    from aevb.evaluation import plots

    with open(files.path(workdir, files.METRICS)) as f:
        lines = [json.loads(line) for line in f if line.strip()]
    lines = [line for line in lines if not line.get("final")]
    held_out = "validation" if any("validation_neg_elbo" in m for m in lines) else "test"
    curves = {name: [(m["epoch"], m[f"{split}_neg_elbo"]) for m in lines
                     if f"{split}_neg_elbo" in m]
              for name, split in (("train", "train"), (held_out, held_out))}
    values = [y for points in curves.values() for _, y in points]
    last = max(x for points in curves.values() for x, _ in points)
    later = [y for points in curves.values() for x, y in points if x > last / 20] or values
    low, high = min(values), max(later)
    with open(files.path(workdir, files.SUMMARY)) as f:
        selected = json.load(f).get("selected_epoch")
    return plots.save_curves(curves, "epoch", "-ELBO (nats)", path, marker="",
                             ylim=(low - 0.05 * (high - low), high),
                             mark=None if selected is None else (selected, "selected"))


def copy_figures(row: Row, workdir: str, figures: str) -> list[str]:
    """The row's pictures (and learning curves) as `figures/<key>-<name>.png`."""
    os.makedirs(figures, exist_ok=True)
    written = []
    for name in row.figures:
        target = os.path.join(figures, f"{row.key}-{name}")
        shutil.copyfile(os.path.join(workdir, name), target)
        written.append(target)
    if row.curves:
        written.append(learning_curves(workdir, os.path.join(figures,
                                                              f"{row.key}-curves.png")))
    return written


def run_row(row: Row, root: str, records: str, figures: str, quick: bool = False,
            flags: Sequence[str] = ()) -> dict[str, Any]:
    """Runs `row` in `root/<key>` (or resumes it there), writes its record into `records`
    and its pictures into `figures`; returns the record."""
    workdir = os.path.join(root, row.key)
    resumed = os.path.exists(files.path(workdir, files.CONFIG))  # an earlier sitting began it
    os.makedirs(root, exist_ok=True)
    log = os.path.join(root, f"{row.key}.log")
    # "python launch.py --config=... FLAGS" with this interpreter and the row's workdir
    args = [sys.executable, *shlex.split(command(row, quick, flags))[1:],
            f"--workdir={os.path.abspath(workdir)}"]
    t0 = time.time()
    with open(log, "a") as out:
        status = _wait(subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
    wall = time.time() - t0
    _check_status(f"row {row.key}", status, log, f"its last round saved in {workdir}")
    with open(files.path(workdir, files.SUMMARY)) as f:
        summary = json.load(f)
    copy_figures(row, workdir, figures)
    record = {"row": row.name, "tag": row.tag, "command": command(row, quick, flags),
              "quick": quick, "wall_seconds": round(wall, 1), "resumed": resumed,
              "machine": machine(), "date": datetime.date.today().isoformat(),
              "summary": {k: v for k, v in summary.items()
                          if isinstance(v, (int, float, str)) and "/" not in k}}
    os.makedirs(records, exist_ok=True)
    with open(os.path.join(records, f"{row.key}.json"), "w") as f:
        json.dump(record, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return record


def run_rows(rows: Sequence[Row], root: str, records: str, figures: str,
             quick: bool = False, flags: Sequence[str] = ()) -> list[str]:
    """Runs every row without a record of the same command; returns the keys it ran."""
    done = load_records(records)
    ran = []
    for row in rows:
        if done.get(row.key, {}).get("command") == command(row, quick, flags):
            print(f"{row.key}: recorded already, not run again", flush=True)
            continue
        print(f"{row.key}: {command(row, quick, flags)}", flush=True)
        record = run_row(row, root, records, figures, quick, flags)
        print(f"{row.key}: {record['wall_seconds']:.0f} s", flush=True)
        ran.append(row.key)
    return ran


def collect(table: Table, sweep_root: str, records: str) -> int:
    """Keeps each finished trial of the sweep in `sweep_root` as `records/<key>/<trial>.json`
    (its group's config values and its summary's numbers); returns how many it wrote. A
    trial kept before with the same record keeps its file; with the same summary under
    other groups (a table that groups by a new field) its groups are rewritten, but not
    the machine and date it ran on."""
    from aevb.run import workdir as workdir_lib
    from aevb.sweeps.report import ReportError, load_trials

    try:
        finished, _ = load_trials(sweep_root)
    except ReportError:  # no sweep there yet, or no finished trial
        return 0
    directory = os.path.join(records, table.key)
    os.makedirs(directory, exist_ok=True)
    written = 0
    for name, config, summary in finished:
        numbers = {k: v for k, v in summary.items()
                   if isinstance(v, (int, float, str)) and "/" not in k}
        group: dict[str, Any] = {}
        for field in (table.columns_by, *table.rows_by):
            put(group, field, workdir_lib.value_in(config, field))  # a newer field: its default
        path = os.path.join(directory, f"{name}.json")
        ran = {"machine": machine(), "date": datetime.date.today().isoformat()}
        if os.path.exists(path):
            with open(path) as f:
                kept = json.load(f)
            if kept["summary"] == numbers:
                if kept["config"] == group:
                    continue
                ran = {k: kept[k] for k in ran}  # regrouped, not run again
        with open(path, "w") as f:
            json.dump({"trial": name, "config": group, "summary": numbers, **ran},
                      f, indent=1, ensure_ascii=False)
            f.write("\n")
        written += 1
    return written


def load_table(records: str, table: Table) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(the kept trials of `table`, its record of sittings: {} when none)."""
    directory = os.path.join(records, table.key)
    trials = list(load_records(directory).values())
    sittings = load_records(records).get(table.key, {})
    return trials, sittings


def restore_kept(table: Table, workdir: str, records: str) -> int:
    """Puts every trial kept in `records/<key>/` whose directory is missing from the sweep's
    `workdir` (a sitting on another machine, a fresh checkout) back as a finished trial: its
    config.json from the sweep's definition, its summary.json from the record. The sweep
    then skips it, and its report counts it. Returns how many it restored."""
    import importlib.util

    from aevb import sweeps
    from aevb.run import workdir as workdir_lib

    spec = importlib.util.spec_from_file_location(
        f"_table_{table.file}", os.path.join(REPO, "experiments", f"{table.file}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kept = load_records(os.path.join(records, table.key))
    restored = 0
    for name, _, config in sweeps.make_trials(module.get_config(table.variant),
                                              module.get_sweep(table.sweep)):
        trial = os.path.join(workdir, name)
        if name not in kept or os.path.exists(trial):
            continue
        os.makedirs(trial)
        with open(files.path(trial, files.CONFIG), "w") as f:
            f.write(config.to_json())
        with open(files.path(trial, files.SUMMARY), "w") as f:
            json.dump(kept[name]["summary"], f, indent=2)
        assert workdir_lib.finished(config, trial) is not None, name
        restored += 1
    return restored


def run_table(table: Table, root: str, records: str, flags: Sequence[str] = ()
              ) -> dict[str, Any]:
    """Runs (or resumes) the table's sweep in `root/<key>` (the trials kept by earlier
    sittings restored first, `restore_kept`) with `launch.py` flags added (e.g.
    `--workers=8`: how it runs, not what), keeps its finished trials (`collect`, also
    when the sweep is interrupted or fails), and adds this sitting (its wall time, machine,
    date, flags, trials kept) to `records/<key>.json`; returns that record."""
    workdir = os.path.join(root, table.key)
    os.makedirs(root, exist_ok=True)
    os.makedirs(records, exist_ok=True)
    restored = restore_kept(table, workdir, records)
    if restored:
        print(f"{table.key}: {restored} trials kept by earlier sittings restored in {workdir}",
              flush=True)
    log = os.path.join(root, f"{table.key}.log")
    args = [sys.executable, *shlex.split(table.command())[1:], *flags,
            f"--workdir={os.path.abspath(workdir)}"]
    t0 = time.time()
    try:
        with open(log, "a") as out:
            status = _wait(subprocess.Popen(args, cwd=REPO, stdout=out,
                                            stderr=subprocess.STDOUT))
    finally:
        kept = collect(table, workdir, records)
        _, record = load_table(records, table)
        record = {"table": table.key, "command": table.command(),
                  "sittings": [*record.get("sittings", []), {
                      "wall_seconds": round(time.time() - t0, 1), "trials_kept": kept,
                      **({"flags": shlex.join(flags)} if flags else {}),
                      "machine": machine(), "date": datetime.date.today().isoformat()}]}
        with open(os.path.join(records, f"{table.key}.json"), "w") as f:
            json.dump(record, f, indent=1, ensure_ascii=False)
            f.write("\n")
    _check_status(f"table {table.key}", status, log, "its finished trials kept")
    return record


def readme_block_from_records(records: str) -> str:
    """The README's block as the records in `records` write it: the rows, then the tables."""
    return page.render_readme_block(ROWS, load_records(records), "docs/results.md", [
        (table, *load_table(records, table)) for table in TABLES])


def page_from_records(records: str, quick: bool = False) -> str:
    """The results page as the records in `records` write it: the rows, then the tables."""
    tables = [line for table in TABLES for line in page.render_table(table,
                                                                     *load_table(records, table))]
    return page.render_page(ROWS, load_records(records), "results/figures", quick, tables)
