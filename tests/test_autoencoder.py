"""Autoencoder family: losses against numpy, sparsity wiring and training, the PCA optimum
and the PCA baseline on the inputs the model sees."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import model_and_state

from aevb import data as data_lib
from aevb.config import checks
from aevb.evaluation import measures
from aevb.families import autoencoder as ae
from aevb.regimes import joint as train
from aevb.regimes.validation import validate
from aevb.training.epoch import make_train_epoch


def _model_and_params(config, d=784):
    _, model, _, state = model_and_state(config, (1, d, 1))
    return model, state.params


def test_reconstruction_losses_against_numpy():
    from experiments import autoencoder

    config = autoencoder.get_config()
    model, params = _model_and_params(config)
    x = jax.random.uniform(jax.random.key(1), (8, 784))
    out = model.apply(params, x)
    x_np, logits = np.asarray(x, np.float64), np.asarray(out.logits, np.float64)
    x_hat = 1 / (1 + np.exp(-logits))
    mse = ae.autoencoder_terms(model, params, x, jax.random.key(2),
                               reconstruction_loss="mse")["recon"]
    np.testing.assert_allclose(mse, ((x_hat - x_np) ** 2).mean(-1), rtol=1e-5)
    ce = ae.autoencoder_terms(model, params, x, jax.random.key(2),
                              reconstruction_loss="cross_entropy")["recon"]
    expected = -(x_np * np.log(x_hat) + (1 - x_np) * np.log(1 - x_hat)).mean(-1)
    np.testing.assert_allclose(ce, expected, rtol=1e-5)


def test_kl_sparsity_term_is_weight_times_the_batch_penalty():
    from experiments import sparse

    config = sparse.get_config()
    model, params = _model_and_params(config)
    x = jax.random.uniform(jax.random.key(1), (64, 784))
    family = ae.AutoencoderFamily()
    terms = family.objective(config, model, train=True)(params, x, jax.random.key(2))
    codes = np.asarray(model.apply(params, x).code, np.float64)
    rho, rho_hat = 0.1, codes.mean(0)
    penalty = np.sum(rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat)))
    np.testing.assert_allclose(terms["sparsity"], penalty, rtol=1e-4)
    np.testing.assert_allclose(terms["loss"], terms["recon"] + 5e-3 * penalty, rtol=1e-5)

    config.sparsity.kind = "l1"
    l1 = family.objective(config, model, train=True)(params, x, jax.random.key(2))["sparsity"]
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
    with pytest.raises(checks.ConfigError, match=field):
        validate(config)


def test_linear_autoencoder_reaches_pca_error(tiny_idx_dir):
    """A linear undercomplete autoencoder trained with MSE finds PCA's subspace (Baldi &
    Hornik 1989): its reconstruction error must come within a few percent of PCA's."""
    from experiments import autoencoder

    train_split, _ = data_lib.load_idx_dir(tiny_idx_dir)
    images = jnp.asarray(train_split.images.reshape(-1, 784))
    x = np.asarray(data_lib.to_unit_interval(images))
    k = 10
    pca = measures.pca_reconstruction_mse(x, x, k)

    config = autoencoder.get_config("linear")
    config.model.latent_dim = k
    config.train.learning_rate = 3e-3
    family, model, tx, state = model_and_state(config)
    epoch = make_train_epoch(family.objective(config, model, train=True), tx, 50, "none")
    for e in range(150):
        state, _ = epoch(state, images, jax.random.key(e))
    error = float(jnp.mean(ae.reconstruction_terms(
        model, state.params, jnp.asarray(x), jax.random.key(0), 1000)["mse"]))
    print(f"linear AE mse {error:.5f}, PCA-{k} mse {pca:.5f}, ratio {error / pca:.4f}")
    assert pca <= error * 1.0001  # PCA is the optimum of every linear rank-k code
    assert error <= 1.03 * pca


