"""Model outputs (typed distribution parameters), tied weights, and the layer shapes used
for FLOP counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aevb import models
from aevb.architectures import mlp
from aevb.config import defaults
from aevb.models.distributions import Bernoulli, Gaussian


def test_vae_returns_distribution_parameters_with_the_right_shapes():
    model = models.dense_vae((32, 16), 3, 20)
    x = jnp.ones((5, 20))
    params = model.init(jax.random.key(0), x, jax.random.key(1))
    out = model.apply(params, x, jax.random.key(2))
    assert isinstance(out.posterior, Gaussian) and isinstance(out.likelihood, Bernoulli)
    assert (out.posterior.loc.shape, out.posterior.log_var.shape, out.z.shape,
            out.likelihood.logits.shape) == ((5, 3), (5, 3), (5, 3), (5, 20))
    samples = model.apply(params, jnp.zeros((7, 3)), method=model.generate)
    assert samples.shape == (7, 20) and float(samples.min()) >= 0 and float(samples.max()) <= 1


def test_gaussian_decoder_and_reparameterized_samples():
    model = models.dense_vae((8,), 2, 6, "gaussian")
    x = jnp.ones((4, 6))
    params = model.init(jax.random.key(0), x, jax.random.key(1))
    out = model.apply(params, x, jax.random.key(2))
    assert isinstance(out.likelihood, Gaussian)
    assert out.likelihood.loc.shape == out.likelihood.log_var.shape == (4, 6)
    assert float(out.likelihood.loc.min()) > 0 and float(out.likelihood.loc.max()) < 1
    mean, log_var = jnp.array([1.0, -2.0]), jnp.log(jnp.array([0.25, 4.0]))
    z = np.asarray(Gaussian(mean, log_var).sample(jax.random.key(3), 200_000))
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(z.std(0), [0.5, 2.0], rtol=0.01)


@pytest.mark.parametrize("tied", [False, True])
def test_stacked_autoencoder_parameter_count_and_tied_transposes(tied):
    model = models.Autoencoder(hidden_sizes=(100,), code_dim=30, output_dim=784,
                               tied_weights=tied)
    x = jax.random.uniform(jax.random.key(0), (3, 784))
    params = model.init(jax.random.key(1), x)["params"]
    encoder_kernels = 784 * 100 + 100 * 30
    biases = (100 + 30) + (100 + 784)
    expected = encoder_kernels + biases + (0 if tied else encoder_kernels)
    assert sum(p.size for p in jax.tree.leaves(params)) == expected
    assert ("decoder_kernel_0" in params) is not tied

    if tied:  # the decoder's matmuls use exactly the transposed encoder kernels
        w0, w1 = params["encoder_kernel_0"], params["encoder_kernel_1"]
        code = model.apply({"params": params}, x, method=model.encode)
        h = jax.nn.relu(code @ w1.T + params["decoder_bias_0"])
        expected_logits = h @ w0.T + params["decoder_bias_1"]
        np.testing.assert_array_equal(model.apply({"params": params}, x).logits,
                                      expected_logits)
        grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, x).x_hat))(params)
        assert set(grads) == set(params)  # gradients of both uses reach the shared kernel


def test_autoencoder_shapes_and_code_activation():
    model = models.Autoencoder(hidden_sizes=(64, 32), code_dim=10, output_dim=50,
                               code_activation="sigmoid")
    x = jnp.ones((4, 50))
    params = model.init(jax.random.key(0), x)
    out = model.apply(params, x)
    assert out.code.shape == (4, 10) and out.logits.shape == out.x_hat.shape == (4, 50)
    np.testing.assert_allclose(out.code, jax.nn.sigmoid(out.code_preactivation), rtol=1e-6)
    np.testing.assert_allclose(out.x_hat, jax.nn.sigmoid(out.logits), rtol=1e-6)


def test_dense_shapes_list_every_matmul():
    config = defaults.base_config()
    assert mlp.vae_dense_shapes(config.model, (28, 28, 1)) == [(784, 500), (500, 40),
                                                                (20, 500), (500, 784)]
    ae = models.Autoencoder(hidden_sizes=(100,), code_dim=30, output_dim=784, tied_weights=True)
    assert ae.dense_shapes() == [(784, 100), (100, 30), (30, 100), (100, 784)]


def test_unknown_activation_names_the_field():
    with pytest.raises(ValueError, match="model.activation"):
        models.get_activation("swish")
