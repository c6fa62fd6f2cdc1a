"""Autoencoder objectives: losses against numpy, sparsity wiring, and the PCA optimum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aevb import configs, evaluate, objectives, train
from aevb import data as data_lib


def _model_and_params(config, d=784):
    model = train.make_model(config.model, d)
    return model, model.init(jax.random.key(0), jnp.zeros((1, d)))


def test_reconstruction_losses_against_numpy():
    from experiments import autoencoder

    config = autoencoder.get_config()
    model, params = _model_and_params(config)
    x = jax.random.uniform(jax.random.key(1), (8, 784))
    out = model.apply(params, x)
    x_np, logits = np.asarray(x, np.float64), np.asarray(out["logits"], np.float64)
    x_hat = 1 / (1 + np.exp(-logits))
    mse = objectives.autoencoder_terms(model, params, x, jax.random.key(2), "mse")["recon"]
    np.testing.assert_allclose(mse, ((x_hat - x_np) ** 2).mean(-1), rtol=1e-5)
    ce = objectives.autoencoder_terms(model, params, x, jax.random.key(2),
                                      "cross_entropy")["recon"]
    expected = -(x_np * np.log(x_hat) + (1 - x_np) * np.log(1 - x_hat)).mean(-1)
    np.testing.assert_allclose(ce, expected, rtol=1e-5)


def test_kl_sparsity_term_is_weight_times_the_batch_penalty():
    from experiments import sparse

    config = sparse.get_config()
    model, params = _model_and_params(config)
    x = jax.random.uniform(jax.random.key(1), (64, 784))
    terms = objectives.make(config, model, train=True)(params, x, jax.random.key(2))
    codes = np.asarray(model.apply(params, x)["code"], np.float64)
    rho, rho_hat = 0.1, codes.mean(0)
    penalty = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    np.testing.assert_allclose(terms["sparsity"], penalty, rtol=1e-4)
    np.testing.assert_allclose(terms["loss"], terms["recon"] + 5e-3 * penalty, rtol=1e-5)

    config.sparsity.kind = "l1"
    l1 = objectives.make(config, model, train=True)(params, x, jax.random.key(2))["sparsity"]
    np.testing.assert_allclose(l1, np.abs(codes).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("change, field", [
    ({"train.batch_size": 16}, "train.batch_size"),
    ({"model.code_activation": "relu"}, "model.code_activation"),
    ({"model.kind": "vae"}, "sparsity.kind"),
    ({"sparsity.target": 1.5}, "sparsity.target"),
    ({"noise.rate": 1.0}, "noise.rate"),
    ({"noise.kind": "speckle"}, "noise.kind"),
    ({"sparsity.kind": "none", "model.reconstruction_loss": "cross_entropy",
      "model.output_activation": "linear"}, "model.output_activation"),
])
def test_sparse_config_errors_name_the_field(change, field):
    from experiments import sparse

    config = sparse.get_config()
    for key, value in change.items():
        section, name = key.split(".")
        config[section][name] = value
    with pytest.raises(configs.ConfigError, match=field):
        configs.validate(config)


def test_linear_autoencoder_reaches_pca_error(tiny_idx_dir):
    """A linear undercomplete autoencoder trained with MSE finds PCA's subspace (Baldi &
    Hornik 1989): its reconstruction error must come within a few percent of PCA's."""
    from experiments import autoencoder

    train_split, _ = data_lib.load_idx_dir(tiny_idx_dir)
    images = jnp.asarray(train_split.images.reshape(-1, 784))
    x = np.asarray(data_lib.to_unit_interval(images))
    k = 10
    pca = evaluate.pca_reconstruction_mse(x, x, k)

    config = autoencoder.get_config("linear")
    config.model.latent_dim = k
    config.train.learning_rate = 3e-3
    model = train.make_model(config.model, 784)
    tx = train.make_optimizer(config.train)
    state = train.create_train_state(model, tx, jax.random.key(0), 784)
    epoch = train.make_train_epoch(objectives.make(config, model, train=True), tx, 50, "none")
    for e in range(150):
        state, _ = epoch(state, images, jax.random.key(e))
    error = float(jnp.mean(evaluate.reconstruction_terms(
        model, state.params, jnp.asarray(x), jax.random.key(0), 1000)["mse"]))
    print(f"linear AE mse {error:.5f}, PCA-{k} mse {pca:.5f}, ratio {error / pca:.4f}")
    assert pca <= error * 1.0001  # PCA is the optimum of every linear rank-k code
    assert error <= 1.03 * pca


def test_pca_error_is_cached_per_dataset_and_code_size(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    first = evaluate.cached_pca_mse("toy", x, x, 3)
    assert first == pytest.approx(evaluate.pca_reconstruction_mse(x, x, 3))
    calls = []
    monkeypatch.setattr(evaluate, "pca_reconstruction_mse", lambda *a: calls.append(a) or 0.0)
    assert evaluate.cached_pca_mse("toy", x, x, 3) == first and not calls
    evaluate.cached_pca_mse("toy", x, x, 4)
    assert len(calls) == 1


def test_code_statistics():
    codes = np.array([[0.0, 0.5], [0.2, 0.5], [0.01, 0.5], [0.0, 0.5]])
    stats = evaluate.code_statistics(codes)
    assert stats["code_mean_activation"] == pytest.approx((0.0525 + 0.5) / 2)
    assert stats["code_activation_spread"] == pytest.approx((0.5 - 0.0525) / 2)
    assert stats["code_fraction_near_zero"] == pytest.approx(3 / 8)
