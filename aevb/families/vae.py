"""The variational autoencoder family (Kingma & Welling 2014): its objectives, its ELBO,
importance-weighted log-likelihood and active units, its pictures, its encoder.

Training objectives (per example; x~ is x corrupted by the noise regime, a denoising VAE,
and the likelihood always scores the clean x; z_1 .. z_k ~ q(z|x~) share one encoder pass
and go through the decoder as one [k, B] batch):

  elbo  `loss = w * KL(q(z|x~) || p(z)) - (1/k) sum_i log p(x|z_i)`: the -ELBO, its
        reconstruction term averaged over k samples. Under the standard prior the KL is in
        closed form, and at k = 1 it is the one-sample objective of Kingma & Welling,
        computed as before, bit for bit. Under the VampPrior (`model.prior`, a mixture with
        no closed-form KL) the KL is estimated from the same k samples,
        (1/k) sum_i log q(z_i|x~) - log p(z_i), as Tomczak & Welling do.
  iwae  `loss = -(logsumexp_i log w_i - log k)`, log w_i = log p(x|z_i) + w (log p(z_i) -
        log q(z_i|x~)): minus the importance-weighted bound L_k of Burda, Grosse &
        Salakhutdinov (2015). At k = 1 it is the -ELBO with a one-sample KL estimate, equal
        to the `elbo` objective in expectation only.

w is the KL weight in force: `model.kl_weight`, times the warm-up factor min(1, step /
(train.kl_warmup_epochs x steps per epoch)) while it lasts. So during warm-up (or with
kl_weight != 1) the training loss is not a bound: the metrics carry `train_kl_weight` (the
weight's mean over the epoch) and `train_neg_elbo` (recon + KL, the true -ELBO estimate at
weight 1), and the periodic test `neg_elbo` and the final L_k always use weight 1.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh

from aevb import architectures, models
from aevb import data as data_lib
from aevb.config import checks
from aevb.data import noise
from aevb.evaluation import plots
from aevb.evaluation.measures import EvalData, map_in_chunks, samples_per_block
from aevb.families.base import Family, Objective, Params, compiled
from aevb.models import iwae, losses
from aevb.models.distributions import Gaussian
from aevb.run import files, parallel
from aevb.training import schedules

OBJECTIVES = ("elbo", "iwae")


def log_weights(model: models.VAE, params: Params, x: jax.Array, posterior: Gaussian,
                z: jax.Array, prior: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(log p(x|z), log p(z), log q(z|x)), each [k, B], of codes z [k, B, L] drawn from
    `posterior` [B, L], scoring x [B, D]: one decoder pass over the k x B codes, and p(z)
    under `prior`, the model's `prior_distribution` (computed once by the caller)."""
    likelihood = model.apply(params, z, method=model.decode)                # [k, B, D]
    log_p_x_given_z = likelihood.log_prob(jnp.broadcast_to(x, (z.shape[0], *x.shape)))
    log_p_z = prior.log_prob(z)
    log_q_z = Gaussian(jnp.broadcast_to(posterior.loc, z.shape),
                       jnp.broadcast_to(posterior.log_var, z.shape)).log_prob(z)
    return log_p_x_given_z, log_p_z, log_q_z


def vae_terms(model: models.VAE, params: Params, x: jax.Array, key: jax.Array,
              step: jax.Array | None = None, *, num_samples: int = 1,
              objective: str = "elbo", noise_kind: str = "none", noise_std: float = 0.0,
              noise_rate: float = 0.0, kl_weight: float = 1.0, warmup_steps: int = 0
              ) -> dict[str, jax.Array]:
    """The training objective's terms of a batch x [B, D], each per example [B]: `loss`,
    `recon` = -(1/k) sum_i log p(x|z_i), `kl` = KL(q(z|x~) || p(z)) (in closed form under
    the standard prior, else from the k samples), `neg_elbo` = recon + kl, and
    `kl_weight`, the weight in force at optimizer step `step` (see the module docstring)."""
    noise_key, sample_key = jax.random.split(key)
    x_in = noise.corrupt(x, noise_kind, noise_key, noise_std, noise_rate)
    weight = kl_weight * schedules.kl_warmup(step, warmup_steps)
    standard = model.prior == "standard"
    if standard and objective == "elbo" and num_samples == 1:
        out = model.apply(params, x_in, sample_key)
        log_lik = out.likelihood.log_prob(x)
        kl = out.posterior.kl_from_standard_normal()
        loss = weight * kl - log_lik
    else:
        posterior = model.apply(params, x_in, method=model.encode)          # [B, L]
        z = posterior.sample(sample_key, num_samples)                       # [k, B, L]
        prior = model.apply(params, method=model.prior_distribution)  # VampPrior: K encodings
        log_p_x_given_z, log_p_z, log_q_z = log_weights(model, params, x, posterior, z, prior)
        log_lik = jnp.mean(log_p_x_given_z, axis=0)
        kl = (posterior.kl_from_standard_normal() if standard
              else jnp.mean(log_q_z - log_p_z, axis=0))
        if objective == "elbo":
            loss = weight * kl - log_lik
        else:
            loss = -iwae.importance_weighted_bound(log_p_x_given_z, weight * log_p_z,
                                                     weight * log_q_z)
    return {"loss": loss, "recon": -log_lik, "kl": kl, "neg_elbo": kl - log_lik,
            "kl_weight": jnp.broadcast_to(jnp.asarray(weight, loss.dtype), loss.shape)}


