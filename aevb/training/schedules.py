"""Learning-rate schedules (`train.lr_schedule`) and the KL warm-up weight, as functions of
the optimizer step: pure, so a resumed run (whose checkpoint holds the step) continues on
exactly the curve it left.

A schedule here is a *shape*: a factor in (0, 1] that multiplies the peak rate
`train.learning_rate`. The optimizer (`aevb/training/epoch.py`) keeps the peak in its state and
applies the shape through `optax.inject_hyperparams`, so trials of a vectorized sweep may
differ in the peak under one shared shape, and the rate in force is in the state for the
metrics (`learning_rate`, each epoch's mean).

  constant  1 throughout.
  cosine    0.5 (1 + cos(pi t / T)) over the run's T steps (Loshchilov & Hutter 2017),
            down to 0 at the last step.
  iwae      the schedule of Burda, Grosse & Salakhutdinov (2015, section 5): 3^i passes at
            10^(-i/7) times the peak, i = 0 .. 7, 3,280 passes in all. A run of another
            length keeps the stages' proportions: stage i covers 3^i / 3280 of its steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

LR_SCHEDULES = ("constant", "cosine", "iwae")
IWAE_STAGES = 8                                   # i = 0 .. 7
IWAE_PASSES = sum(3**i for i in range(IWAE_STAGES))  # 3,280

Shape = Callable[[jax.Array], jax.Array]


def iwae_boundaries(total_steps: int) -> np.ndarray:
    """The steps [7] at which IWAE stages 1 .. 7 begin, for a run of `total_steps` steps:
    round(total_steps * (3^0 + ... + 3^(i-1)) / 3280). At 3,280 epochs of S steps, stage i
    begins after 3^0 + ... + 3^(i-1) epochs, as in the paper."""
    done = np.cumsum([3**i for i in range(IWAE_STAGES - 1)])
    return np.round(total_steps * done / IWAE_PASSES).astype(np.int64)


def shape(name: str, total_steps: int) -> Shape:
    """The factor [] applied to the peak rate at optimizer step `count` (0-based), for a
    run of `total_steps` steps."""
    if name == "constant":
        return lambda count: jnp.ones((), jnp.float32)
    if name == "cosine":
        return optax.cosine_decay_schedule(1.0, max(total_steps, 1))
    if name == "iwae":
        boundaries = jnp.asarray(iwae_boundaries(total_steps), jnp.int32)
        factors = jnp.asarray([10.0 ** (-i / 7) for i in range(IWAE_STAGES)], jnp.float32)
        return lambda count: factors[jnp.sum(count >= boundaries)]
    raise ValueError(f"train.lr_schedule={name!r}; allowed: {LR_SCHEDULES}")


def kl_warmup(step: jax.Array | None, warmup_steps: int) -> jax.Array | float:
    """The KL weight's factor at optimizer step `step` (0-based): min(1, step / warmup_steps),
    rising linearly from 0 (Sønderby et al. 2016; Bowman et al. 2016); 1 without warm-up or
    outside training (`step=None`)."""
    if not warmup_steps or step is None:
        return 1.0
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / float(warmup_steps))


def describe(name: str, total_steps: int, steps_per_epoch: int) -> str:
    """A line for the run's log: the schedule and, for `iwae`, where its stages begin."""
    if name != "iwae":
        return name
    epochs = [b / steps_per_epoch for b in iwae_boundaries(total_steps)]
    return "iwae (stages begin at epochs " + ", ".join(
        f"{e:g}" if e == math.floor(e) else f"{e:.2f}" for e in epochs) + ")"
