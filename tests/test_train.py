"""End-to-end tests of a joint run through the one loop: its files, seeds, a resume that
refuses another config, errors, compilation, optimizers. (The loop's own guarantees are
tests/test_loop.py's; the joint regime's resume equality is tests/test_iwae.py's.)"""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import built_once, interrupt_and_resume, model_and_state, small_vae_config

from aevb.config import checks
from aevb.families import vae as vae_family
from aevb.regimes import joint as train
from aevb.run import workdir as workdir_lib
from aevb.training import train_state
from aevb.training.epoch import make_train_epoch


@pytest.fixture(scope="session")
def finished(tiny_idx_dir, tmp_path_factory) -> tuple[object, Path, dict]:
    """(config, workdir, the summary train_and_evaluate returned) of one finished 2-epoch
    run of the small VAE with a 2-d latent space (the manifold picture) and `train.profile`
    on, made once in the session.
    Tests that change a run copy its workdir (`_copy`)."""
    config = small_vae_config(tiny_idx_dir)
    config.model.latent_dim = 2
    config.train.profile = True
    def run(workdir: Path) -> None:  # keeps what train_and_evaluate returns beside it
        summary = train.train_and_evaluate(config.copy_and_resolve_references(), str(workdir))
        workdir.with_suffix(".returned.json").write_text(json.dumps(summary))

    workdir = built_once(tmp_path_factory, "test_train_finished", run)
    return config, workdir, json.loads(workdir.with_suffix(".returned.json").read_text())


def _copy(finished, tmp_path: Path) -> tuple[object, str]:
    config, workdir, _ = finished
    shutil.copytree(workdir, tmp_path / "run")
    return config.copy_and_resolve_references(), str(tmp_path / "run")


