"""Corruptions: measured rates and spreads match the config, keys decide, evaluation is clean."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import model_and_state

from aevb.data import noise
from aevb.families import autoencoder as ae
from aevb.training.epoch import make_train_epoch

X = jnp.full((200, 784), 0.5, jnp.float32)  # 156,800 units: sampling error ~1e-3


def test_gaussian_noise_has_the_configured_std_and_zero_mean():
    out = noise.corrupt(X, "gaussian", jax.random.key(0), std=0.3)
    delta = np.asarray(out - X)
    assert delta.std() == pytest.approx(0.3, rel=0.01)
    assert abs(delta.mean()) < 0.003


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_masking_switches_off_the_configured_fraction(rate):
    out = np.asarray(noise.corrupt(X, "masking", jax.random.key(0), rate=rate))
    assert np.mean(out == 0) == pytest.approx(rate, abs=0.005)
    assert np.all((out == 0) | (out == 0.5))  # kept units are unchanged


def test_dropout_rescales_kept_units_and_keeps_the_mean():
    out = np.asarray(noise.corrupt(X, "dropout", jax.random.key(0), rate=0.5))
    assert np.mean(out == 0) == pytest.approx(0.5, abs=0.005)
    assert np.all((out == 0) | (out == 1.0))
    assert out.mean() == pytest.approx(0.5, abs=0.005)


def test_salt_and_pepper_hits_the_configured_fraction_half_salt_half_pepper():
    out = np.asarray(noise.corrupt(X, "salt_and_pepper", jax.random.key(0), rate=0.2))
    assert np.mean(out != 0.5) == pytest.approx(0.2, abs=0.005)
    assert np.mean(out == 1.0) == pytest.approx(0.1, abs=0.004)
    assert np.mean(out == 0.0) == pytest.approx(0.1, abs=0.004)


@pytest.mark.parametrize("kind", ["gaussian", "masking", "dropout", "salt_and_pepper"])
def test_same_key_same_noise_other_key_other_noise(kind):
    a = noise.corrupt(X, kind, jax.random.key(1), std=0.1, rate=0.3)
    b = noise.corrupt(X, kind, jax.random.key(1), std=0.1, rate=0.3)
    c = noise.corrupt(X, kind, jax.random.key(2), std=0.1, rate=0.3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    jitted = jax.jit(noise.corrupt, static_argnums=1)(X, kind, jax.random.key(1), 0.1, 0.3)
    np.testing.assert_allclose(jitted, a, rtol=1e-6)  # same draws; fused float rounding


def test_none_is_identity_and_unknown_kind_names_the_allowed_ones():
    np.testing.assert_array_equal(noise.corrupt(X, "none", jax.random.key(0)), X)
    with pytest.raises(ValueError, match="salt_and_pepper"):
        noise.corrupt(X, "speckle", jax.random.key(0))


def _denoising_config(kind):
    from experiments import denoising

    config = denoising.get_config()
    config.noise.kind = kind
    return config


@pytest.mark.parametrize("kind", ["gaussian", "masking", "dropout", "salt_and_pepper"])
def test_training_objective_corrupts_and_evaluation_objective_does_not(kind):
    config = _denoising_config(kind)
    family, model, _, state = model_and_state(config)
    params = state.params
    x = jax.random.uniform(jax.random.key(3), (64, 784))
    clean = ae.autoencoder_terms(model, params, x, jax.random.key(4),
                                 reconstruction_loss=config.model.reconstruction_loss)["recon"]
    for key in (4, 5):  # the evaluation objective ignores its key: no noise at all
        evaluated = family.objective(config, model, train=False)(params, x, jax.random.key(key))
        np.testing.assert_array_equal(evaluated["recon"], clean)
    trained = family.objective(config, model, train=True)
    noisy_a = trained(params, x, jax.random.key(4))["recon"]
    noisy_b = trained(params, x, jax.random.key(5))["recon"]
    assert not np.allclose(noisy_a, clean)
    assert not np.allclose(noisy_a, noisy_b)  # a fresh corruption for a fresh key


def test_every_step_of_an_epoch_draws_a_fresh_corruption(monkeypatch):
    """The epoch hands each step its own key, so no two steps share a mask."""
    seen = []
    original = noise.corrupt

    def recording(x, kind, key, std=0.0, rate=0.0):
        out = original(x, kind, key, std, rate)
        jax.debug.callback(lambda m: seen.append(np.asarray(m)), out == 0)
        return out

    monkeypatch.setattr(noise, "corrupt", recording)
    config = _denoising_config("masking")
    family, model, tx, state = model_and_state(config)
    epoch = make_train_epoch(family.objective(config, model, train=True), tx, 10, "none")
    images = jnp.full((30, 784), 200, jnp.uint8)  # same images in every batch
    jax.block_until_ready(epoch(state, images, jax.random.key(0)))
    assert len(seen) == 3
    assert not np.array_equal(seen[0], seen[1]) and not np.array_equal(seen[1], seen[2])
