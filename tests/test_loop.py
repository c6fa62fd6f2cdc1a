"""The loop's guarantees, once, on toy phases (no model, no data): the round keys and the
(epoch, step) cursor, the evaluation and checkpoint cadence (rounds and seconds), resume from
any round with the metrics rolled back, preemption by a signal, the non-finite stop, the
summary set aside while a run changes, vectorized trials, model selection and early
stopping, the profile trace.

A toy phase's state is a few integers and its round a tiny jitted function of them, so
every expected number below is computed here independently, in plain Python.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aevb.config.checks import NonFiniteLossError, Preempted
from aevb.training import loop
from aevb.training.train_state import TrainState

STEPS = 3  # optimizer steps per toy round: a line's step is 3 r, its epoch r


class Killed(Exception):
    """Stands for a kill in the middle of a round."""


def _draw(key: jax.Array) -> jax.Array:
    return jax.random.randint(key, (), 0, 100)


@jax.jit
def _round(state: TrainState, r: jax.Array, key: jax.Array) -> tuple[TrainState, dict]:
    """w <- 2 w + r + (a draw from the round's key): each round's result depends on every
    earlier round, on r and on the key the loop handed it."""
    w = 2 * state.params["w"] + r + _draw(key)
    return state.replace(step=state.step + STEPS, params={"w": w}), {
        "loss": w.astype(jnp.float32), "r": r.astype(jnp.float32)}


def _state(w: int = 0, trials: int = 0) -> TrainState:
    shape = (trials,) if trials else ()
    return TrainState(step=jnp.zeros(shape, jnp.int32), params={"w": jnp.full(shape, w)},
                      opt_state=())


def toy_phase(directory: Path, num_rounds: int, *, seed: int = 0, killed_in: int = 0,
              nan_in: int = 0, trials: int = 0, w0: int = 0, **fields) -> loop.Phase:
    """A phase of `num_rounds` rounds of `_round` from w = w0, with keys from key(seed)
    (for vectorized trials: [trials] keys from key(seed + t)); the round `killed_in`
    raises Killed, the round `nan_in` reports a NaN loss (trial 1 only, with trials)."""
    if trials:
        train_key = jnp.stack([jax.random.key(seed + t) for t in range(trials)])
        eval_key = jnp.stack([jax.random.key(100 + seed + t) for t in range(trials)])
        step = jax.vmap(_round, in_axes=(0, None, 0))
    else:
        train_key, eval_key, step = jax.random.key(seed), jax.random.key(100 + seed), _round

    def run(state, r, key):
        if r == killed_in:
            raise Killed
        state, metrics = step(state, jnp.asarray(r), key)
        if r == nan_in:
            metrics = {**metrics, "loss": metrics["loss"] * (
                jnp.asarray([1.0, np.nan]) if trials else np.nan)}
        return state, metrics

    def evaluate(params, key):  # the parameters and a draw from the evaluation's key
        draw = jax.vmap(_draw)(key) if trials else _draw(key)
        return {"w": params["w"].astype(jnp.float32), "draw": draw.astype(jnp.float32)}

    return loop.Phase(state=_state(w0, trials), run=run, num_rounds=num_rounds,
                      evaluate=evaluate, checkpoint_dir=str(directory / "checkpoints"),
                      keys=(train_key, eval_key), **fields)


def expected_w(num_rounds: int, seed: int = 0, w0: int = 0, position=lambda r: r) -> list[int]:
    """w after each round, computed round by round here: w_r = 2 w_{r-1} + r + draw_r,
    draw_r from fold_in(key(seed), position(r))."""
    ws, w = [], w0
    for r in range(1, num_rounds + 1):
        w = 2 * w + r + int(_draw(jax.random.fold_in(jax.random.key(seed), position(r))))
        ws.append(w)
    return ws


def eval_draw(r: int, seed: int = 0) -> int:
    return int(_draw(jax.random.fold_in(jax.random.key(100 + seed), r)))


def lines(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def saved(directory: Path) -> list[int]:
    """The rounds of the checkpoints kept in `directory/checkpoints`."""
    directory = directory / "checkpoints"
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit()) if directory.exists() else []


def straight_lines(num_rounds: int, eval_every: int, seed: int = 0) -> list[dict]:
    """The metrics lines of an uninterrupted toy run, written out independently."""
    out = []
    for r, w in enumerate(expected_w(num_rounds, seed), start=1):
        line = {"epoch": r, "step": STEPS * r, "train_loss": float(w), "train_r": float(r)}
        if r % eval_every == 0 or r == num_rounds:
            line.update({"w": float(w), "draw": float(eval_draw(r, seed))})
        out.append(line)
    return out


CADENCE = loop.Cadence(eval_every=3, checkpoint_every=2, max_checkpoints=10)


def test_a_straight_run_follows_its_keys_and_cadence(tmp_path):
    """Round r gets fold_in(train key, r); evaluations fall every 3 rounds and on the last,
    with fold_in(eval key, r); checkpoints every 2 rounds and the last."""
    result = loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 7, cadence=CADENCE))
    ws = expected_w(7)
    assert lines(tmp_path) == straight_lines(7, eval_every=3)
    assert [r for r, line in enumerate(lines(tmp_path), 1) if "w" in line] == [3, 6, 7]
    assert saved(tmp_path) == [2, 4, 6, 7]
    assert int(result.state.params["w"]) == ws[-1] and int(result.state.step) == 7 * STEPS
    assert result.rounds_run == 7 and result.selected_round is None
    assert result.train == [{"train_loss": float(ws[-1]), "train_r": 7.0}]
    assert result.eval == [{"w": float(ws[-1]), "draw": float(eval_draw(7))}]


@pytest.mark.parametrize("killed_in", range(2, 8))
def test_a_run_killed_in_any_round_resumes_to_the_straight_run(tmp_path, capsys, killed_in):
    """Killed during round k (after k - 1 rounds were logged), the rerun restores the last
    checkpoint (every 2 rounds), drops the lines logged after it and logs them again: the
    file, the state and the evaluation are the uninterrupted run's."""
    with pytest.raises(Killed):
        loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 7, cadence=CADENCE,
                                                  killed_in=killed_in))
    assert len(lines(tmp_path)) == killed_in - 1  # logged beyond the last checkpoint
    restored = (killed_in - 1) // 2 * 2
    assert saved(tmp_path) == list(range(2, restored + 1, 2))
    capsys.readouterr()

    result = loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 7, cadence=CADENCE))
    out = capsys.readouterr().out
    assert ("from the checkpoint of epoch" in out) == (restored > 0)
    if restored:
        assert f"from the checkpoint of epoch {restored}\n" in out
    assert f"epoch   {restored + 1}/7" in out and f"epoch   {restored}/7" not in out
    assert lines(tmp_path) == straight_lines(7, eval_every=3)
    assert int(result.state.params["w"]) == expected_w(7)[-1]
    assert result.rounds_run == 7 - restored
    assert result.eval == [{"w": float(expected_w(7)[-1]), "draw": float(eval_draw(7))}]


