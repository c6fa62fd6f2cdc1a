"""The one training loop: every regime's training runs through `Run.train`.

A regime (a joint run, each layer-wise phase and the fine-tuning, each classifier of
pretraining, a vectorized group of trials) describes a stretch of training as a `Phase`:
its initial state, its compiled round (an epoch, or N steps), its evaluation. The loop
owns, once for all of them:

  * each round's keys (`Phase.keys`, the round folded in) and the (epoch, step) cursor
    that places every phase's lines after the previous phase's;
  * checkpoint restore (resume) and save: every `Cadence.checkpoint_every` rounds, at the
    first round boundary `Cadence.checkpoint_every_secs` after the last save (process 0's
    clock decides for every process), after the last round and on preemption; the
    evaluation cadence: every `Cadence.eval_every` rounds and the last (`due`);
    `cadence(config, section)` reads both from the regime's config section;
  * preemption (SIGTERM, SIGINT; `aevb/training/preemption.py`): the round in progress ends,
    is saved and marked `"preempted": true` in metrics.jsonl, and `checks.Preempted` is
    raised; the resume removes the mark;
  * the non-finite-loss stop (`checks.NonFiniteLossError`; the last good checkpoint stays);
  * model selection and early stopping (`Phase.select`, a `Select`): the parameters
    of the evaluation with the best validation metric are kept (in the checkpoint too, so
    a resumed run selects as an uninterrupted one), training stops after `patience`
    evaluations without improvement, and the phase reports the selected parameters;
  * metrics lines (metrics.jsonl and TensorBoard, process 0) and progress lines (process 0);
  * the end of a run: pictures, `summary.json`, the final metrics line and the `time:` line
    (`Run.finish`), which begins with the process's start-up (`aevb/run/startup.py`).

A `Run` writes to one workdir, or to the T workdirs of a vectorized group, whose metrics
then carry a leading trial axis [T] that the loop splits per trial.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from aevb.config.checks import NonFiniteLossError, Preempted
from aevb.run import files, parallel, startup
from aevb.run.checkpoints import checkpoint_manager, restore_or_keep
from aevb.run.metrics import MetricWriter
from aevb.training.phase import Cadence, Display, Phase, Select, cadence, due
from aevb.training.preemption import WATCH
from aevb.training.selection import Selection, copy_tree, restorable, unpack

Metrics = dict[str, Any]
__all__ = ["TIME_PARTS", "Cadence", "Display", "Phase", "PhaseResult", "Run", "Select",
           "cadence", "due"]
# The clock of time-based checkpoints (tests replace it).
clock = time.monotonic
# Where a run's wall time goes, printed by `Run.finish` as its `time:` line. compilation:
# the first round's time beyond the mean of the others (JIT of the round, on first use).
TIME_PARTS = ("compilation", "training", "evaluation", "checkpoints", "pictures")


@dataclasses.dataclass
class PhaseResult:
    """What a phase ended with: the state, the last round's training metrics and the
    evaluation (one dict per trial) of the result's parameters, and its timings. With
    `Phase.select`: `params` are the selected parameters, of round `selected_round`, and
    `eval` is theirs; else `params` are the final state's."""

    state: Any
    train: list[Metrics]
    eval: list[Metrics]
    rounds_run: int
    seconds: float
    examples_per_s: float | None
    params: Any = None
    selected_round: int | None = None


# ----------------------------------------------------------------------------- the run

@contextlib.contextmanager
def _trace(phase: Phase, on: bool, manager: ocp.CheckpointManager) -> Iterator[None]:
    """A jax.profiler trace of the block into `profile/` beside the phase's checkpoints
    (TensorBoard's profile plugin or Perfetto open it), when `on`. The checkpoint being
    written in the background is finished first, so the trace shows the round alone (and
    once, in the test suite, a trace started beside Orbax's saving threads ended in a
    segmentation fault in start_trace)."""
    if not on:
        yield
        return
    manager.wait_until_finished()
    directory = files.path(os.path.dirname(os.path.abspath(phase.checkpoint_dir)), files.PROFILE)
    with jax.profiler.trace(directory):
        yield
    Run.log(f"profile of one {phase.unit} written to {directory}")


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _startup_text(parts: dict[str, float] | None) -> str:
    """'start-up 2.10 s (imports 1.30, backend 0.01, data 0.40, setup 0.40), ' or ''."""
    if not parts:
        return ""
    split = ", ".join(f"{name} {s:.2f}" for name, s in parts.items())
    return f"start-up {sum(parts.values()):.2f} s ({split}), "