def test_pca_error_is_cached_per_dataset_and_code_size(tmp_path, monkeypatch):
    monkeypatch.setenv("AEVB_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    first = measures.cached_pca_mse("toy", lambda: x, x, 3)
    assert first == pytest.approx(measures.pca_reconstruction_mse(x, x, 3))
    calls = []
    monkeypatch.setattr(measures, "pca_reconstruction_mse", lambda *a: calls.append(a) or 0.0)
    assert measures.cached_pca_mse("toy", lambda: x, x, 3) == first and not calls
    measures.cached_pca_mse("toy", lambda: x, x, 4)
    assert len(calls) == 1


def test_code_statistics():
    codes = np.array([[0.0, 0.5], [0.2, 0.5], [0.01, 0.5], [0.0, 0.5]])
    stats = measures.code_statistics(codes)
    assert stats["code_mean_activation"] == pytest.approx((0.0525 + 0.5) / 2)
    assert stats["code_activation_spread"] == pytest.approx((0.5 - 0.0525) / 2)
    assert stats["code_fraction_near_zero"] == pytest.approx(3 / 8)


@pytest.mark.parametrize("binarize", ["static", "dynamic"])
def test_pca_baseline_is_fitted_and_scored_on_the_inputs_the_model_sees(
        tiny_idx_dir, tmp_path, monkeypatch, binarize):
    """Binarized runs: PCA fitted on the binarized training pixels (static: thresholded;
    dynamic: one fixed-key draw), scored on the binarized test set."""
    from experiments import autoencoder

    monkeypatch.setenv("AEVB_CACHE_DIR", str(tmp_path / "cache"))
    config = autoencoder.get_config()
    config.data.dir = tiny_idx_dir
    config.data.num_validation = 0
    config.data.binarize = binarize
    config.model.latent_dim = 5
    config.train.num_epochs = 1
    summary = train.train_and_evaluate(config, str(tmp_path / "run"))

    train_split, test_split = data_lib.load_idx_dir(tiny_idx_dir)
    grey = lambda s: s.images.reshape(-1, 784).astype(np.float64) / 255
    if binarize == "static":
        train_x, test_x = (grey(s) > 0.5 for s in (train_split, test_split))
    else:  # the draws are Bernoulli(grey): check them, then use them
        from aevb.data.pixels import preprocess
        from aevb.training import keys
        draws = keys.data_keys(config.data.seed)
        train_x, test_x = (np.asarray(preprocess(jnp.asarray(s.images.reshape(-1, 784)),
                                                 "dynamic", k))
                           for s, k in ((train_split, draws.train), (test_split, draws.test)))
        assert set(np.unique(train_x)) == {0.0, 1.0}
        assert abs(train_x.mean() - grey(train_split).mean()) < 0.01
    expected = measures.pca_reconstruction_mse(train_x, test_x, 5)
    assert summary["pca_mse"] == pytest.approx(expected, rel=1e-6)
    assert summary["pca_mse"] != pytest.approx(
        measures.pca_reconstruction_mse(grey(train_split), test_x, 5), rel=1e-3)


def test_kl_sparse_training_moves_mean_activations_to_the_target(tiny_idx_dir):
    """Trained with the KL penalty, the code's mean activation goes to the target 0.1; the
    same training without it leaves the code far more active."""
    from experiments import sparse

    train_split, _ = data_lib.load_idx_dir(tiny_idx_dir)
    images = jnp.asarray(train_split.images.reshape(-1, 784))
    x = data_lib.to_unit_interval(images)
    mean_activation = {}
    for weight in (0.0, 0.05):
        config = sparse.get_config()
        config.model.latent_dim = 64
        config.sparsity.weight = weight
        family, model, tx, state = model_and_state(config)
        epoch = make_train_epoch(family.objective(config, model, train=True), tx, 50, "none")
        for e in range(8):
            state, _ = epoch(state, images, jax.random.key(e))
        mean_activation[weight] = float(jnp.mean(model.apply(state.params, x).code))
    assert abs(mean_activation[0.05] - 0.1) < 0.03, mean_activation
    assert mean_activation[0.0] > 0.2, mean_activation