def test_run_leaves_its_files(finished):
    _, workdir, summary = finished
    files = set(os.listdir(workdir))
    assert {"config.json", "metrics.jsonl", "summary.json", "reconstructions.png",
            "samples.png", "latent_manifold.png", "checkpoints", "tensorboard"} <= files
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(f"{workdir}/tensorboard"))
    with open(f"{workdir}/config.json") as f:
        assert json.load(f)["model"]["latent_dim"] == 2
    lines = [json.loads(line) for line in Path(workdir, "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2, 2] and lines[-1]["final"]
    assert lines[1]["step"] == 2 * (1000 // 50)
    assert {"train_loss", "test_neg_elbo", "test_recon", "test_kl"} <= set(lines[0])
    with open(f"{workdir}/summary.json") as f:
        assert json.load(f) == json.loads(json.dumps(summary))
    # The summary's test metrics are the last evaluation's, and the final line holds the
    # end-of-run measurements.
    assert summary["test_neg_elbo"] == lines[1]["test_neg_elbo"]
    assert lines[-1]["test_log_likelihood"] == summary["test_log_likelihood"]
    assert summary["test_log_likelihood_examples"] == 50
    assert summary["steps"] == 40
    # train.profile: one epoch traced, the one after the first (which compiles).
    traces = list((workdir / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0


def test_resume_refuses_a_different_config(finished, tmp_path):
    config, workdir = _copy(finished, tmp_path)
    config.train.learning_rate = 0.5
    with pytest.raises(checks.ConfigError, match="train.learning_rate"):
        train.train_and_evaluate(config, workdir)


def test_unknown_idx_dataset_without_dir_fails_before_writing(tiny_config, tmp_path):
    tiny_config.data.dir = ""
    tiny_config.data.source = "idx"
    tiny_config.data.name = "kmnist"
    with pytest.raises(Exception, match="data.dir"):
        train.train_and_evaluate(tiny_config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(finished, tmp_path, monkeypatch):
    """The joint regime's non-finite stop (the loop's is tests/test_loop.py's): a finished
    run given a third epoch whose loss is NaN stops naming the field to change, and no
    summary says it finished."""
    config, workdir = _copy(finished, tmp_path)
    original = vae_family.vae_terms

    def poisoned(*args, **kwargs):
        terms = original(*args, **kwargs)
        return {**terms, "loss": terms["loss"] * jnp.nan}

    monkeypatch.setattr(vae_family, "vae_terms", poisoned)
    config.train.num_epochs, config.train.profile = 3, False
    with pytest.raises(checks.NonFiniteLossError, match="epoch 3.*epoch 2.*train.learning_rate"):
        train.train_and_evaluate(config, workdir)
    assert sorted(os.listdir(f"{workdir}/checkpoints")) == ["2"]  # its end; epoch 3 unsaved
    # No summary.json describes the run now: the finished 2-epoch run's is set aside as
    # stale, and no sweep or pretraining takes this run for finished.
    assert not os.path.exists(f"{workdir}/summary.json")
    with open(f"{workdir}/summary.stale.json") as f:
        assert json.load(f)["epochs"] == 2
    assert workdir_lib.finished(config, workdir) is None
    with open(f"{workdir}/metrics.jsonl") as f:
        assert not any(json.loads(line).get("final") for line in f)


def test_selection_on_validation_stops_early_and_a_killed_run_knows_it_is_done(
        tiny_idx_dir, tmp_path, monkeypatch):
    """train.select_on: the run reports the parameters of its best validation evaluation and
    stops after train.patience evaluations without a better one. Selecting the highest
    validation -ELBO (the first epoch's, as training lowers it) with a patience of 2 stops
    after epoch 3 of 6; the summary's numbers are epoch 1's evaluation, logged in
    metrics.jsonl with the same keys. Killed after that stop (no summary yet), the same
    command trains no further and reports the same."""
    config = small_vae_config(tiny_idx_dir)
    config.data.num_validation = 100
    config.train.num_epochs = 6
    config.train.select_on, config.train.select_mode = "validation_neg_elbo", "max"
    config.train.patience = 2
    straight = train.train_and_evaluate(config.copy_and_resolve_references(),
                                        str(tmp_path / "straight"))
    assert (straight["selected_epoch"], straight["epochs_run"]) == (1, 3)
    lines = [json.loads(line) for line in
             (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    first = next(line for line in lines if line.get("epoch") == 1)
    assert [line.get("epoch") for line in lines if "validation_neg_elbo" in line][:3] == [1, 2, 3]
    for key in ("validation_neg_elbo", "test_neg_elbo", "test_kl"):
        assert straight[key] == first[key], key
    assert straight["validation_neg_elbo"] > max(
        line["validation_neg_elbo"] for line in lines if line.get("epoch") in (2, 3))

    resumed = interrupt_and_resume(monkeypatch, train.train_and_evaluate, config,
                                   str(tmp_path / "killed"), "", 3, how="kill")
    for key in ("selected_epoch", "epochs_run", "steps", "validation_neg_elbo",
                "test_neg_elbo", "test_log_likelihood"):
        assert resumed[key] == straight[key], key

    # eval.test_while_training=False: the test split is read once, for the selected epoch,
    # with that epoch's evaluation key; the selection and every number stay the same.
    config.eval.test_while_training = False
    once = train.train_and_evaluate(config, str(tmp_path / "once"))
    for key in ("selected_epoch", "epochs_run", "validation_neg_elbo", "test_neg_elbo",
                "test_kl", "test_log_likelihood"):
        assert once[key] == straight[key], key
    lines = [json.loads(line) for line in
             (tmp_path / "once" / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines if "validation_neg_elbo" in line] == [1, 2, 3]
    assert not [line for line in lines if "test_neg_elbo" in line]


def test_a_resume_may_change_the_patience_only_where_the_run_never_waited_that_long(
        tiny_idx_dir, tmp_path):
    """train.patience may change on resume where the history allows it. Selecting the highest
    validation -ELBO (epoch 1's), a run of 2 epochs without early stopping, resumed to 6
    under a patience of 2, stops after epoch 3 with epoch 1 selected, as the straight run
    does, with the same numbers. Extended to 4 epochs first (3 evaluations without a better
    one, where the straight run stopped at 2), the same resume is refused before anything
    is written."""
    config = small_vae_config(tiny_idx_dir)
    config.data.num_validation = 100
    config.train.select_on, config.train.select_mode = "validation_neg_elbo", "max"

    def run(workdir: Path, epochs: int, patience: int) -> dict:
        c = config.copy_and_resolve_references()
        c.train.num_epochs, c.train.patience = epochs, patience
        return train.train_and_evaluate(c, str(workdir))

    straight = run(tmp_path / "straight", 6, 2)
    assert (straight["selected_epoch"], straight["epochs_run"]) == (1, 3)
    run(tmp_path / "extended", 2, 0)
    shutil.copytree(tmp_path / "extended", tmp_path / "waited")
    resumed = run(tmp_path / "extended", 6, 2)
    for key in ("selected_epoch", "epochs_run", "steps", "validation_neg_elbo",
                "test_neg_elbo", "test_log_likelihood"):
        assert resumed[key] == straight[key], key
    run(tmp_path / "waited", 4, 0)
    before = (tmp_path / "waited" / "config.json").read_text()
    with pytest.raises(checks.ConfigError, match=r"train\.patience.*0 -> 2.*went 3 evaluations"):
        run(tmp_path / "waited", 6, 2)
    assert (tmp_path / "waited" / "config.json").read_text() == before


def test_an_iwae_run_selects_on_its_own_validation_bound(tiny_idx_dir, tmp_path):
    """train.objective='iwae': each evaluation has -L_k with the objective's k beside the
    -ELBO (and a run with the ELBO objective has none); selecting on it keeps the epoch of
    the lowest validation -L_k, whose numbers the summary reports."""
    config = small_vae_config(tiny_idx_dir)
    config.data.num_validation = 100
    config.train.num_epochs = 3
    config.train.objective, config.train.num_samples = "iwae", 3
    config.train.select_on = "validation_neg_iwae_bound"
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    lines = [json.loads(line) for line in
             (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    bounds = [(line["validation_neg_iwae_bound"], line["epoch"]) for line in lines
              if "validation_neg_iwae_bound" in line and not line.get("final")]
    assert len(bounds) == 3 and summary["selected_epoch"] == min(bounds)[1]
    assert summary["validation_neg_iwae_bound"] == min(bounds)[0]
    # L_3 is the tighter bound: below the -ELBO on the 100 validation images, each epoch
    for line in lines:
        if "validation_neg_iwae_bound" in line:
            assert line["validation_neg_iwae_bound"] < line["validation_neg_elbo"]
    elbo = small_vae_config(tiny_idx_dir)
    elbo.train.num_epochs = 1
    assert "test_neg_iwae_bound" not in train.train_and_evaluate(elbo, str(tmp_path / "elbo"))


def test_epoch_is_compiled_once(tiny_config):
    family, model, tx, state = model_and_state(tiny_config)
    epoch = make_train_epoch(family.objective(tiny_config, model, train=True), tx, 10,
                             "dynamic")
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (100, 784), np.uint8))
    for e in range(3):
        state, metrics = epoch(state, images, jax.random.key(e))
    assert epoch._cache_size() == 1
    assert int(state.step) == 30 and np.isfinite(float(metrics["loss"]))


@pytest.mark.parametrize("optimizer", train_state.OPTIMIZERS)
def test_every_optimizer_lowers_the_loss(tiny_config, optimizer):
    """Each optimizer of train.optimizer, with weight decay, built by make_optimizer and
    stepped by apply_gradients (as every epoch steps it), descends a quadratic: the loss
    falls at every step. (Every regime's training runs the default, adam, on a model.)"""
    tiny_config.train.optimizer = optimizer
    tiny_config.train.learning_rate = {"adagrad": 0.05, "sgd": 1e-4}.get(optimizer, 1e-3)
    tiny_config.train.weight_decay = 1e-4
    tx = train_state.make_optimizer(tiny_config.train, 20)
    target = jnp.linspace(-1.0, 1.0, 8)

    def loss_fn(params):  # 100 |w - target|^2 + |b - 1|^2, as terms of a batch of 1
        loss = 100 * jnp.sum((params["w"] - target) ** 2) + jnp.sum((params["b"] - 1) ** 2)
        return loss, {"loss": loss[None]}

    step = jax.jit(lambda state: train_state.apply_gradients(state, tx, loss_fn))
    state = train_state.TrainState.create({"w": jnp.zeros(8), "b": jnp.zeros(2)}, tx)
    losses = []
    for _ in range(20):
        state, metrics = step(state)
        losses.append(float(metrics["loss"]))
    assert all(b < a for a, b in itertools.pairwise(losses)), losses
    assert int(state.step) == 20