def test_time_based_checkpoints_fall_on_the_first_round_boundary_due(tmp_path, monkeypatch):
    """Rounds of 4 s on the loop's clock and a checkpoint every 10 s (no round count): saved
    after round 3 (12 s), round 6 (12 s after), and the last round."""
    now = [0.0]
    monkeypatch.setattr(loop, "clock", lambda: now[0])
    phase = toy_phase(tmp_path, 7, cadence=loop.Cadence(
        checkpoint_every=0, checkpoint_every_secs=10.0, max_checkpoints=10))
    run_round = phase.run

    def four_seconds(state, r, key):
        now[0] += 4.0
        return run_round(state, r, key)

    loop.Run([str(tmp_path)]).train(dataclasses.replace(phase, run=four_seconds))
    assert saved(tmp_path) == [3, 6, 7]
    assert lines(tmp_path) == straight_lines(7, eval_every=1)


@pytest.fixture
def python_sigint():
    """SIGINT as Python's own (KeyboardInterrupt), whatever this process inherited: a
    non-interactive shell starts its background jobs with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_round_saves_it_and_the_rerun_is_the_straight_run(tmp_path, signum,
                                                                           python_sigint):
    """The signal arrives during round 3, with no periodic checkpoint due before round 7:
    the round ends, is saved, and a `"preempted": true` line follows its line; the rerun
    restores it, removes the mark and ends with the uninterrupted run's lines and state.
    A second SIGINT stops at once."""
    cadence = loop.Cadence(checkpoint_every=0, max_checkpoints=10)
    phase = toy_phase(tmp_path, 7, cadence=cadence)
    run_round = phase.run
    before = signal.getsignal(signum)

    def signalled(state, r, key):
        if r == 3:
            os.kill(os.getpid(), signum)
        return run_round(state, r, key)

    with pytest.raises(Preempted) as stopped:
        loop.Run([str(tmp_path)]).train(dataclasses.replace(phase, run=signalled))
    assert stopped.value.round == 3 and stopped.value.checkpoint_dir == phase.checkpoint_dir
    assert str(stopped.value).startswith(f"{signal.Signals(signum).name}: stopped after epoch 3")
    assert saved(tmp_path) == [3]
    assert lines(tmp_path) == [*straight_lines(3, eval_every=1),
                               {"epoch": 3, "step": 3 * STEPS, "preempted": True}]
    assert signal.getsignal(signum) == before  # the handler it found, put back
    result = loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 7, cadence=cadence))
    assert result.rounds_run == 4 and saved(tmp_path) == [3, 7]
    assert lines(tmp_path) == straight_lines(7, eval_every=1)
    assert int(result.state.params["w"]) == expected_w(7)[-1]

    (tmp_path / "twice").mkdir()
    with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: at once, the round unsaved
        loop.Run([str(tmp_path / "twice")]).train(dataclasses.replace(
            toy_phase(tmp_path / "twice", 7, cadence=cadence), run=lambda s, r, k: (
                os.kill(os.getpid(), signal.SIGINT), os.kill(os.getpid(), signal.SIGINT))))
    assert saved(tmp_path / "twice") == []


def _finish(run: loop.Run, result: loop.PhaseResult) -> None:
    w = float(result.state.params["w"])
    run.finish([{"w": w}], [{"final_w": w}])


def test_phases_follow_each_other_and_the_final_line_ends_the_run(tmp_path):
    """Two phases in one run: the second's lines (a named phase, with an initial line)
    continue the first's epochs and steps, and the final line sits after both. Killed in
    the second phase, the rerun keeps the first phase's lines and replays the second's."""
    def both(killed_in: int = 0) -> None:
        run = loop.Run([str(tmp_path)])
        run.train(toy_phase(tmp_path / "a", 2, display=loop.Display(name="a")))
        initial = ("before_b", lambda params: {"w": params["w"].astype(jnp.float32)})
        _finish(run, run.train(toy_phase(tmp_path / "b", 3, seed=1, w0=5, initial=initial,
                                         killed_in=killed_in,
                                         display=loop.Display(name="b"))))

    a, b = expected_w(2), expected_w(3, seed=1, w0=5)
    expected = (
        [{"epoch": r, "step": STEPS * r, "phase": "a", "a/train_loss": float(w),
          "a/train_r": float(r), "a/w": float(w), "a/draw": float(eval_draw(r))}
         for r, w in enumerate(a, 1)]
        + [{"epoch": 3, "step": 2 * STEPS, "phase": "before_b", "before_b/w": 5.0}]
        + [{"epoch": 3 + r, "step": STEPS * (2 + r), "phase": "b", "b/train_loss": float(w),
            "b/train_r": float(r), "b/w": float(w), "b/draw": float(eval_draw(r, 1))}
           for r, w in enumerate(b, 1)]
        + [{"epoch": 6, "step": 5 * STEPS, "final_w": float(b[-1]), "final": True}])
    with pytest.raises(Killed):
        both(killed_in=3)
    assert lines(tmp_path) == expected[:5]
    assert saved(tmp_path / "a") == saved(tmp_path / "b") == [1, 2]  # max_checkpoints 2
    both()
    assert lines(tmp_path) == expected
    assert json.loads((tmp_path / "summary.json").read_text()) == {"w": float(b[-1])}


def test_more_rounds_continue_a_finished_run_and_its_summary_waits_for_the_end(tmp_path):
    """A finished run given more rounds: its summary is set aside (summary.stale.json) as
    soon as training goes on, the final line goes, and the new end writes both again."""
    run = loop.Run([str(tmp_path)])
    _finish(run, run.train(toy_phase(tmp_path, 2)))
    assert lines(tmp_path)[-1]["final"] and (tmp_path / "summary.json").exists()
    with pytest.raises(Killed):
        loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 4, killed_in=4))
    assert not (tmp_path / "summary.json").exists()
    assert json.loads((tmp_path / "summary.stale.json").read_text()) == {
        "w": float(expected_w(2)[-1])}
    assert [line["epoch"] for line in lines(tmp_path)] == [1, 2, 3]  # no final line
    run = loop.Run([str(tmp_path)])
    _finish(run, run.train(toy_phase(tmp_path, 4)))
    assert lines(tmp_path)[:-1] == straight_lines(4, eval_every=1)
    assert lines(tmp_path)[-1] == {"epoch": 4, "step": 4 * STEPS,
                                   "final_w": float(expected_w(4)[-1]), "final": True}
    assert not (tmp_path / "summary.stale.json").exists()
    # A finished phase run again trains nothing and evaluates its result once.
    result = loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 4, killed_in=1))
    assert result.rounds_run == 0 and int(result.state.params["w"]) == expected_w(4)[-1]
    assert result.eval == [{"w": float(expected_w(4)[-1]), "draw": float(eval_draw(4))}]


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    run = loop.Run([str(tmp_path)])
    _finish(run, run.train(toy_phase(tmp_path, 2)))
    cadence = loop.Cadence(checkpoint_every=2, max_checkpoints=10)
    with pytest.raises(NonFiniteLossError) as error:
        loop.Run([str(tmp_path)]).train(toy_phase(
            tmp_path, 8, nan_in=5, cadence=cadence,
            display=loop.Display(learning_rate_field="m2.learning_rate")))
    assert str(error.value).startswith("epoch 5: the training loss is nan; stopped.")
    assert "checkpoint (epoch 4)" in str(error.value) and "m2.learning_rate" in str(error.value)
    assert saved(tmp_path) == [1, 2, 4]  # round 5 was never saved
    logged = lines(tmp_path)
    assert [line["epoch"] for line in logged] == [1, 2, 3, 4, 5]
    assert logged[-1]["train_loss"] == "nan" and not any(line.get("final") for line in logged)
    # Nothing says the run finished: its earlier summary is set aside.
    assert not (tmp_path / "summary.json").exists()
    assert (tmp_path / "summary.stale.json").exists()


def test_vectorized_trials_get_their_own_keys_files_and_non_finite_names(tmp_path):
    """[T] metrics are split into each trial's workdir; trial t's keys are its own."""
    dirs = [tmp_path / "t0", tmp_path / "t1"]
    for d in dirs:
        d.mkdir()
    run = loop.Run([str(d) for d in dirs], trial_names=["t0", "t1"])
    result = run.train(toy_phase(tmp_path, 3, trials=2, seed=10))
    for t, d in enumerate(dirs):
        assert lines(d) == straight_lines(3, eval_every=1, seed=10 + t)
    np.testing.assert_array_equal(result.state.params["w"],
                                  [expected_w(3, 10)[-1], expected_w(3, 11)[-1]])
    with pytest.raises(NonFiniteLossError, match=r"epoch 5: .* in trials \['t1'\]"):
        loop.Run([str(d) for d in dirs], ["t0", "t1"]).train(
            toy_phase(tmp_path, 6, trials=2, seed=10, nan_in=5))


def test_rounds_of_steps_fold_in_their_last_step(tmp_path, capsys):
    """A round of 20 steps (of 50) gets fold_in(key, 20 r), the last fold_in(key, 50), and
    is shown as steps; checkpoints are numbered by round."""
    display = loop.Display(steps_per_round=20, total_steps=50)
    result = loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 3, display=display))
    assert int(result.state.params["w"]) == expected_w(3, position=lambda r: min(20 * r,
                                                                                   50))[-1]
    assert result.eval == [{"w": float(result.state.params["w"]),
                            "draw": float(eval_draw(50))}]
    out = capsys.readouterr().out
    assert "step    20/50" in out and "step    50/50" in out
    assert saved(tmp_path) == [2, 3]  # max_checkpoints = 2


def test_profile_traces_one_round(tmp_path, capsys):
    loop.Run([str(tmp_path)]).train(toy_phase(tmp_path, 3,
                                              cadence=loop.Cadence(profile=True)))
    traces = list((tmp_path / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    assert f"profile of one epoch written to {tmp_path / 'profile'}" in capsys.readouterr().out


# ----------------------------------------------------------------------------- selection

# The validation score after round r (1-based); the test score is its negative, so a
# selection that read it would pick the worst round.
SCORES = [0.2, 0.5, 0.5, 0.4, 0.6, 0.6, 0.3, 0.1, 0.1, 0.1]


def scored_phase(directory: Path, patience: int, select: bool = True,
                 killed_in: int = 0) -> loop.Phase:
    """A phase whose parameter counts the rounds run; its evaluation reads SCORES."""
    def run(state, r, key):
        del key
        if r == killed_in:
            raise Killed
        return state.replace(step=state.step + 1, params={"w": state.params["w"] + 1}), {
            "loss": jnp.asarray(1.0)}

    def evaluate(params, key):
        del key
        k = int(params["w"]) - 1
        return {"validation_accuracy": SCORES[k], "test_accuracy": -SCORES[k]}

    return loop.Phase(state=_state(), run=run, num_rounds=len(SCORES), evaluate=evaluate,
                      checkpoint_dir=str(directory / "checkpoints"),
                      cadence=loop.Cadence(max_checkpoints=20),
                      select=loop.Select("validation_accuracy", patience) if select else None)


@pytest.mark.parametrize("patience, selected, rounds_run", [
    (0, 5, 10),   # no early stopping: every round, the first of the two 0.6s
    (3, 5, 8),    # after round 5's 0.6: 0.6 (not strictly better), 0.3, 0.1: stop at round 8
    (2, 2, 4),    # 0.5 (a tie) and 0.4 after round 2's 0.5: stop at round 4
    (1, 2, 3),    # 0.5 at round 3 does not strictly improve on round 2's: stop there
])
def test_selection_and_early_stopping(tmp_path, patience, selected, rounds_run):
    result = loop.Run([str(tmp_path)]).train(scored_phase(tmp_path, patience))
    assert result.selected_round == selected and result.rounds_run == rounds_run
    assert int(result.params["w"]) == selected            # the selected round's parameters
    assert int(result.state.step) == rounds_run           # the last round's state
    assert result.eval[0] == {"validation_accuracy": SCORES[selected - 1],
                              "test_accuracy": -SCORES[selected - 1]}
    assert saved(tmp_path)[-1] == rounds_run              # the stop is checkpointed


def test_without_select_the_last_round_is_reported(tmp_path):
    result = loop.Run([str(tmp_path)]).train(scored_phase(tmp_path, 0, select=False))
    assert result.selected_round is None and int(result.params["w"]) == len(SCORES)


@pytest.mark.parametrize("patience, reported", [(3, 5), (None, len(SCORES))])
def test_a_reported_evaluation_reads_the_reported_parameters_once(tmp_path, patience,
                                                                  reported):
    """Phase.evaluate_reported (e.g. the periodic evaluation without the test split): the
    loop evaluates the parameters it reports (the selected round's with patience 3, else
    the last round's) once more with it, and no metrics line holds its numbers."""
    phase = scored_phase(tmp_path, patience or 0, select=patience is not None)
    calls = []

    def evaluate_reported(params, key):
        calls.append(int(params["w"]))
        return {**phase.evaluate(params, key), "test_only": 1.0}

    phase = dataclasses.replace(phase, evaluate_reported=evaluate_reported)
    result = loop.Run([str(tmp_path)]).train(phase)
    assert calls == [reported]
    assert result.eval[0] == {"validation_accuracy": SCORES[reported - 1],
                              "test_accuracy": -SCORES[reported - 1], "test_only": 1.0}
    assert len(lines(tmp_path)) == result.rounds_run
    assert not [line for line in lines(tmp_path) if "test_only" in line]


@pytest.mark.parametrize("patience, killed_in, selected, rounds_run", [
    (0, 5, 5, 10), (0, 7, 5, 10), (3, 5, 5, 8), (3, 7, 5, 8), (3, 9, 5, 8)])
def test_a_killed_phase_resumes_to_the_same_selection(tmp_path, patience, killed_in,
                                                      selected, rounds_run):
    """Killed in round k (the straight run with patience 3 stopped at round 8, so a kill in
    round 9 never happens: its rerun must not train on)."""
    if killed_in <= rounds_run:
        with pytest.raises(Killed):
            loop.Run([str(tmp_path)]).train(scored_phase(tmp_path, patience, killed_in=killed_in))
    else:
        loop.Run([str(tmp_path)]).train(scored_phase(tmp_path, patience))
    result = loop.Run([str(tmp_path)]).train(scored_phase(tmp_path, patience))
    assert result.selected_round == selected and int(result.params["w"]) == selected
    assert int(result.state.step) == rounds_run
    assert result.eval[0] == {"validation_accuracy": SCORES[selected - 1],
                              "test_accuracy": -SCORES[selected - 1]}
    assert os.path.exists(tmp_path / "metrics.jsonl")
    assert [line["epoch"] for line in lines(tmp_path)] == list(range(1, rounds_run + 1))
