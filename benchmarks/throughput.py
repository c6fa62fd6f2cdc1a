"""Training throughput, and where a training step's time goes (a benchmark, not a test).

    python -m benchmarks.throughput --config=experiments/vae.py [--config.a.b=value ...]

Trains the experiment's model on its real training set for --epochs epochs after one
compilation epoch, in the compiled on-device epoch loop that `launch.py` uses, and measures
in the same process, at the same shapes, each as a jitted `lax.scan` of steps (best of 3):

  * matmuls alone: the step's forward, weight-gradient and input-gradient matmuls;
  * the optimizer alone: `tx.update` + `apply_updates` on the model's parameters;
  * randomness alone: the step's draws (the epoch's permutation and key split, the dynamic
    binarization's uniforms, the noise of a denoising model, the VAE's N(0, I) samples),
    under each PRNG implementation JAX offers (`train.prng_impl`), and binarization by
    uint8 random integers u in {0..254}, u < pixel (P(1) = pixel / 255 as well), against
    the float32 uniforms the code uses;
  * the whole epoch under each PRNG implementation.

Each ablated time is net of the loop's own per-step cost (a scan of trivial steps), which
is counted once. Prints the step's breakdown (matmuls, optimizer, randomness, loop,
everything else), the rate of a large square GEMM for scale (`matmul_fraction`: the model's
FLOPs per second over it) and, last, `floor_fraction=<float>`: (matmul-only +
optimizer-only + loop time) / step time, how close the step is to the floor its matmuls
and its optimizer's memory traffic set.

A conv model (`model.architecture=conv`) gets no matmul ablation: it prints its FLOPs per
example (every multiply-add that meets a pixel, as XLA's cost analysis counts them, see
`ConvStack.forward_flops`), the rate of one large convolution measured in the same run
(--conv_batch images of --conv_side^2 pixels, --conv_channels in and out, 3x3, `same`),
`conv_fraction=<float>`: the model's FLOPs per second over that rate, and the epoch under
the other `model.conv.gradients` (`gradients_speedup`: its time over the configured one's).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import architectures, models
from aevb.architectures import mlp
from aevb.data import noise
from aevb.models.conv import ConvStack
from aevb.regimes import joint
from aevb.regimes.prepare import load_and_check
from aevb.run import parallel
from aevb.training import keys
from benchmarks.flops import step_flops, step_matmuls, train_flops
from benchmarks.timing import (
    best_seconds,
    epoch_seconds,
    gemm_flops_per_s,
    loop_seconds_per_step,
    matmul_only_seconds,
    optimizer_seconds_per_step,
)

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/vae.py", lock_config=True)
_EPOCHS = flags.DEFINE_integer("epochs", 3, "Timed epochs after the compilation epoch.")
_GEMM_SIZE = flags.DEFINE_integer("gemm_size", 2048, "Side of the square GEMM.")
_CONV_BATCH = flags.DEFINE_integer("conv_batch", 64, "Images of the reference convolution.")
_CONV_SIDE = flags.DEFINE_integer("conv_side", 56, "Their height and width.")
_CONV_CHANNELS = flags.DEFINE_integer("conv_channels", 64, "Its input and output channels.")


def conv_flops_per_s(batch: int, side: int, channels: int, repeats: int = 10) -> float:
    """Best-of-`repeats` rate of one jitted f32 3x3 `same` convolution, NHWC [batch, side,
    side, channels] -> the same shape: the machine's convolution rate, for scale."""
    x = jax.random.normal(jax.random.key(0), (batch, side, side, channels), jnp.float32)
    w = jax.random.normal(jax.random.key(1), (3, 3, channels, channels), jnp.float32)
    conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
    return 2.0 * batch * side * side * 9 * channels * channels / best_seconds(
        conv, x, w, repeats=repeats)


