"""The loop's model selection and early stopping (`Phase.select`, `Phase.patience`): the
result is the parameters of the best validation score (the earliest among equals), training
stops after `patience` evaluations without a strict improvement, and an interrupted phase
resumes to the same selection."""

from __future__ import annotations

import jax.numpy as jnp
import pytest

from aevb.training import loop
from aevb.training.train_state import TrainState

# The validation score after round r (1-based); the test score is its negative, so a
# selection that read it would pick the worst round.
SCORES = [0.2, 0.5, 0.5, 0.4, 0.6, 0.6, 0.3, 0.1, 0.1, 0.1]


class Stop(Exception):
    pass


def _phase(directory: str, patience: int, select: str = "validation_accuracy",
           stop_after: int | None = None) -> loop.Phase:
    state = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.zeros(())},
                       opt_state=())

    def run(state, r):  # the parameters count the rounds run
        if stop_after is not None and r == stop_after + 1:
            raise Stop
        return state.replace(step=state.step + 1, params={"w": state.params["w"] + 1}), {
            "loss": jnp.asarray(1.0)}

    def evaluate(params, r):
        del r
        k = int(params["w"]) - 1
        return {"validation_accuracy": SCORES[k], "test_accuracy": -SCORES[k]}

    return loop.Phase(state=state, run=run, num_rounds=len(SCORES), evaluate=evaluate,
                      checkpoint_dir=directory, select=select, patience=patience,
                      max_checkpoints=20)


@pytest.mark.parametrize("patience, selected, rounds_run", [
    (0, 5, 10),   # no early stopping: every round, the first of the two 0.6s
    (3, 5, 8),    # after round 5's 0.6: 0.6 (not strictly better), 0.3, 0.1: stop at round 8
    (2, 2, 4),    # 0.5 (a tie) and 0.4 after round 2's 0.5: stop at round 4
    (1, 2, 3),    # 0.5 at round 3 does not strictly improve on round 2's: stop there
])
def test_selection_and_early_stopping(tmp_path, patience, selected, rounds_run):
    result = loop.Run([str(tmp_path)]).train(_phase(str(tmp_path / "ckpt"), patience))
    assert result.selected_round == selected and result.rounds_run == rounds_run
    assert float(result.params["w"]) == selected          # the selected round's parameters
    assert int(result.state.step) == rounds_run           # the last round's state
    assert result.eval[0] == {"validation_accuracy": SCORES[selected - 1],
                              "test_accuracy": -SCORES[selected - 1]}


def test_without_select_the_last_round_is_reported(tmp_path):
    result = loop.Run([str(tmp_path)]).train(_phase(str(tmp_path / "ckpt"), 0, select=""))
    assert result.selected_round is None and float(result.params["w"]) == len(SCORES)


@pytest.mark.parametrize("patience, stop_after", [(0, 4), (0, 6), (3, 4), (3, 6), (3, 8)])
def test_an_interrupted_phase_resumes_to_the_same_selection(tmp_path, patience, stop_after):
    straight = loop.Run([str(tmp_path / "a")]).train(_phase(str(tmp_path / "a" / "c"),
                                                            patience))
    directory = str(tmp_path / "b" / "c")
    if stop_after < straight.rounds_run:
        with pytest.raises(Stop):
            loop.Run([str(tmp_path / "b")]).train(_phase(directory, patience, stop_after=stop_after))
    else:  # the straight run stopped early here: resuming must not train on
        loop.Run([str(tmp_path / "b")]).train(_phase(directory, patience))
    resumed = loop.Run([str(tmp_path / "b")]).train(_phase(directory, patience))
    assert resumed.selected_round == straight.selected_round
    assert float(resumed.params["w"]) == float(straight.params["w"])
    assert int(resumed.state.step) == int(straight.state.step)
    assert resumed.eval == straight.eval