def _elbo_chunk(model: models.VAE, params: Params, x: jax.Array, key: jax.Array
                ) -> dict[str, jax.Array]:
    """The -ELBO's terms [C] of a chunk x [C, D] (weight 1, one sample) and, under the
    standard prior, each unit's KL `kl_units/<j>` [C] (~0 for every x: a collapsed unit)."""
    terms = vae_terms(model, params, x, key)
    terms = {k: terms[k] for k in ("neg_elbo", "recon", "kl")}
    if model.prior != "standard":  # a mixture prior's KL does not split by unit
        return terms
    posterior = model.apply(params, x, method=model.encode)
    per_unit = losses.kl_standard_normal_per_dim(posterior.loc, posterior.log_var)  # [C, L]
    width = len(str(per_unit.shape[-1] - 1))
    return {**terms, **{f"kl_units/{j:0{width}d}": u for j, u in enumerate(per_unit.T)}}


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def elbo_terms(model: models.VAE, params: Params, x: jax.Array, key: jax.Array,
               chunk_size: int, mesh: Mesh | None = None) -> dict[str, jax.Array]:
    """Per-example `neg_elbo`, `recon`, `kl` and `kl_units/<j>` (nats) [N] of a whole split
    x [N, D] (`_elbo_chunk`)."""
    return map_in_chunks(functools.partial(_elbo_chunk, model, params), x, key, chunk_size,
                         mesh)