def _format(summary: Metrics) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in summary.items())


class Run:
    """The files and console lines of one run, or of the trials of a vectorized group.

    `workdirs`: one per trial (a single run: one), claimed already (`workdir.claim`). When
    a phase restores its checkpoint and has rounds left to run, each workdir's metrics.jsonl
    loses the lines logged after that round (so it reads as one uninterrupted run) and its
    summary.json becomes summary.stale.json (it no longer describes the checkpoints) until
    `finish` writes the new one. Nothing changes before a checkpoint has been restored.
    """

    def __init__(self, workdirs: Sequence[str], trial_names: Sequence[str] | None = None):
        self.workdirs = list(workdirs)
        self.trial_names = None if trial_names is None else list(trial_names)
        self.writers = [MetricWriter(w) for w in workdirs]
        self.seconds: dict[str, float] = dict.fromkeys(TIME_PARTS, 0.0)
        # The cursor: the epoch and step after the last line of the phases run so far.
        # A phase's round r is logged as epoch `epoch + r` (one more with an initial line)
        # at step `step` + its state's step; the final line goes at the cursor.
        self.epoch, self.step = 0, 0
        self._offset = 0
        self.startup: dict[str, float] | None = None  # the process's start-up, by part
        self._last_save = clock()

    @contextlib.contextmanager
    def timed(self, part: str) -> Iterator[None]:
        """Adds the block's wall time to `part` of the run's time line (TIME_PARTS)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - t0

    @staticmethod
    def log(message: str) -> None:
        """Prints on process 0 only: one line per epoch, not one per host."""
        if jax.process_index() == 0:
            print(message, flush=True)

    def _split(self, metrics: Metrics) -> list[Metrics]:
        """Per-trial dicts of plain numbers from metrics of scalars or [T] arrays."""
        metrics = parallel.fetch(metrics)
        if self.trial_names is None:
            return [{k: float(v) for k, v in metrics.items()}]
        return [{k: float(v[t]) for k, v in metrics.items()}
                for t in range(len(self.trial_names))]

    def _write(self, phase: Phase, r: int, step: int, per_trial: list[Metrics],
               name: str | None = None) -> None:
        name = phase.name if name is None else name
        for writer, metrics in zip(self.writers, per_trial, strict=True):
            if name:
                metrics = {"phase": name, **{f"{name}/{k}": v for k, v in metrics.items()}}
            writer.write(self._offset + r, step, metrics)

    def _stop_if_not_finite(self, phase: Phase, r: int, step: int, train: list[Metrics],
                            manager: ocp.CheckpointManager) -> None:
        losses = [m["train_loss"] for m in train]
        if all(np.isfinite(losses)):
            return
        self._write(phase, r, step, train)
        manager.wait_until_finished()  # the last good checkpoint is on disk before the stop
        bad = ("" if self.trial_names is None else " in trials " + str(
            [n for n, loss in zip(self.trial_names, losses) if not np.isfinite(loss)]))
        where = f"{phase.name} " if phase.name else ""
        raise NonFiniteLossError(
            f"{where}{phase.label(r, width=False)}: the training loss is "
            f"{losses[0] if len(losses) == 1 else losses}{bad}; stopped. The last good "
            f"checkpoint ({phase.unit} {manager.latest_step()}) is kept in "
            f"{phase.checkpoint_dir}. "
            f"Try a smaller {phase.display.learning_rate_field}.")

    def _progress(self, phase: Phase, r: int, train: list[Metrics], evals: list[Metrics],
                  rate: float) -> None:
        join = lambda values: " ".join(f"{v:.4g}" for v in values)
        line = f"{phase.name + ' ' if phase.name else ''}{phase.label(r)}  loss " + join(
            m["train_loss"] for m in train)
        key = f"test_{phase.display.headline}"
        if phase.display.headline and all(key in m for m in evals):
            line += f"  {key.replace('_', ' ')} " + join(m[key] for m in evals)
        eta = ((phase.num_rounds - r) * phase.display.examples_per_round / rate if rate
               else 0.0)
        self.log(f"{line}  {rate:,.0f} ex/s  ETA {_format_eta(eta)}")

    def train(self, phase: Phase) -> PhaseResult:
        """Restores the phase's latest checkpoint (if any) and runs its remaining rounds."""
        if self.startup is None:  # the process's first run: its start-up ends here
            startup.mark("setup")
            self.startup = startup.take()
        manager = checkpoint_manager(phase.checkpoint_dir, phase.cadence.max_checkpoints)
        selection = Selection(copy_tree(phase.state.params)) if phase.select else None
        self._offset = self.epoch + (phase.initial is not None)
        try:
            with self.timed("checkpoints"):
                saved, start = restore_or_keep(manager, restorable(phase.state, selection),
                                               phase.unit)
            for writer in self.writers:
                writer.drop_preempted()
            self._last_save = clock()
            state, selection = unpack(saved, selection)
            done = start >= phase.num_rounds or (
                selection is not None and selection.exhausted(phase.select.patience))
            fresh_initial = start == 0 and phase.initial is not None
            if not done or fresh_initial:
                for workdir, writer in zip(self.workdirs, self.writers, strict=True):
                    writer.drop_from(self._offset + (0 if fresh_initial else start + 1))
                    files.set_summary_aside(workdir)
            if start:
                self.log(f"resuming {phase.checkpoint_dir} from the checkpoint of "
                         f"{phase.unit} {start}")
            elif phase.initial is not None:
                name, initial_metrics = phase.initial
                step = self.step + int(np.max(parallel.fetch(state.step)))
                self._write(phase, 0, step, self._split(initial_metrics(state.params)), name)
                manager.save(0, args=ocp.args.StandardSave(restorable(state, selection)))
            with WATCH.installed():
                result = self._rounds(phase, state, start, manager, selection, done)
        finally:
            manager.close()
        self.epoch = self._offset + phase.num_rounds
        self.step += int(np.max(parallel.fetch(result.state.step)))
        return result

    def _rounds(self, phase: Phase, state: Any, start: int, manager: ocp.CheckpointManager,
                selection: Selection | None, done: bool) -> PhaseResult:
        blank = [{} for _ in self.writers]
        train, evals = blank, blank
        t_start, timed_examples, timed_seconds, rate = time.perf_counter(), 0, 0.0, 0.0
        traced = min(start + 2, phase.num_rounds) if phase.cadence.profile else None
        per_round = phase.display.examples_per_round
        round_seconds, last = [], start
        for r in range(start + 1, phase.num_rounds + 1):
            if done:
                break
            t0 = time.perf_counter()
            with _trace(phase, r == traced, manager):
                train_key, eval_key = phase.round_keys(r)
                state, metrics = phase.run(state, r, train_key)
                train = self._split({f"train_{k}": v for k, v in metrics.items()})
            seconds = time.perf_counter() - t0
            round_seconds.append(seconds)
            if r > start + 1 or r == phase.num_rounds:  # the first round of a process compiles
                timed_examples += per_round
                timed_seconds += seconds
            rate = (timed_examples / timed_seconds if timed_seconds
                    else per_round / seconds)
            step = self.step + int(np.max(parallel.fetch(state.step)))
            self._stop_if_not_finite(phase, r, step, train, manager)
            with self.timed("evaluation"):
                evals = (self._split(phase.evaluate(state.params, eval_key))
                         if due(r, phase.cadence.eval_every, phase.num_rounds) else blank)
            if selection is not None and phase.select.metric in evals[0]:
                selection.update(state.params,
                                 phase.select.score(evals[0][phase.select.metric]), r)
                done = selection.exhausted(phase.select.patience)
            rate_metric = {"examples_per_s": rate} if per_round else {}
            self._write(phase, r, step, [{**t, **e, **rate_metric}
                                         for t, e in zip(train, evals, strict=True)])
            preempted = WATCH.reached()
            if preempted or done or self._checkpoint_due(phase, r):
                with self.timed("checkpoints"):  # waits for the previous save, if running
                    manager.save(r, args=ocp.args.StandardSave(restorable(state, selection)))
                self._last_save = clock()
            self._progress(phase, r, train, evals, rate)
            if preempted:
                self._stop_preempted(phase, r, step, manager)
            last = r
            if done:
                self.log(f"{phase.name + ' ' if phase.name else ''}early stop at "
                         f"{phase.label(r, width=False)}: {phase.select.metric} has not "
                         f"improved on {phase.select.score(selection.score):.4g} "
                         f"({phase.label(selection.round, False)}) in "
                         f"{phase.select.patience} evaluations")
        with self.timed("checkpoints"):
            manager.wait_until_finished()
        self._count_rounds(round_seconds)
        params = state.params if selection is None else selection.params
        if last == start or selection is not None or phase.evaluate_reported is not None:
            with self.timed("evaluation"):  # evaluate what the phase reports
                reported = selection.round if selection else phase.num_rounds
                evaluate = phase.evaluate_reported or phase.evaluate
                evals = self._split(evaluate(params, phase.round_keys(reported)[1]))
        return PhaseResult(state=state, train=train, eval=evals, rounds_run=last - start,
                           seconds=time.perf_counter() - t_start,
                           examples_per_s=timed_examples / timed_seconds if timed_seconds
                           else None, params=params,
                           selected_round=None if selection is None else selection.round)

    def _checkpoint_due(self, phase: Phase, r: int) -> bool:
        """Round r's periodic checkpoint: every `checkpoint_every` rounds, the last round, or
        `checkpoint_every_secs` after the last save by process 0's clock."""
        c = phase.cadence
        if due(r, c.checkpoint_every, phase.num_rounds):
            return True
        return c.checkpoint_every_secs > 0 and parallel.process_0_says(
            clock() - self._last_save >= c.checkpoint_every_secs)

    def _stop_preempted(self, phase: Phase, r: int, step: int,
                        manager: ocp.CheckpointManager) -> None:
        """After the checkpoint of round r: its save finished, the mark in metrics.jsonl,
        then `Preempted`."""
        with self.timed("checkpoints"):
            manager.wait_until_finished()
        for writer in self.writers:
            writer.mark_preempted(self._offset + r, step)
            writer.close()  # TensorBoard's writer thread ends with the run, not at exit
        where = f"{phase.name} " if phase.name else ""
        raise Preempted(
            f"{WATCH.signal_name}: stopped after {where}{phase.label(r, width=False)}, "
            f"saved in {phase.checkpoint_dir}; the same command resumes the run",
            phase.checkpoint_dir, r)

    def _count_rounds(self, round_seconds: list[float]) -> None:
        """Training time, less the compilation: the first round's excess over the others."""
        compile_seconds = 0.0
        if len(round_seconds) > 1:
            compile_seconds = max(0.0, round_seconds[0] - float(np.mean(round_seconds[1:])))
        self.seconds["compilation"] += compile_seconds
        self.seconds["training"] += sum(round_seconds) - compile_seconds

    def finish(self, summaries: Sequence[Metrics], finals: Sequence[Metrics],
               pictures: Sequence[Callable[[], Any]] = ()) -> None:
        """Ends the run's files: the pictures, `summary.json` (a stale one removed), the
        numbers of each `final` as the last, `"final": true` line of metrics.jsonl at the
        cursor (the epoch and step after the last phase), and a summary line. Process 0
        draws and writes; the others do nothing."""
        with self.timed("pictures"):
            if jax.process_index() == 0:
                for draw in pictures:
                    draw()
        for workdir, writer, summary, final in zip(self.workdirs, self.writers, summaries,
                                                   finals, strict=True):
            if jax.process_index() == 0:
                with open(files.path(workdir, files.SUMMARY), "w") as f:
                    json.dump(summary, f, indent=2)
                stale = files.path(workdir, files.STALE_SUMMARY)
                if os.path.exists(stale):  # superseded now
                    os.remove(stale)
                writer.write(self.epoch, self.step, {k: v for k, v in final.items()
                                           if isinstance(v, (int, float))}, final=True)
            writer.close()
            # Grouped metrics (`test_kl_units/07`) stay in summary.json, off the console.
            self.log("summary: " + _format({k: v for k, v in summary.items() if "/" not in k}))
        self.log("time: " + _startup_text(self.startup) + ", ".join(
            f"{part} {s:.2f} s" for part, s in self.seconds.items()))
