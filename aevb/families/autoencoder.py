"""The autoencoder family: undercomplete, stacked (tied or not), denoising and sparse.

Objective (per example): the reconstruction loss per pixel (MSE or binary cross-entropy,
as Keras reports them) of the clean x from the corrupted x~, plus `sparsity.weight` times a
sparsity penalty on the code: `kl`, sum_j KL(target || rho_hat_j) over the batch (a batch
statistic: every example carries the same value), or `l1`, sum_j |code_j| per example.
The family also owns the layer layout of a stack, which greedy layer-wise training
(`aevb/regimes/layerwise.py`) trains one layer at a time.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from aevb import architectures, models
from aevb.config import checks
from aevb.data import noise
from aevb.evaluation import measures, plots
from aevb.evaluation.measures import EvalData, map_in_chunks
from aevb.families.base import Family, Objective, Params, compiled
from aevb.models import losses, sparsity
from aevb.run import files, parallel

RECONSTRUCTION_LOSSES = ("mse", "cross_entropy")
SPARSITY_KINDS = ("none", "kl", "l1")
MIN_SPARSITY_BATCH = 32


def autoencoder_terms(model: models.Autoencoder, params: Params, x: jax.Array, key: jax.Array,
                      step: jax.Array | None = None, *, reconstruction_loss: str = "mse",
                      noise_kind: str = "none", noise_std: float = 0.0, noise_rate: float = 0.0,
                      sparsity_kind: str = "none", sparsity_target: float = 0.1,
                      sparsity_weight: float = 0.0) -> dict[str, jax.Array]:
    """`loss`, `recon` (per pixel) and `sparsity` of a batch x [B, D], each [B]. (`step`,
    the objective's training step, is not read: no autoencoder term has a warm-up.)"""
    del step
    x_in = noise.corrupt(x, noise_kind, key, noise_std, noise_rate)
    out = model.apply(params, x_in)
    if reconstruction_loss == "mse":
        recon = losses.mean_squared_error(out.x_hat, x)
    else:
        recon = losses.bernoulli_cross_entropy(out.logits, x) / x.shape[-1]
    if sparsity_kind == "kl":
        penalty = jnp.broadcast_to(
            sparsity.kl_sparsity_penalty(out.code_preactivation, sparsity_target), recon.shape)
    elif sparsity_kind == "l1":
        penalty = sparsity.l1_activity_penalty(out.code)
    else:
        penalty = jnp.zeros_like(recon)
    return {"loss": recon + sparsity_weight * penalty, "recon": recon, "sparsity": penalty}


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "noise_kind", "mesh"))
def reconstruction_terms(model: models.Autoencoder, params: Params, x: jax.Array,
                         key: jax.Array, chunk_size: int, noise_kind: str = "none",
                         noise_std: float = 0.0, noise_rate: float = 0.0,
                         mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """A whole split x [N, D] reconstructed and scored against the clean x.

    Per example [N]: `mse` and, with a sigmoid output, `cross_entropy` (both per pixel);
    `corrupted_mse` (the corrupted input against the clean one); and the `code`
    [N, code_dim]. With a noise kind the input is corrupted first (one fixed key per
    chunk): how well the model restores corrupted images.
    """
    def fn(xc, k):
        x_in = noise.corrupt(xc, noise_kind, k, noise_std, noise_rate)
        out = model.apply(params, x_in)
        terms = {"mse": losses.mean_squared_error(out.x_hat, xc), "code": out.code,
                 "corrupted_mse": losses.mean_squared_error(x_in, xc)}
        if model.output_activation == "sigmoid":
            terms["cross_entropy"] = (losses.bernoulli_cross_entropy(out.logits, xc)
                                      / xc.shape[-1])
        return terms
    return map_in_chunks(fn, x, key, chunk_size, mesh)


# ----------------------------------------------------------------------------- stack layout

def stack_widths(model_config: ml_collections.ConfigDict, num_pixels: int) -> tuple[int, ...]:
    """(w_0, ..., w_n) = (D, *model.hidden_sizes, model.latent_dim): the encoder's widths."""
    return (num_pixels, *model_config.hidden_sizes, model_config.latent_dim)


def layer_model(model_config: ml_collections.ConfigDict, num_pixels: int,
                k: int) -> models.Autoencoder:
    """Layer k of the stack as a shallow autoencoder w_k -> w_{k+1} -> w_k.

    Its code uses the activation of the stack's encoder layer k (`model.code_activation` for
    the top layer, `model.activation` below); its output the activation of the mirror decoder
    layer (`model.output_activation` for the bottom layer, `model.activation` above it).
    """
    widths = stack_widths(model_config, num_pixels)
    n = len(widths) - 1
    return models.Autoencoder(
        hidden_sizes=(), code_dim=widths[k + 1], output_dim=widths[k],
        activation=model_config.activation,
        code_activation=model_config.code_activation if k == n - 1 else model_config.activation,
        output_activation=model_config.output_activation if k == 0 else model_config.activation,
        tied_weights=model_config.tied_weights)


def _layer_names(k: int, n: int, tied: bool) -> dict[str, str]:
    """Layer k's shallow-model parameter names -> the same arrays' names in an n-layer stack."""
    names = {"encoder_kernel_0": f"encoder_kernel_{k}", "encoder_bias_0": f"encoder_bias_{k}",
             "decoder_bias_0": f"decoder_bias_{n - 1 - k}"}
    if not tied:
        names["decoder_kernel_0"] = f"decoder_kernel_{n - 1 - k}"
    return names


def _layout(stack_params: Params) -> tuple[int, bool]:
    names = stack_params["params"]
    n = sum(name.startswith("encoder_kernel_") for name in names)
    return n, not any(name.startswith("decoder_kernel_") for name in names)


def layer_params(stack_params: Params, k: int) -> Params:
    """Layer k of a stack's parameters, as the parameters of `layer_model(..., k)`."""
    names = _layer_names(k, *_layout(stack_params))
    return {"params": {short: stack_params["params"][full] for short, full in names.items()}}


def with_layer(stack_params: Params, k: int, params_k: Params) -> Params:
    """A copy of the stack's parameters with layer k replaced; the other arrays shared."""
    names = _layer_names(k, *_layout(stack_params))
    new = dict(stack_params["params"])
    for short, full in names.items():
        new[full] = params_k["params"][short]
    return {**stack_params, "params": new}


# ----------------------------------------------------------------------------- the family

class AutoencoderFamily(Family):
    kind = "autoencoder"
    headline = "mse"
    selectable_terms = ("mse", "cross_entropy")
    float_fields = ("noise.std", "noise.rate", "sparsity.target", "sparsity.weight")
    supports_sparsity = True
    supports_layerwise = True

    def validate(self, config: ml_collections.ConfigDict) -> None:
        checks.check_choice(config, "model.code_activation", models.CODE_ACTIVATIONS)
        checks.check_choice(config, "model.output_activation", models.OUTPUT_ACTIVATIONS)
        checks.check_choice(config, "model.reconstruction_loss", RECONSTRUCTION_LOSSES)
        checks.check_choice(config, "sparsity.kind", SPARSITY_KINDS)
        m = config.model
        if m.reconstruction_loss == "cross_entropy" and m.output_activation != "sigmoid":
            checks.fail("model.output_activation", m.output_activation,
                        "must be 'sigmoid' with model.reconstruction_loss='cross_entropy'")
        if config.sparsity.kind != "kl":
            return
        if m.code_activation != "sigmoid":
            checks.fail("model.code_activation", m.code_activation,
                        "must be 'sigmoid' with sparsity.kind='kl' (mean activations in (0, 1))")
        if config.train.batch_size < MIN_SPARSITY_BATCH:
            checks.fail("train.batch_size", config.train.batch_size,
                        f"must be >= {MIN_SPARSITY_BATCH} with sparsity.kind='kl': a unit's "
                        "mean activation over a smaller batch is too noisy to estimate")
        if (config.train.schedule == "layerwise" and m.hidden_sizes
                and m.activation != "sigmoid"):
            checks.fail("model.activation", m.activation,
                        "must be 'sigmoid' with train.schedule='layerwise' and "
                        "sparsity.kind='kl': every layer's code is made sparse, so every code "
                        "needs activations in (0, 1)")

    def make_model(self, model_config: ml_collections.ConfigDict,
                   image_shape: tuple[int, int, int]) -> nn.Module:
        """On a `dense_stack` architecture the stacked autoencoder (`models.Autoencoder`:
        flat parameters, tied weights as an option); else a `models.TrunkAutoencoder`:
        the encoder trunk with the code layer on top (`_code_widths`), the decoder trunk
        of the reversed widths."""
        mc = model_config
        arch = architectures.get(mc.architecture)
        if arch.dense_stack:
            return models.Autoencoder(
                hidden_sizes=tuple(mc.hidden_sizes), code_dim=mc.latent_dim,
                output_dim=int(np.prod(image_shape)), activation=mc.activation,
                code_activation=mc.code_activation, output_activation=mc.output_activation,
                tied_weights=mc.tied_weights)
        decoder = arch.decoder_trunk(mc, image_shape, tuple(reversed(mc.hidden_sizes)),
                                     mc.activation, kernel_init=mc.kernel_init,
                                     dense_input=arch.has_dense_code(mc))
        return models.TrunkAutoencoder(self._trunk(mc, image_shape, preactivation=True),
                                       decoder, mc.output_activation)

    @staticmethod
    def _code_widths(mc: ml_collections.ConfigDict) -> tuple[int, ...]:
        """The encoder's dense widths: the hidden layers and the code layer (none where the
        code is the top of the architecture's own layers)."""
        dense_code = architectures.get(mc.architecture).has_dense_code(mc)
        return (*mc.hidden_sizes, mc.latent_dim) if dense_code else tuple(mc.hidden_sizes)

    def _trunk(self, mc: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
               num_layers: int = 0, preactivation: bool = False) -> nn.Module:
        """The encoder trunk whose top layer is the code (`model.code_activation`)."""
        return architectures.get(mc.architecture).encoder_trunk(
            mc, image_shape, self._code_widths(mc), mc.activation,
            top_activation=mc.code_activation, kernel_init=mc.kernel_init,
            num_layers=num_layers, preactivation=preactivation)

    def init_params(self, model: nn.Module, key: jax.Array,
                    image_shape: tuple[int, int, int]) -> Params:
        def init(key: jax.Array) -> Params:
            init_key, _ = jax.random.split(key)
            return model.init(init_key, jnp.zeros((1, np.prod(image_shape)), jnp.float32))

        # One compiled program (persistently cached), not dozens of op-by-op ones; the same
        # values bit for bit.
        return jax.jit(init)(key)

    def objective(self, config: ml_collections.ConfigDict, model: nn.Module, train: bool,
                  hparams: dict[str, jax.Array] | None = None, steps_per_epoch: int = 0,
                  reconstruction_loss: str | None = None) -> Objective:
        """`reconstruction_loss` overrides the config's (layer-wise phases above the first
        reconstruct real-valued codes, with MSE)."""
        value = {f: (hparams or {}).get(f, checks.get(config, f)) for f in self.float_fields}
        return functools.partial(
            autoencoder_terms, model,
            reconstruction_loss=reconstruction_loss or config.model.reconstruction_loss,
            noise_kind=config.noise.kind if train else "none",
            noise_std=value["noise.std"], noise_rate=value["noise.rate"],
            sparsity_kind=config.sparsity.kind, sparsity_target=value["sparsity.target"],
            sparsity_weight=value["sparsity.weight"])

    def eval_terms(self, config, model, params, x, key, mesh):
        terms = reconstruction_terms(model, params, x, key, config.eval.batch_size, mesh=mesh)
        return {k: v for k, v in terms.items() if k in ("mse", "cross_entropy")}

    def final_metrics(self, config: ml_collections.ConfigDict, model: nn.Module,
                      params: Params, data: EvalData, key: jax.Array,
                      mesh: Mesh | None) -> dict[str, float | int]:
        """`pca_mse` (PCA with the code's size, fitted and scored on the inputs this model
        sees); with noise `test_denoising_mse` (corrupted test inputs restored, against the
        clean ones) and `test_corrupted_mse`; with a sigmoid code the `code_statistics`."""
        test_x = data.splits["test"]
        out: dict[str, float | int] = {"pca_mse": measures.cached_pca_mse(
            data.identity, data.train_inputs, parallel.fetch(test_x), config.model.latent_dim)}
        if config.noise.kind != "none":
            terms = reconstruction_terms(model, params, test_x, key, config.eval.batch_size,
                                         config.noise.kind, config.noise.std,
                                         config.noise.rate, mesh)
            means = parallel.fetch({k: jnp.mean(terms[k]) for k in ("mse", "corrupted_mse")})
            out["test_denoising_mse"] = float(means["mse"])
            out["test_corrupted_mse"] = float(means["corrupted_mse"])
        if config.model.code_activation == "sigmoid":
            codes = reconstruction_terms(model, params, test_x, key, config.eval.batch_size,
                                         mesh=mesh)["code"]
            out.update(measures.code_statistics(parallel.fetch(codes)))
        return out

    def pictures(self, config, model, params, test_x, image_shape, key, workdir):
        """`reconstructions.png`, `filters.png` (first layer); with noise `denoising.png`
        (rows of corrupted / reconstructed / clean); with a sigmoid code
        `code_activations.png` (the units' mean activations against the target)."""
        n = min(config.eval.num_images, test_x.shape[0])
        x = test_x[:n]
        forward = compiled(model)
        written = [plots.save_reconstructions(x, forward(params, x).x_hat, image_shape,
                                              workdir)]
        kernel = model.apply(params, method=model.first_layer_kernel)
        written.append(plots.save_filters(architectures.get(config.model.architecture)
                                          .filter_tiles(kernel, image_shape), workdir))
        if config.noise.kind != "none":
            rows = min(max(1, int(np.sqrt(n))), n)
            corrupted = noise.corrupt(x[:rows], config.noise.kind, key, config.noise.std,
                                      config.noise.rate)
            restored = forward(params, corrupted).x_hat
            stack = np.concatenate([np.clip(corrupted, 0, 1), restored, x[:rows]])
            written.append(plots.save_grid(stack, image_shape, workdir, files.DENOISING,
                                           columns=rows))
        if config.model.code_activation == "sigmoid":
            codes = compiled(model, model.encode)(params, test_x)
            target = config.sparsity.target if config.sparsity.kind == "kl" else None
            written.append(plots.activation_histogram(
                np.asarray(codes).mean(axis=0), target,
                files.path(workdir, files.CODE_ACTIVATIONS)))
        return written

    def encoder_depth(self, model_config: ml_collections.ConfigDict) -> int:
        mc = model_config
        return architectures.get(mc.architecture).trunk_depth(mc, self._code_widths(mc))

    def encoder(self, model_config, image_shape, params, num_layers=0):
        """The lower layers with the autoencoder's own arrays (code layer last): on a
        `dense_stack` a `models.DenseEncoder` (the stack's flat names), else the encoder
        trunk's lower layers."""
        mc = model_config
        num_layers = num_layers or self.encoder_depth(mc)
        if architectures.get(mc.architecture).dense_stack:
            widths = (int(np.prod(image_shape)), *self._code_widths(mc))
            activations = ((mc.activation,) * len(mc.hidden_sizes) + (mc.code_activation,))
            module = models.DenseEncoder(widths[:num_layers + 1], activations[:num_layers])
            source = None if params is None else params["params"]
        else:
            module = self._trunk(mc, image_shape, num_layers)
            source = None if params is None else params["params"]["encoder"]
        if params is None:
            return module, None
        return module, models.lower_layer_params(module, source, int(np.prod(image_shape)))

    def forward_flops(self, model_config, image_shape):
        mc = model_config
        arch = architectures.get(mc.architecture)
        encoder, _ = arch.encoder_flops(mc, image_shape, self._code_widths(mc))
        decoder = arch.decoder_flops(mc, image_shape, mc.latent_dim,
                                     tuple(reversed(mc.hidden_sizes)),
                                     dense_input=arch.has_dense_code(mc))
        return encoder, decoder
