"""Where metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard event files.

Only process 0 writes. The end-of-run measurements go on one last line marked
`"final": true`, which replaces any earlier final line. On resume the loop drops the lines
after the restored epoch (`drop_from`), so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping

import jax

from aevb.run import files


def _plain(value):
    value = float(value) if hasattr(value, "__float__") and not isinstance(value, int) else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def read(workdir: str) -> list[dict]:
    """The lines of `<workdir>/metrics.jsonl` as dicts, in order ([] before the first)."""
    path = files.path(workdir, files.METRICS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class MetricWriter:
    """Appends scalar metrics to `<workdir>/metrics.jsonl` and TensorBoard events."""

    def __init__(self, workdir: str):
        self.enabled = jax.process_index() == 0
        self.path = files.path(workdir, files.METRICS)
        self._tb_dir = files.path(workdir, files.TENSORBOARD)
        self._tb = None  # opened at the first line: a run that stops before writes nothing

    def _keep(self, keep) -> None:
        records = read(os.path.dirname(self.path))
        kept = [json.dumps(r) + "\n" for r in records if keep(r)]
        if len(kept) < len(records):
            with open(self.path + ".tmp", "w") as f:
                f.writelines(kept)
            os.replace(self.path + ".tmp", self.path)  # a kill now leaves one whole file

    def drop_from(self, epoch: int) -> None:
        """Drops the lines of `epoch` and later, and the final line: a resumed phase logs
        them again."""
        if self.enabled:
            self._keep(lambda record: record["epoch"] < epoch and not record.get("final"))

    def mark_preempted(self, epoch: int, step: int) -> None:
        """Records that the run stopped after `epoch` on a preemption notice: a
        `"preempted": true` line in metrics.jsonl only, which `drop_preempted` removes."""
        if self.enabled:
            with open(self.path, "a") as f:
                f.write(json.dumps({"epoch": epoch, "step": step, "preempted": True}) + "\n")

    def drop_preempted(self) -> None:
        """Removes the lines of `mark_preempted`: a resumed run reads as an uninterrupted one."""
        if self.enabled:
            self._keep(lambda record: not record.get("preempted"))

    def write(self, epoch: int, step: int, metrics: Mapping[str, float],
              final: bool = False) -> None:
        """Records one line {epoch, step, **metrics} and one TensorBoard scalar per metric."""
        if not self.enabled:
            return
        record = {"epoch": epoch, "step": step, **{k: _plain(v) for k, v in metrics.items()}}
        if final:
            self._keep(lambda r: not r.get("final"))
            record["final"] = True
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is None:
            from tensorboardX import SummaryWriter  # heavy import, writer only
            self._tb = SummaryWriter(self._tb_dir)
        for name in metrics:
            if isinstance(record[name], (int, float)):
                self._tb.add_scalar(name, record[name], step)
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