def _iwae_chunk(model: models.VAE, params: Params, prior: Any, num_samples: int,
                codes_per_block: int, x: jax.Array, key: jax.Array) -> dict[str, jax.Array]:
    """L_k for a chunk x [C, D] with k = num_samples: encode once, draw the [k, C, L] codes
    at once, decode them in blocks of [b, C] (`samples_per_block`), join their log weights.
    The numbers do not depend on b; a block's decoder output stays in a CPU's cache, which
    is faster (`python -m benchmarks.likelihood`, docs/speed.md#the-final-l_k)."""
    posterior = model.apply(params, x, method=model.encode)                 # [C, L]
    z = posterior.sample(key, num_samples)                                  # [k, C, L]
    b = samples_per_block(num_samples, x.shape[0], codes_per_block)
    blocks = z.reshape(num_samples // b, b, *z.shape[1:])                   # [k/b, b, C, L]
    weights = jax.lax.map(lambda zb: log_weights(model, params, x, posterior, zb, prior),
                          blocks)                                           # 3 x [k/b, b, C]
    return {"log_likelihood": iwae.importance_weighted_bound(
        *(w.reshape(num_samples, *w.shape[2:]) for w in weights))}


@functools.partial(jax.jit, static_argnames=("model", "num_samples", "samples_per_chunk",
                                             "codes_per_block", "mesh"))
def importance_weighted_log_likelihood(model: models.VAE, params: Params, x: jax.Array,
                                       key: jax.Array, num_samples: int,
                                       samples_per_chunk: int = 20_000, mesh: Mesh | None = None,
                                       codes_per_block: int = 2_000) -> jax.Array:
    """The importance-weighted bound L_k (Burda et al. 2015) of log p(x), per example [N].

    L_k = log (1/k) sum_i p(x, z_i) / q(z_i|x), z_i ~ q(z|x): a lower bound that tightens
    towards log p(x) as k grows (in expectation L_1 is the ELBO). Chunks of
    max(1, samples_per_chunk // k) examples bound memory, decoded in blocks of at most
    `codes_per_block` codes where k allows (`_iwae_chunk`); the prior (the VampPrior's
    encoder pass over its pseudo-inputs) is computed once for all chunks.
    """
    chunk = max(1, samples_per_chunk // num_samples)
    prior = model.apply(params, method=model.prior_distribution)
    fn = functools.partial(_iwae_chunk, model, params, prior, num_samples, codes_per_block)
    return map_in_chunks(fn, x, key, chunk, mesh)["log_likelihood"]


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def posterior_means(model: models.VAE, params: Params, x: jax.Array, chunk_size: int,
                    mesh: Mesh | None = None) -> jax.Array:
    """E_q[z|x] for every example: [N, L]."""
    def fn(xc, _):
        return {"mean": model.apply(params, xc, method=model.encode).mean()}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["mean"]


@functools.partial(jax.jit, static_argnames=("model", "chunk_size"))
def posteriors(model: models.VAE, params: Params, x: jax.Array, chunk_size: int
               ) -> dict[str, jax.Array]:
    """q(z|x) for every example x [N, D]: {'mean', 'log_var'}, each [N, L]."""
    def fn(xc, _):
        q = model.apply(params, xc, method=model.encode)
        return {"mean": q.loc, "log_var": q.log_var}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size)


ACTIVE_THRESHOLD = 0.01  # Cov_x(E_q[z_u]) above which a latent unit counts as active


def active_units(means: np.ndarray, threshold: float = ACTIVE_THRESHOLD
                 ) -> tuple[int, np.ndarray]:
    """Latent units whose posterior mean varies with x: Cov_x(E_q[z_u]) > threshold.

    means [N, L] -> (count, per-unit variance [L]). The criterion of Burda et al. (2015):
    an inactive unit encodes nothing, its posterior equals the prior for every input.
    """
    variance = np.var(np.asarray(means), axis=0)
    return int(np.sum(variance > threshold)), variance


INTERPOLATION_STEPS = 8


def latent_interpolations(model: models.VAE, params: Params, x: jax.Array) -> jax.Array:
    """Rows for `interpolations.png` from pairs of images x [2P, D] (pairs (0, 1), (2, 3),
    ...): the first image, the decoder means of INTERPOLATION_STEPS codes evenly spaced on
    the line between the two posterior means (both ends included), the second image.
    Returns [P * (INTERPOLATION_STEPS + 2), D]."""
    means = model.apply(params, x, method=model.encode).mean()              # [2P, L]
    start, end = means[0::2], means[1::2]                                   # [P, L]
    t = jnp.linspace(0.0, 1.0, INTERPOLATION_STEPS)[None, :, None]           # [1, S, 1]
    codes = start[:, None] + t * (end - start)[:, None]                     # [P, S, L]
    decoded = model.apply(params, codes, method=model.generate)             # [P, S, D]
    rows = jnp.concatenate([x[0::2, None], decoded, x[1::2, None]], axis=1)
    return rows.reshape(-1, x.shape[-1])


class VAEFamily(Family):
    kind = "vae"
    headline = "neg_elbo"
    selectable_terms = ("neg_elbo", "recon", "kl", "neg_iwae_bound")
    float_fields = ("noise.std", "noise.rate", "model.kl_weight")
    variational = True

    def validate(self, config: ml_collections.ConfigDict) -> None:
        checks.check_choice(config, "model.decoder", models.DECODERS)
        checks.check_choice(config, "model.kernel_init", tuple(models.KERNEL_INITS))
        checks.check_number(config, "model.kl_weight", 0.0)
        checks.check_choice(config, "model.prior", models.PRIORS)
        checks.check_int(config, "model.num_pseudo_inputs", 1)
        checks.check_number(config, "model.decoder_min_log_var", -100.0, 10.0)
        checks.check_choice(config, "train.objective", OBJECTIVES)
        checks.check_int(config, "train.num_samples", 1)
        checks.check_int(config, "train.kl_warmup_epochs", 0)
        if not architectures.get(config.model.architecture).has_dense_code(config.model):
            checks.fail("model.conv.code", config.model.conv.code,
                        "a VAE's code is q(z|x), whose mean and log-variance come out of a "
                        "dense layer: use 'dense' with model.kind='vae'")
        if config.model.decoder == "gaussian" and config.data.binarize != "dequantize":
            binarized = config.data.binarize in ("dynamic", "static")
            checks.fail("model.decoder", "gaussian", (
                f"with data.binarize={config.data.binarize!r} the data are "
                f"{'binary' if binarized else 'discrete grey levels'}, where a Gaussian "
                "density is unbounded (its variance can shrink onto each value) and its nats "
                "mean nothing: use model.decoder='bernoulli'"
                + (" or " if binarized else ", or ")
                + "data.binarize='dequantize' (grey levels with uniform noise, a density "
                "on [0, 1))"))

    def make_model(self, model_config: ml_collections.ConfigDict,
                   image_shape: tuple[int, int, int]) -> nn.Module:
        """A `models.GaussianEncoder` on the architecture's encoder trunk of
        `model.hidden_sizes`, a `models.PixelDecoder` on its decoder trunk of the reversed
        widths, and `model.prior` (with `model.num_pseudo_inputs`)."""
        mc = model_config
        arch = architectures.get(mc.architecture)
        channels, output_name = models.PIXEL_OUTPUTS[mc.decoder]
        decoder = arch.decoder_trunk(mc, image_shape, tuple(reversed(mc.hidden_sizes)),
                                     mc.activation, channels, kernel_init=mc.kernel_init,
                                     output_name=output_name)
        return models.VAE(models.GaussianEncoder(self._trunk(mc, image_shape), mc.latent_dim,
                                                 mc.kernel_init,
                                                 tuple(mc.encoder_log_var_clip)),
                          models.PixelDecoder(decoder, mc.decoder, mc.decoder_min_log_var),
                          prior=mc.prior, num_pseudo_inputs=mc.num_pseudo_inputs,
                          input_dim=int(np.prod(image_shape)))

    @staticmethod
    def _trunk(mc: ml_collections.ConfigDict, image_shape: tuple[int, int, int],
               num_layers: int = 0) -> nn.Module:
        """The encoder trunk under q(z|x): `model.hidden_sizes` (its lower `num_layers`)."""
        return architectures.get(mc.architecture).encoder_trunk(
            mc, image_shape, tuple(mc.hidden_sizes), mc.activation,
            kernel_init=mc.kernel_init, num_layers=num_layers)

    def init_params(self, model: nn.Module, key: jax.Array,
                    image_shape: tuple[int, int, int]) -> Params:
        def init(key: jax.Array) -> Params:
            init_key, sample_key = jax.random.split(key)
            return model.init(init_key, jnp.zeros((1, np.prod(image_shape)), jnp.float32),
                              sample_key)

        # One compiled program (persistently cached), not dozens of op-by-op ones; the same
        # values bit for bit.
        return jax.jit(init)(key)

    def objective(self, config: ml_collections.ConfigDict, model: nn.Module, train: bool,
                  hparams: dict[str, jax.Array] | None = None,
                  steps_per_epoch: int = 0) -> Objective:
        """`train.objective` with `train.num_samples` samples; in training the KL warm-up
        over `train.kl_warmup_epochs` x `steps_per_epoch` steps."""
        value = {f: (hparams or {}).get(f, checks.get(config, f)) for f in self.float_fields}
        warmup_steps = config.train.kl_warmup_epochs * steps_per_epoch if train else 0
        if train and config.train.kl_warmup_epochs and not steps_per_epoch:
            raise ValueError("a KL warm-up needs the objective's steps_per_epoch")
        return functools.partial(
            vae_terms, model, num_samples=config.train.num_samples,
            objective=config.train.objective,
            noise_kind=config.noise.kind if train else "none",
            noise_std=value["noise.std"], noise_rate=value["noise.rate"],
            kl_weight=value["model.kl_weight"], warmup_steps=warmup_steps)

    def eval_terms(self, config, model, params, x, key, mesh):
        terms = elbo_terms(model, params, x, key, config.eval.batch_size, mesh)
        if config.train.objective == "iwae":  # the objective's own bound, -L_k, to select on
            terms["neg_iwae_bound"] = -importance_weighted_log_likelihood(
                model, params, x, jax.random.fold_in(key, 1), config.train.num_samples,
                mesh=mesh, codes_per_block=config.eval.iwae_codes_per_block)
        return terms

    def final_metrics(self, config: ml_collections.ConfigDict, model: nn.Module,
                      params: Params, data: EvalData, key: jax.Array,
                      mesh: Mesh | None) -> dict[str, float | int]:
        """`test_log_likelihood`: L_k with k = `eval.iwae_k` on the first
        `eval.iwae_num_examples` test examples (-1: all), with the k and the number of
        examples it used; `active_units`; on dequantized data, bits per dimension of the
        test -ELBO and of L_k."""
        test_x = data.splits["test"]
        out: dict[str, float | int] = {}
        wanted = config.eval.iwae_num_examples
        n = test_x.shape[0] if wanted == -1 else min(wanted, test_x.shape[0])
        dims = test_x.shape[-1]
        if n:
            ll = importance_weighted_log_likelihood(
                model, params, test_x[:n], key, config.eval.iwae_k,
                config.eval.iwae_samples_per_chunk, mesh, config.eval.iwae_codes_per_block)
            out.update({"test_log_likelihood": float(parallel.fetch(jnp.mean(ll))),
                        "test_log_likelihood_k": config.eval.iwae_k,
                        "test_log_likelihood_examples": n})
        if config.data.binarize == "dequantize":
            neg_elbo = elbo_terms(model, params, test_x, key, config.eval.batch_size,
                                  mesh)["neg_elbo"]
            out["test_neg_elbo_bits_per_dim"] = data_lib.bits_per_dim(
                -float(parallel.fetch(jnp.mean(neg_elbo))), dims)
            if n:
                out["test_log_likelihood_bits_per_dim"] = data_lib.bits_per_dim(
                    out["test_log_likelihood"], dims)
        means = posterior_means(model, params, test_x, config.eval.batch_size, mesh)
        out["active_units"], _ = active_units(parallel.fetch(means))
        return out

    def pictures(self, config, model, params, test_x, image_shape, key, workdir):
        """`reconstructions.png` (from the posterior means), `samples.png` (decoded
        z ~ p(z)), `interpolations.png` (`latent_interpolations`), `filters.png` (the
        encoder's first layer) and, with 2 latents, `latent_manifold.png` (the paper's
        figure 4)."""
        n = min(config.eval.num_images, test_x.shape[0])
        x = test_x[:n]
        encode, generate = compiled(model, model.encode), compiled(model, model.generate)
        recon = generate(params, encode(params, x).mean())
        written = [plots.save_reconstructions(x, recon, image_shape, workdir)]
        if model.prior == "standard":  # the same draws as before the VampPrior
            z = jax.random.normal(key, (n, config.model.latent_dim))
        else:
            z = jax.jit(lambda p: model.apply(p, method=model.prior_distribution)
                        .sample(key, n))(params)
        written.append(plots.save_grid(generate(params, z), image_shape, workdir,
                                       files.SAMPLES))
        if test_x.shape[0] >= 2:
            rows = jax.jit(functools.partial(latent_interpolations, model))(
                params, test_x[:2 * min(8, n // 2 or 1)])
            written.append(plots.save_grid(rows, image_shape, workdir, files.INTERPOLATIONS,
                                           columns=INTERPOLATION_STEPS + 2))
        kernel = model.apply(params, method=model.first_layer_kernel)
        written.append(plots.save_filters(architectures.get(config.model.architecture)
                                          .filter_tiles(kernel, image_shape), workdir))
        if config.model.latent_dim == 2:
            side = 20
            grid = generate(params, jnp.asarray(plots.latent_grid(side)))
            written.append(plots.save_grid(grid, image_shape, workdir, files.LATENT_MANIFOLD,
                                           columns=side, pad=0))
        return written

    def encoder_depth(self, model_config: ml_collections.ConfigDict) -> int:
        """The trunk's layers and the mean of q(z|x)."""
        mc = model_config
        return architectures.get(mc.architecture).trunk_depth(mc, mc.hidden_sizes) + 1

    def encoder(self, model_config, image_shape, params, num_layers=0):
        """All layers: the mean of q(z|x) (the encoder's own parameters); fewer: the lower
        layers of its trunk, with the trunk's own parameters."""
        mc = model_config
        encoder_params = None if params is None else params["params"]["encoder"]
        if num_layers in (0, self.encoder_depth(mc)):
            module = models.PosteriorMean(self._trunk(mc, image_shape), mc.latent_dim,
                                          mc.kernel_init)
            return module, None if params is None else {"params": encoder_params}
        trunk = self._trunk(mc, image_shape, num_layers)
        if params is None:
            return trunk, None
        return trunk, models.lower_layer_params(trunk, encoder_params[trunk.name],
                                                int(np.prod(image_shape)))

    def forward_flops(self, model_config, image_shape):
        """The trunks' FLOPs, with the mean and log-variance layer's on the encoder side."""
        mc = model_config
        arch = architectures.get(mc.architecture)
        encoder, width = arch.encoder_flops(mc, image_shape, tuple(mc.hidden_sizes))
        channels, _ = models.PIXEL_OUTPUTS[mc.decoder]
        decoder = arch.decoder_flops(mc, image_shape, mc.latent_dim,
                                     tuple(reversed(mc.hidden_sizes)), channels)
        return encoder + [2.0 * width * (2 * mc.latent_dim)], decoder

    def posterior(self, config, model, params, x):
        return posteriors(model, params, x, config.eval.batch_size)

    def active_units(self, means):
        return active_units(means)[1] > ACTIVE_THRESHOLD
