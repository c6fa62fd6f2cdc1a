"""What a regime hands the loop: a `Phase` (one stretch of training: its state, its compiled
round, its evaluation, its checkpoints), with its `Cadence` (read from the regime's config
section by `cadence`), an optional `Select` (model selection and early stopping) and its
`Display` (names and units of its lines).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

Metrics = dict[str, Any]


def due(r: int, every: int, last: int) -> bool:
    """Whether round r gets the periodic action: every `every` rounds (0: never), and the
    last one."""
    return (every > 0 and r % every == 0) or r == last


@dataclasses.dataclass(frozen=True)
class Cadence:
    """When the loop evaluates, checkpoints and traces: every `eval_every` rounds (and the
    last); a checkpoint every `checkpoint_every` rounds (0: off), at the first round
    boundary `checkpoint_every_secs` after the phase's start or its last save (0: off),
    after the last round and on preemption, keeping `max_checkpoints`; `profile` traces one
    round, the first after compilation, with `jax.profiler` into `profile/` beside the
    phase's checkpoints. Built from a config section by `cadence`."""

    eval_every: int = 1
    checkpoint_every: int = 1
    max_checkpoints: int = 2
    profile: bool = False
    checkpoint_every_secs: float = 0.0


def cadence(config: Any, section: str = "train") -> Cadence:
    """The cadence of a phase trained under config section `section`.

    Evaluation: train, every `eval.every_epochs`; m2, every `m2.eval_every_epochs`;
    classifier, every round (a round is `classifier.eval_every_steps` steps). Checkpoints:
    every `train.checkpoint_every_secs` in every section, and every
    `train.checkpoint_every_epochs` epochs in the sections whose rounds are epochs (train,
    m2). All keep `train.max_checkpoints` and trace with `train.profile`.
    """
    every = {"train": config.eval.every_epochs, "classifier": 1,
             "m2": config.m2.eval_every_epochs}[section]
    checkpoint_every = 0 if section == "classifier" else config.train.checkpoint_every_epochs
    return Cadence(eval_every=every, checkpoint_every=checkpoint_every,
                   max_checkpoints=config.train.max_checkpoints, profile=config.train.profile,
                   checkpoint_every_secs=float(config.train.checkpoint_every_secs))


@dataclasses.dataclass(frozen=True)
class Select:
    """Model selection: the phase's result is the parameters of the evaluation with the
    highest `metric` (e.g. `validation_accuracy`, never a test metric; the earliest among
    equals), or with `minimize` the lowest (`validation_neg_elbo`), and training stops after
    `patience` evaluations without a strict improvement (0 = run every round). One trial
    only."""

    metric: str
    patience: int = 0
    minimize: bool = False

    def score(self, value: float) -> float:
        """`value` of the metric as a score, higher being better (and a score as the value)."""
        return -value if self.minimize else value


@dataclasses.dataclass(frozen=True)
class Display:
    """How a phase is named and shown. `name`: '' for a plain run; else it prefixes the
    metric names (`phase_1/train_loss`) and fills the `phase` field of each metrics line.
    `headline`: the test metric shown in progress lines; `examples_per_round`: for the
    rate and the ETA; `steps_per_round` and `total_steps`: rounds of steps (a classifier),
    shown and keyed as steps; `learning_rate_field`: named when the loss is not finite."""

    name: str = ""
    headline: str = ""
    examples_per_round: int = 0
    steps_per_round: int = 0
    total_steps: int = 0
    learning_rate_field: str = "train.learning_rate"


@dataclasses.dataclass
class Phase:
    """One stretch of training with its own state and checkpoints.

    run: the compiled `run(state, r, key) -> (state, metrics)` of round r = 1 ..
      num_rounds; metrics are means over the round (scalars, or [T] for vectorized trials),
      `loss` among them. evaluate: `evaluate(params, key) -> metrics` of the same form.
    keys: (train key, eval key), each a key or [T] keys of vectorized trials (None: the
      phase draws nothing). The loop hands round r fold_in(train key, r) and its
      evaluation fold_in(eval key, r); for rounds of steps, the round's last step instead
      of r. No regime folds a round into a key.
    evaluate_reported: the evaluation of the parameters the phase reports, where it differs
      from the periodic `evaluate` (a run whose periodic evaluation leaves out the test
      split, `eval.test_while_training`); the loop then evaluates the reported parameters
      once more, with their round's key. None: `evaluate`.
    initial: (name, metrics of the initial parameters) to log and checkpoint as round 0
      when the phase starts fresh (the assembled stack before fine-tuning); it takes one
      line of the run's epoch count.
    Where the phase's lines go (epoch and step) follows from the phases run before it in
    the same `Run` (its cursor).
    """

    state: Any
    run: Callable[[Any, int, Any], tuple[Any, Metrics]]
    num_rounds: int
    evaluate: Callable[[Any, Any], Metrics]
    checkpoint_dir: str
    keys: tuple[Any, Any] | None = None
    cadence: Cadence = Cadence()
    select: Select | None = None
    display: Display = Display()
    initial: tuple[str, Callable[[Any], Metrics]] | None = None
    evaluate_reported: Callable[[Any, Any], Metrics] | None = None

    @property
    def name(self) -> str:
        return self.display.name

    @property
    def unit(self) -> str:
        """What a round is called: checkpoints are numbered by it."""
        return "round" if self.display.steps_per_round else "epoch"

    def position(self, r: int) -> int:
        """Round r's position in its unit: r, or its last step for rounds of steps."""
        d = self.display
        return min(r * d.steps_per_round, d.total_steps) if d.steps_per_round else r

    def label(self, r: int, width: bool = True) -> str:
        """'epoch   3/30', or 'step   250/1000' for rounds of steps; `width=False`: 'epoch 3'."""
        if self.display.steps_per_round:
            step, total = self.position(r), self.display.total_steps
            return f"step {step:5d}/{total}" if width else f"step {step}"
        return f"epoch {r:3d}/{self.num_rounds}" if width else f"epoch {r}"

    def round_keys(self, r: int) -> tuple[Any, Any]:
        """(train key, eval key) of round r (see `keys`)."""
        if self.keys is None:
            return None, None
        i = self.position(r)
        return tuple(_fold(k, i) for k in self.keys)


def _fold(key: Any, i: int) -> Any:
    """fold_in(key, i) for one key, or for each of [T] keys."""
    if key is None:
        return None
    if key.shape:
        return jax.vmap(jax.random.fold_in, in_axes=(0, None))(key, i)
    return jax.random.fold_in(key, i)
