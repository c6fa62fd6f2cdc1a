"""M2's training throughput, and where its step's time goes (a benchmark, not a test).

    python -m benchmarks.m2_throughput [--config=experiments/semisupervised.py:m2] \\
        [--config.a.b=value ...]

M2 on the pixels (Kingma et al. 2014; `aevb/models/m2.py`), as `launch.py` trains it: the
compiled epoch of `semisupervised.m2_setup` over the unlabeled training images, each step
one unlabeled batch (summed over the C classes: encoded and decoded C times) and one
balanced labeled batch. Times the epoch (best of --epochs after a compilation epoch), then,
in the same process and at the same shapes, each net of the loop's per-step cost:

  * matmuls alone: every dense layer of the step at its own number of rows (the classifier
    on both batches, q(z|x, y)'s x part once per example and the rest per class, p(x|y, z)
    per class), forward, weight and input gradients;
  * the optimizer alone: `tx.update` + `apply_updates` on M2's parameters;
  * randomness alone: the epoch's permutation and balanced labeled draws, the
    binarization's uniforms of both batches, the reparameterisation's N(0, I) samples.

Prints the step's breakdown and, last, `floor_fraction=<float>`: (matmuls + optimizer +
loop) / step, how close the step is to the floor its matmuls and optimizer set.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from absl import app, flags, logging
from ml_collections import config_flags

from aevb.regimes import semisupervised
from aevb.regimes.features import pixel_features
from aevb.regimes.labels import labeled_and_validation
from aevb.regimes.prepare import load_and_check
from aevb.run import parallel
from aevb.training.epoch import balanced_batches
from benchmarks.flops import step_flops
from benchmarks.timing import (
    best_seconds,
    epoch_seconds,
    gemm_flops_per_s,
    loop_seconds_per_step,
    matmul_only_seconds,
    optimizer_seconds_per_step,
)

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/semisupervised.py:m2",
                                          lock_config=True)
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Timed epochs after the compilation epoch.")


def step_matmuls(config, num_pixels: int, num_classes: int
                 ) -> list[tuple[int, int, int, bool]]:
    """M2's dense layers in one step as (rows, fan_in, fan_out, input_gradient)."""
    m2 = config.m2
    unlabeled, labeled = m2.batch_size, m2.labeled_batch_size
    both, per_class = unlabeled + labeled, num_classes * unlabeled + labeled
    sizes, latent = tuple(m2.hidden_sizes), m2.latent_dim
    shapes = []
    widths = [num_pixels, *sizes]
    for k, (i, o) in enumerate(itertools.pairwise(widths)):  # q(y|x)'s trunk
        shapes.append((both, i, o, k > 0))
    shapes.append((both, widths[-1], num_classes, bool(sizes)))
    first = sizes[0] if sizes else 2 * latent
    shapes += [(both, num_pixels, first, False), (per_class, num_classes, first, False)]
    widths = [*sizes, 2 * latent]
    shapes += [(per_class, i, o, True) for i, o in itertools.pairwise(widths)]
    widths = [latent + num_classes, *sizes, num_pixels]  # p(x|y, z)
    shapes += [(per_class, i, o, True) for i, o in itertools.pairwise(widths)]
    return shapes


def randomness_seconds_per_step(config, labels: jax.Array, steps: int, num_pixels: int,
                                num_classes: int) -> float:
    """The step's random draws alone (module docstring), in a jitted scan."""
    m2 = config.m2
    both = m2.batch_size + m2.labeled_batch_size
    samples = num_classes * m2.batch_size + m2.labeled_batch_size

    @jax.jit
    def run(key):
        perm_key, pick_key, step_key = jax.random.split(key, 3)
        acc = jnp.sum(jax.random.permutation(perm_key, steps * m2.batch_size)[:1])
        acc = acc + jnp.sum(balanced_batches(pick_key, labels, num_classes,
                                             m2.labeled_batch_size // num_classes, steps))

        def body(acc, key):
            bin_key, z_key = jax.random.split(key)
            acc = acc + jnp.sum(jax.random.uniform(bin_key, (both, num_pixels)) < 0.5)
            return acc + jnp.sum(jax.random.normal(z_key, (samples, m2.latent_dim))), None

        return jax.lax.scan(body, acc.astype(jnp.float32),
                            jax.random.split(step_key, steps))[0]

    return best_seconds(run, jax.random.key(0)) / steps


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    if config.semisupervised.features != "pixels":
        raise app.UsageError("benchmarks M2 on the pixels: semisupervised.features=pixels")
    datasets = load_and_check(config, share=False)
    labels = datasets.train.labels
    labeled, held_out = labeled_and_validation(config, labels)
    features = pixel_features(config, datasets)
    mesh = parallel.make_mesh()
    built = semisupervised.m2_setup(config, features, labels, labeled, held_out,
                                    jax.random.key(0), mesh)
    num_classes, num_pixels = int(labels.max()) + 1, features.train.shape[-1]
    epoch = lambda state, inputs, key: built.train_epoch(state, inputs, key, built.labeled_set)
    params = jax.tree.map(jnp.copy, built.state.params)
    _, loss, seconds = epoch_seconds(epoch, built.state, built.inputs, "threefry2x32",
                                     _EPOCHS.value)
    m2 = config.m2
    step = seconds / built.steps
    print(f"M2 epoch: {seconds:.3f} s, {built.steps} steps of {m2.batch_size} unlabeled "
          f"(x {num_classes} classes) + {m2.labeled_batch_size} labeled, loss {loss:.2f}")
    shapes = step_matmuls(config, num_pixels, num_classes)
    loop = loop_seconds_per_step()
    matmul = matmul_only_seconds(shapes) - loop
    optimizer = optimizer_seconds_per_step(built.tx, params) - loop
    randomness = randomness_seconds_per_step(config, built.labeled_set[1], built.steps,
                                             num_pixels, num_classes) - loop
    rest = step - matmul - optimizer - randomness - loop
    flops = step_flops(shapes)

    def part(name: str, t: float) -> str:
        return f"{name} {t * 1e3:.3f} ms ({t / step:.0%})"

    print(f"device={jax.devices()[0].device_kind} matmuls (rows x fan_in x fan_out): "
          + " ".join(f"{r}x{i}x{o}" for r, i, o, _ in shapes))
    print(f"step {step * 1e3:.3f} ms = " + " + ".join(
        part(n, t) for n, t in (("matmuls", matmul), ("optimizer", optimizer),
                                ("randomness", randomness), ("loop", loop),
                                ("everything else", rest))))
    gemm = gemm_flops_per_s(2048)
    print(f"step_gflop={flops / 1e9:.3f}  gemm2048_gflops_per_s={gemm / 1e9:.2f}  "
          f"matmul_only_gflops_per_s={flops / (matmul + loop) / 1e9:.2f}")
    print(f"epoch_seconds={seconds:.3f}")
    print(f"floor_fraction={(matmul + optimizer + loop) / step:.3f}")


if __name__ == "__main__":
    app.run(main)