def randomness_seconds_per_step(config, model, images: jax.Array, impl: str,
                                uint8_binarization: bool = False, steps: int = 300) -> float:
    """The step's random draws alone, with keys of `impl`: per epoch a permutation and a key
    split, per step the binarization's uniforms (or uint8 integers), the noise of a
    denoising model and the VAE's reparameterisation samples."""
    batch, num_pixels = config.train.batch_size, images.shape[-1]
    latent = config.model.latent_dim if isinstance(model, models.VAE) else 0

    @jax.jit
    def run(key, x):
        perm_key, step_key = jax.random.split(key)
        order = jax.random.permutation(perm_key, images.shape[0])[:batch]

        def body(acc, key):
            bin_key, model_key = jax.random.split(key)
            if config.data.binarize == "dynamic":
                if uint8_binarization:
                    u = jax.random.randint(bin_key, x.shape, 0, 255, dtype=jnp.uint8)
                    acc = acc + jnp.sum(u < x)
                else:
                    acc = acc + jnp.sum(jax.random.uniform(bin_key, x.shape) < x / 255.0)
            noisy = noise.corrupt(jnp.zeros(x.shape), config.noise.kind, model_key,
                                  config.noise.std, config.noise.rate)
            acc = acc + jnp.sum(noisy)
            if latent:
                acc = acc + jnp.sum(jax.random.normal(model_key, (batch, latent)))
            return acc, None

        acc = jnp.sum(order).astype(jnp.float32)
        return jax.lax.scan(body, acc, jax.random.split(step_key, steps))[0]

    x = images[:batch].reshape(batch, num_pixels)
    return best_seconds(run, jax.random.key(0, impl=impl), x) / steps


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    datasets = load_and_check(config)
    shape = datasets.image_shape
    mesh = parallel.make_mesh()
    run = joint.setup(config, datasets, mesh)  # what launch.py trains
    model, tx, params, images = run.model, run.tx, run.state.params, run.images
    batch = config.train.batch_size
    steps = run.steps_per_epoch
    impl = config.train.prng_impl

    epochs = {}
    for name in (impl, *(i for i in keys.PRNG_IMPLS if i != impl)):
        fresh = jax.tree.map(jnp.copy, run.state)  # the epoch donates its state
        _, loss, epochs[name] = epoch_seconds(run.train_epoch, fresh, images,
                                              name, _EPOCHS.value)
        print(f"epoch ({name} keys): {epochs[name]:.3f} s, {steps * batch / epochs[name]:,.0f} "
              f"examples/s, loss {loss:.2f}")
    step = epochs[impl] / steps
    arch = architectures.get(config.model.architecture)
    if isinstance(arch, mlp.MLPArchitecture):
        breakdown(config, model, tx, params, images, step,
                  step_matmuls(config, shape))
        return
    flops = train_flops([f for part in run.family.forward_flops(config.model, shape)
                         for f in part])
    print(f"model_flops_per_example={flops:.4g}")
    print(f"examples_per_s={batch / step:.1f}")
    gemm = gemm_flops_per_s(_GEMM_SIZE.value)
    print(f"gemm{_GEMM_SIZE.value}_gflops_per_s={gemm / 1e9:.2f}")
    print(f"matmul_fraction={batch / step * flops / gemm:.3f}")
    conv_rate = conv_flops_per_s(_CONV_BATCH.value, _CONV_SIDE.value, _CONV_CHANNELS.value)
    sides = ConvStack.from_config(config.model, shape).sides()
    print(f"device={jax.devices()[0].device_kind} batch={batch} conv layers: channels "
          f"{tuple(config.model.conv.channels)}, feature maps "
          f"{' -> '.join(f'{h}x{w}' for h, w in sides)}")
    print(f"conv{_CONV_SIDE.value}x{_CONV_CHANNELS.value}_gflops_per_s={conv_rate / 1e9:.2f}")
    print(f"conv_fraction={batch / step * flops / conv_rate:.3f}")
    other = config.copy_and_resolve_references()
    other.model.conv.gradients = "xla" if config.model.conv.gradients == "explicit" else "explicit"
    other_run = joint.setup(other, datasets, mesh)  # the same initial parameters
    _, _, other_epoch = epoch_seconds(other_run.train_epoch, other_run.state, images, impl, 1)
    print(f"epoch with model.conv.gradients={other.model.conv.gradients}: {other_epoch:.3f} s, "
          f"{steps * batch / other_epoch:,.0f} examples/s")
    print(f"gradients_speedup={other_epoch / epochs[impl]:.2f}  (model.conv.gradients="
          f"{config.model.conv.gradients} against {other.model.conv.gradients}, same process)")


def breakdown(config, model, tx, params, images: jax.Array, step: float,
              shapes: list[tuple[int, int, int, bool]]) -> None:
    """Where a dense model's step goes: matmuls, optimizer, randomness, loop, the rest.
    `shapes`: the step's matmuls (rows, fan_in, fan_out, input_gradient), timed alone at
    the same shapes with none of the elementwise work, RNG or optimizer."""
    batch, impl = config.train.batch_size, config.train.prng_impl
    flops = step_flops(shapes) / batch
    loop = loop_seconds_per_step()
    matmul = matmul_only_seconds(shapes) - loop
    optimizer = optimizer_seconds_per_step(tx, params) - loop
    randomness = {name: randomness_seconds_per_step(config, model, images, name) - loop
                  for name in keys.PRNG_IMPLS}
    uint8_draws = randomness_seconds_per_step(config, model, images, impl, True) - loop
    rest = step - matmul - optimizer - randomness[impl] - loop

    def ms(t: float) -> str:
        return f"{t * 1e3:.3f} ms"

    print(f"device={jax.devices()[0].device_kind} batch={batch} "
          f"matmuls (rows x fan_in x fan_out): {' '.join(f'{r}x{i}x{o}' for r, i, o, _ in shapes)}")
    print(f"step {ms(step)} = matmuls {ms(matmul)} ({matmul / step:.0%}) + optimizer "
          f"{ms(optimizer)} ({optimizer / step:.0%}) + randomness {ms(randomness[impl])} "
          f"({randomness[impl] / step:.0%}) + loop {ms(loop)} ({loop / step:.0%}) + "
          f"everything else {ms(rest)} ({rest / step:.0%})")
    print("randomness alone per step: " + ", ".join(
        f"{name} {ms(t)}" for name, t in randomness.items())
          + f"; {impl} with uint8 binarization {ms(uint8_draws)}")
    gemm = gemm_flops_per_s(_GEMM_SIZE.value)
    print(f"model_flops_per_example={flops:.4g}")
    print(f"gemm{_GEMM_SIZE.value}_gflops_per_s={gemm / 1e9:.2f}")
    print(f"matmul_only_gflops_per_s={batch * flops / (matmul + loop) / 1e9:.2f}  (ceiling "
          f"fraction {batch * flops / (matmul + loop) / gemm:.3f})")
    print(f"examples_per_s={batch / step:.1f}")
    print(f"matmul_fraction={batch / step * flops / gemm:.3f}")
    print(f"floor_fraction={(matmul + optimizer + loop) / step:.3f}")


if __name__ == "__main__":
    app.run(main)
