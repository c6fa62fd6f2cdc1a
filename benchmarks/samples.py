"""The cost of k: training examples per second with k = 1, 5 and 50 samples per example
(a benchmark, not a test).

    python -m benchmarks.samples --config=experiments/iwae.py [--config.a.b=value ...]

For each k and each objective (`elbo`, `iwae`), trains the experiment's model in the
compiled epoch that `launch.py` uses, on the first --examples training images, and times
--epochs passes after one compilation pass (best of them). The k samples share one encoder
pass and go through the decoder as one [k x B] batch, so the matmul work per example is
encoder + k x decoder; `flops_ratio` is what that predicts for the rate against k = 1, and
`ratio` is what was measured, in the same process.
"""

from __future__ import annotations

import jax
from absl import app, flags, logging
from jax.sharding import Mesh
from ml_collections import config_flags

from aevb import data as data_lib
from aevb import families
from aevb.regimes import joint
from aevb.regimes.prepare import load_and_check
from aevb.run import parallel
from benchmarks.flops import train_flops
from benchmarks.timing import epoch_seconds

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/iwae.py", lock_config=False)
_EXAMPLES = flags.DEFINE_integer("examples", 60000, "Training images per timed pass.")
_EPOCHS = flags.DEFINE_integer("epochs", 2, "Timed passes after the compilation pass.")
_SAMPLES = flags.DEFINE_list("samples", ["1", "5", "50"], "The k to time.")


def predicted_flops(config, image_shape: tuple[int, int, int], k: int) -> float:
    """Matmul and convolution FLOPs per example with k samples: the encoder once (its first
    layer needs no input gradient), the decoder k times (every decoder layer's input
    gradient is needed: its input z depends on the encoder)."""
    encoder, decoder = families.get(config.model.kind).forward_flops(config.model, image_shape)
    return train_flops(encoder) + k * train_flops(decoder, first_is_input=False)


def seconds_per_pass(config, datasets: data_lib.Datasets, mesh: Mesh, num_examples: int
                     ) -> float:
    """Best wall time of one pass over the first `num_examples` training images after a
    compilation pass, in the compiled epoch of the run `launch.py` would make."""
    run = joint.setup(config, datasets, mesh)
    _, _, best = epoch_seconds(run.train_epoch, run.state, run.images[:num_examples],
                               config.train.prng_impl, _EPOCHS.value)
    return best


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    base = _CONFIG.value
    datasets = load_and_check(base)
    mesh = parallel.make_mesh()
    num_examples = min(_EXAMPLES.value, datasets.train.images.shape[0])
    n = num_examples // base.train.batch_size * base.train.batch_size
    print(f"device={jax.devices()[0].device_kind} batch={base.train.batch_size} "
          f"examples per pass={n} hidden={tuple(base.model.hidden_sizes)} "
          f"latent={base.model.latent_dim}")
    for objective in ("elbo", "iwae"):
        rates = {}
        for k in map(int, _SAMPLES.value):
            config = base.copy_and_resolve_references()
            config.train.objective, config.train.num_samples = objective, k
            seconds = seconds_per_pass(config, datasets, mesh, num_examples)
            rates[k] = (n / seconds, predicted_flops(config, datasets.image_shape, k))
            first = next(iter(rates))
            print(f"{objective} k={k}: {rates[k][0]:,.0f} examples/s  "
                  f"ratio={rates[k][0] / rates[first][0]:.3f}  "
                  f"flops_ratio={rates[first][1] / rates[k][1]:.3f}", flush=True)


if __name__ == "__main__":
    app.run(main)
