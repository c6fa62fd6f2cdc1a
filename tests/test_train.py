"""End-to-end tests of a joint run through the one loop: run files, determinism, resume,
errors, compilation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import comparable as _comparable
from conftest import model_and_state

from aevb.config import checks
from aevb.families import vae as vae_family
from aevb.regimes import joint as train
from aevb.run import workdir as workdir_lib
from aevb.training import train_state
from aevb.training.epoch import make_train_epoch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_run_leaves_its_files(tiny_config, tmp_path):
    workdir = str(tmp_path / "run")
    tiny_config.model.latent_dim = 2
    summary = train.train_and_evaluate(tiny_config, workdir)

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


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_config, tmp_path):
    a = train.train_and_evaluate(tiny_config, str(tmp_path / "a"))
    b = train.train_and_evaluate(tiny_config, str(tmp_path / "b"))
    assert _comparable(a) == _comparable(b)
    tiny_config.train.seed = 1
    c = train.train_and_evaluate(tiny_config, str(tmp_path / "c"))
    assert c["train_loss"] != a["train_loss"]


@pytest.mark.parametrize("impl", ["threefry2x32", "rbg"])
def test_resume_continues_from_checkpoint(tiny_config, tmp_path, impl):
    tiny_config.train.prng_impl = impl
    full = train.train_and_evaluate(tiny_config.copy_and_resolve_references(),
                                    str(tmp_path / "full"))
    tiny_config.train.num_epochs = 1
    train.train_and_evaluate(tiny_config, str(tmp_path / "split"))
    tiny_config.train.num_epochs = 2
    resumed = train.train_and_evaluate(tiny_config, str(tmp_path / "split"))
    assert _comparable(resumed) == _comparable(full)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    epochs = [json.loads(line)["epoch"] for line in lines]
    assert epochs == [1, 2, 2]  # the first run's final line was replaced, not duplicated
    assert not (tmp_path / "split" / "summary.stale.json").exists()  # superseded


def test_resume_refuses_a_different_config(tiny_config, tmp_path):
    tiny_config.train.num_epochs = 1
    train.train_and_evaluate(tiny_config, str(tmp_path / "run"))
    tiny_config.train.learning_rate = 0.5
    with pytest.raises(checks.ConfigError, match="train.learning_rate"):
        train.train_and_evaluate(tiny_config, str(tmp_path / "run"))


def _launch(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "launch.py", *args], cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_killed_run_resumes_to_the_same_result(tiny_idx_dir, tmp_path):
    """SIGKILL a run after its third checkpoint; rerunning the command finishes it identically."""
    args = ["--config=experiments/vae.py", f"--config.data.dir={tiny_idx_dir}",
            "--config.model.hidden_sizes=(32,)", "--config.model.latent_dim=4",
            "--config.train.num_epochs=40", "--config.train.batch_size=50",
            "--config.eval.every_epochs=10", "--config.eval.iwae_k=10",
            "--config.eval.iwae_num_examples=20"]
    killed_dir = tmp_path / "killed"
    proc = _launch(*args, f"--workdir={killed_dir}")
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpts = killed_dir / "checkpoints"
        if ckpts.is_dir() and any(p.name.isdigit() and int(p.name) >= 3 for p in ckpts.iterdir()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (killed_dir / "summary.json").exists(), "the run ended before it was killed"
    assert (killed_dir / ".lock").exists()  # the killed run's lock, which the OS released

    # The resumed and the uninterrupted run, side by side (2 cores).
    resumed = _launch(*args, f"--workdir={killed_dir}")
    straight = _launch(*args, f"--workdir={tmp_path / 'straight'}")
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    assert "resuming" in out
    out, _ = straight.communicate(timeout=300)
    assert straight.returncode == 0, out
    a = json.loads((killed_dir / "summary.json").read_text())
    b = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert _comparable(a) == _comparable(b)


def test_unknown_idx_dataset_without_dir_fails_before_writing(tiny_config, tmp_path):
    tiny_config.data.dir = ""
    tiny_config.data.source = "idx"
    tiny_config.data.name = "kmnist"
    with pytest.raises(Exception, match="data.dir"):
        train.train_and_evaluate(tiny_config, str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tiny_config, tmp_path, monkeypatch):
    workdir = str(tmp_path / "run")
    tiny_config.train.num_epochs = 1
    train.train_and_evaluate(tiny_config, workdir)

    original = vae_family.vae_terms

    def poisoned(*args, **kwargs):
        terms = original(*args, **kwargs)
        return {**terms, "loss": terms["loss"] * jnp.nan}

    monkeypatch.setattr(vae_family, "vae_terms", poisoned)
    tiny_config.train.num_epochs = 3
    with pytest.raises(checks.NonFiniteLossError, match="epoch 2.*epoch 1"):
        train.train_and_evaluate(tiny_config, workdir)
    assert sorted(os.listdir(f"{workdir}/checkpoints")) == ["1"]
    # No summary.json describes the run now: the finished 1-epoch run's is set aside as
    # stale, and no sweep or pretraining takes this run for finished.
    assert not os.path.exists(f"{workdir}/summary.json")
    with open(f"{workdir}/summary.stale.json") as f:
        assert json.load(f)["epochs"] == 1
    assert workdir_lib.finished(tiny_config, workdir) is None
    with open(f"{workdir}/metrics.jsonl") as f:
        assert not any(json.loads(line).get("final") for line in f)


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
    tiny_config.train.optimizer = optimizer
    tiny_config.train.learning_rate = {"adagrad": 0.05, "sgd": 1e-4}.get(optimizer, 1e-3)
    tiny_config.train.weight_decay = 1e-4
    family, model, tx, state = model_and_state(tiny_config)
    train_epoch = make_train_epoch(family.objective(tiny_config, model, train=True), tx, 50,
                                   "static")
    images = jnp.asarray(np.random.default_rng(0).integers(0, 2, (500, 784), np.uint8) * 255)
    state, first = train_epoch(state, images, jax.random.key(0))
    for e in range(1, 4):
        state, last = train_epoch(state, images, jax.random.key(e))
    assert float(last["loss"]) < float(first["loss"])


def test_profile_traces_one_epoch_after_compilation(tiny_config, tmp_path, capsys):
    tiny_config.train.profile = True
    train.train_and_evaluate(tiny_config, str(tmp_path / "run"))
    traces = list((tmp_path / "run" / "profile").rglob("*.xplane.pb"))
    assert len(traces) == 1 and traces[0].stat().st_size > 0
    assert "profile of one epoch written to" in capsys.readouterr().out
