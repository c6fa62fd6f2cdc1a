"""Model outputs (typed distribution parameters), tied weights, the layer shapes used for FLOP
counts, and the split between architectures (family-neutral trunks) and families (heads)."""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aevb import architectures, families, models
from aevb.architectures.base import Architecture
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
        # Both uses reach the shared kernel: its gradient is the sum of the gradients of
        # an untied copy's encoder kernel and (transposed) decoder kernel.
        def loss(m, p):
            return jnp.sum(m.apply({"params": p}, x).x_hat)

        grads = jax.grad(functools.partial(loss, model))(params)
        untied = models.Autoencoder(hidden_sizes=(100,), code_dim=30, output_dim=784)
        copies = {**params, "decoder_kernel_0": w1.T, "decoder_kernel_1": w0.T}
        separate = jax.grad(functools.partial(loss, untied))(copies)
        for i, j in ((0, 1), (1, 0)):
            np.testing.assert_allclose(
                grads[f"encoder_kernel_{i}"], separate[f"encoder_kernel_{i}"]
                + separate[f"decoder_kernel_{j}"].T, rtol=1e-5, atol=1e-6)


def test_autoencoder_shapes_and_code_activation():
    model = models.Autoencoder(hidden_sizes=(64, 32), code_dim=10, output_dim=50,
                               code_activation="sigmoid")
    x = jnp.ones((4, 50))
    params = model.init(jax.random.key(0), x)
    out = model.apply(params, x)
    assert out.code.shape == (4, 10) and out.logits.shape == out.x_hat.shape == (4, 50)
    np.testing.assert_allclose(out.code, jax.nn.sigmoid(out.code_preactivation), rtol=1e-6)
    np.testing.assert_allclose(out.x_hat, jax.nn.sigmoid(out.logits), rtol=1e-6)


def test_step_matmuls_list_every_matmul_of_a_training_step():
    """The throughput benchmark's matmuls (rows, fan_in, fan_out, input_gradient): the
    default VAE's, whose per-row FLOPs are the family's forward FLOPs; and the likelihood
    protocol's VampPrior with the IWAE's k = 5 (gated layers as one kernel of twice their
    width, the decoder over 5 x 100 codes, the encoder again over the 500 pseudo-inputs,
    log p(z)'s two matmuls against the 500 components)."""
    from benchmarks import flops
    from experiments import likelihood

    config = defaults.base_config()
    b = config.train.batch_size
    shapes = flops.step_matmuls(config, (28, 28, 1))
    assert shapes == [(b, 784, 500, False), (b, 500, 40, True), (b, 20, 500, True),
                      (b, 500, 784, True)]
    encoder, decoder = families.get("vae").forward_flops(config.model, (28, 28, 1))
    assert encoder + decoder == [2.0 * i * o for _, i, o, _ in shapes]
    config = likelihood.get_config("vampprior")
    config.train.num_samples = 5
    assert flops.step_matmuls(config, (28, 28, 1)) == [
        (100, 784, 600, False), (100, 300, 600, True), (100, 300, 80, True),
        (500, 40, 600, True), (500, 300, 600, True), (500, 300, 784, True),
        (500, 784, 600, True), (500, 300, 600, True), (500, 300, 80, True),
        (500, 40, 500, True), (500, 40, 500, True)]
    encoder, decoder = families.get("vae").forward_flops(config.model, (28, 28, 1))
    assert encoder + decoder == [2.0 * i * o for _, i, o, _ in
                                 flops.step_matmuls(config, (28, 28, 1))[:6]]
    ae = models.Autoencoder(hidden_sizes=(100,), code_dim=30, output_dim=784, tied_weights=True)
    assert ae.dense_shapes() == [(784, 100), (100, 30), (30, 100), (100, 784)]


