"""The likelihood protocol end to end on the tiny IDX data: the IWAE objective with a KL
warm-up and the IWAE schedule through an interrupted run, the Gaussian decoder on
dequantized data, and what the summary says about its L_k."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import comparable, interrupt_and_resume, small_vae_config

from aevb import data as data_lib
from aevb.regimes import joint as train
from experiments import iwae


def _lines(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_warmup_and_schedule_resume_exactly_after_a_kill(tiny_npz, tmp_path, monkeypatch):
    """The joint regime's resume-equality test: killed after epoch 1 of 3 (checkpoints every
    epoch), the rerun's summary and metrics lines are the straight run's, with the IWAE
    objective, a KL warm-up, the IWAE schedule and the rbg generator (whose keys the loop
    derives again on resume, as threefry's), on data from an .npz file."""
    config = small_vae_config(tiny_npz)
    config.train.num_epochs = 3
    config.train.prng_impl = "rbg"
    config.train.objective, config.train.num_samples = "iwae", 3
    config.train.lr_schedule, config.train.kl_warmup_epochs = "iwae", 2
    config.train.checkpoint_every_epochs = 1
    straight = train.train_and_evaluate(config.copy_and_resolve_references(),
                                        str(tmp_path / "straight"))
    resumed = interrupt_and_resume(monkeypatch, train.train_and_evaluate, config,
                                   str(tmp_path / "resumed"), phase="", round_=1, how="kill")
    assert comparable(resumed) == comparable(straight)
    assert ([comparable(line) for line in _lines(tmp_path / "resumed")]
            == [comparable(line) for line in _lines(tmp_path / "straight")])

    # Each epoch's metrics carry the mean KL weight and learning rate over its steps.
    steps = 1000 // config.train.batch_size          # 20 steps per epoch, 60 in all
    total = 3 * steps
    begins = [round(total * sum(3**j for j in range(i)) / 3280) for i in range(1, 8)]
    rate = [1e-3 * 10 ** (-sum(s >= b for b in begins) / 7) for s in range(total)]
    weight = [min(1.0, s / (2 * steps)) for s in range(total)]
    lines = [line for line in _lines(tmp_path / "resumed") if not line.get("final")]
    for e, line in enumerate(lines):
        window = slice(e * steps, (e + 1) * steps)
        assert line["train_kl_weight"] == pytest.approx(np.mean(weight[window]), rel=1e-5)
        assert line["train_learning_rate"] == pytest.approx(np.mean(rate[window]), rel=1e-5)
    assert lines[-1]["train_kl_weight"] == 1.0
    # The test -ELBO is the true bound (weight 1) even while the weight is below 1.
    first = lines[0]
    assert first["test_neg_elbo"] == pytest.approx(first["test_recon"] + first["test_kl"],
                                                   rel=1e-5)


def test_gaussian_decoder_on_dequantized_data(tiny_idx_dir, tmp_path):
    """Nats and bits per dimension of L_k on the whole test set; per-unit KLs that add up to
    the KL; the interpolation picture."""
    config = small_vae_config(tiny_idx_dir)
    config.train.num_epochs = 1
    config.model.decoder, config.data.binarize = "gaussian", "dequantize"
    config.eval.iwae_num_examples = -1
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))
    assert summary["test_log_likelihood_examples"] == 200      # all of the tiny test set
    assert summary["test_log_likelihood_k"] == config.eval.iwae_k
    assert summary["test_log_likelihood_bits_per_dim"] == pytest.approx(
        -(summary["test_log_likelihood"] - 784 * np.log(256)) / (784 * np.log(2)))
    assert summary["test_log_likelihood_bits_per_dim"] > 0
    assert summary["test_neg_elbo_bits_per_dim"] > summary["test_log_likelihood_bits_per_dim"]
    units = [summary[f"test_kl_units/{j}"] for j in range(config.model.latent_dim)]
    assert sum(units) == pytest.approx(summary["test_kl"], rel=1e-4)
    assert (tmp_path / "run" / "interpolations.png").exists()
    assert data_lib.bits_per_dim(summary["test_log_likelihood"], 784) == pytest.approx(
        summary["test_log_likelihood_bits_per_dim"])


def test_iwae_experiment_is_the_papers_protocol():
    config = iwae.get_config("iwae_k50")
    assert (tuple(config.model.hidden_sizes), config.model.latent_dim) == ((200, 200), 50)
    assert (config.train.batch_size, config.train.adam_eps, config.train.num_epochs) == (
        20, 1e-4, 3280)
    assert (config.train.objective, config.train.num_samples) == ("iwae", 50)
    assert (config.eval.iwae_k, config.eval.iwae_num_examples) == (5000, -1)
    assert iwae.get_config("budget").train.num_epochs == 1640
    assert iwae.get_config("vae_k5").train.objective == "elbo"
