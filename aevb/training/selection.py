"""Model selection on a validation metric, and early stopping, for the loop's phases.

A phase with `select` (`aevb/training/loop.py`: `Phase.select`, `Phase.patience`) keeps the
parameters of its best evaluation so far in a `Selection`, which goes into every checkpoint
beside the train state: a resumed run selects exactly as an uninterrupted one would, and
an early-stopped run, restored, knows it is done.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def copy_tree(tree: Any) -> Any:
    """Fresh buffers for a pytree of arrays (the next round donates the state's)."""
    return jax.tree.map(jnp.copy, tree)


@dataclasses.dataclass
class Selection:
    """The best evaluation so far of a phase with `select`: its parameters, score and
    round, and how many evaluations since then have not improved on it. Checkpointed with
    the state, as a dict of arrays (`as_tree`)."""

    params: Any
    score: float = -np.inf
    round: int = 0
    stale: int = 0

    def as_tree(self) -> dict[str, Any]:
        return {"params": self.params, "score": np.asarray(self.score, np.float64),
                "round": np.asarray(self.round, np.int64),
                "stale": np.asarray(self.stale, np.int64)}

    @classmethod
    def from_tree(cls, tree: dict[str, Any]) -> Selection:
        return cls(tree["params"], float(tree["score"]), int(tree["round"]),
                   int(tree["stale"]))

    def update(self, params: Any, score: float, r: int) -> None:
        """Records round r's evaluation: a strict improvement becomes the selection."""
        if score > self.score:
            self.params, self.score, self.round, self.stale = copy_tree(params), score, r, 0
        else:
            self.stale += 1

    def exhausted(self, patience: int) -> bool:
        """Whether early stopping has ended the phase."""
        return bool(patience) and self.stale >= patience


def longest_wait(scores: Iterable[float]) -> int:
    """The most evaluations in a row without a strict improvement in a history of scores
    (higher is better), counted as `Selection.update` counts them: a run with a patience
    above it would not have stopped early on that history."""
    selection, longest = Selection(params=None), 0
    for r, score in enumerate(scores, start=1):
        selection.update(None, score, r)
        longest = max(longest, selection.stale)
    return longest


def restorable(state: Any, selection: Selection | None) -> Any:
    """What a checkpoint holds: the state, with the selection when the phase selects."""
    return state if selection is None else {"state": state, "selection": selection.as_tree()}


def unpack(saved: Any, selection: Selection | None) -> tuple[Any, Selection | None]:
    """(state, selection) from what `restorable` made (or its restored copy)."""
    if selection is None:
        return saved, None
    return saved["state"], Selection.from_tree(saved["selection"])