def test_gated_layers_and_the_clipped_log_variance_against_their_formulas():
    """h = (x W1 + b1) * sigmoid(x W2 + b2), W1 and W2 the halves of one kernel; q(z|x)'s
    log-variance is the unclipped encoder's, clipped to [-6, 2]; the FLOP count doubles the
    gated matmuls."""
    x = jax.random.normal(jax.random.key(1), (5, 7))
    mlp = models.MLP((4, 3), models.GATED)
    params = mlp.init(jax.random.key(0), x)
    h = np.asarray(x)
    for i in range(2):
        kernel, bias = (np.asarray(params["params"][f"hidden_{i}"][k]) for k in ("kernel", "bias"))
        value, gate = np.split(h @ kernel + bias, 2, axis=1)
        h = value / (1 + np.exp(-gate))
    np.testing.assert_allclose(mlp.apply(params, x), h, rtol=1e-5, atol=1e-6)

    def encoder(clip):
        return models.GaussianEncoder(models.MLP((4,), "linear", name="mlp"), 3,
                                      log_var_clip=clip)
    params = encoder(()).init(jax.random.key(0), x * 30)  # large inputs: large log-variances
    free = np.asarray(encoder(()).apply(params, x * 30).log_var)
    clipped = np.asarray(encoder((-6.0, 2.0)).apply(params, x * 30).log_var)
    assert free.min() < -6 and free.max() > 2
    np.testing.assert_array_equal(clipped, np.clip(free, -6.0, 2.0))

    config = defaults.base_config()
    config.model.activation = models.GATED
    encoder_flops, decoder_flops = families.get("vae").forward_flops(config.model, (28, 28, 1))
    assert encoder_flops + decoder_flops == [2.0 * 784 * 1000, 2.0 * 500 * 40, 2.0 * 20 * 1000,
                                             2.0 * 500 * 784]


@pytest.mark.parametrize("b_shape", [(3, 4, 5), (2, 3, 4, 5), (4, 5), (3, 1, 5)])
def test_broadcast_add_has_the_value_and_gradients_of_a_plus_b(b_shape):
    """The slice-by-slice gradient of `broadcast_add` against `a + b`'s, with the general
    broadcasting case ([3, 1, 5]) on the plain path."""
    a = jax.random.normal(jax.random.key(0), (4, 5))
    b = jax.random.normal(jax.random.key(1), b_shape)
    w = jax.random.normal(jax.random.key(2), jnp.broadcast_shapes(a.shape, b_shape))

    def grads(add):
        return jax.grad(lambda a, b: jnp.sum(w * jnp.sin(add(a, b))), argnums=(0, 1))(a, b)

    np.testing.assert_array_equal(models.broadcast_add(a, b), a + b)
    for mine, plain in zip(grads(models.broadcast_add), grads(lambda a, b: a + b)):
        np.testing.assert_allclose(mine, plain, rtol=1e-6, atol=1e-6)


def test_unknown_activation_names_the_field():
    with pytest.raises(ValueError, match="model.activation"):
        models.get_activation("swish")


FAMILY_WORDS = re.compile(r"vae|autoencoder|gaussian|posterior|bernoulli|classif|m2")


def test_no_architecture_method_is_named_after_a_family():
    """Architectures supply family-neutral trunks; the families add their heads."""
    names = {n for cls in (Architecture, *map(type, architectures.ARCHITECTURES.values()))
             for n in vars(cls) if callable(getattr(cls, n)) and not n.startswith("_")}
    assert "encoder_trunk" in names and [n for n in names if FAMILY_WORDS.search(n)] == []


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_vae_heads_sit_beside_their_trunks(architecture):
    """The parameter paths the VAE had before its trunks came from the architectures
    (Flax derives each parameter's initial randomness from its path)."""
    config = defaults.base_config()
    config.model.architecture, config.model.hidden_sizes = architecture, (8,)
    config.model.conv.channels, config.model.conv.kernels = (2,), (3,)
    config.model.conv.strides, config.model.conv.pools = (1,), (2,)
    config.model.conv.paddings = ("same",)
    family = families.get("vae")
    model = family.make_model(config.model, (8, 8, 1))
    params = jax.eval_shape(lambda: family.init_params(model, jax.random.key(0), (8, 8, 1)))
    paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)}
    trunk = "mlp" if architecture == "mlp" else "body"
    enc = {"['params']['encoder']['mean_log_var']['kernel']",
           (f"['params']['encoder']['{trunk}']['{'hidden_0' if trunk == 'mlp' else 'conv_0'}']"
            "['kernel']")}
    dec = ({"['params']['decoder']['logits']['kernel']",
            "['params']['decoder']['mlp']['hidden_0']['kernel']"} if architecture == "mlp"
           else {"['params']['decoder']['body']['to_map']['kernel']",
                 "['params']['decoder']['body']['deconv_0']['kernel']"})
    assert enc | dec <= paths
