"""What splitting the training set over the devices by rows costs an epoch (a benchmark, not a
test).

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python -m benchmarks.rows [--config=experiments/vae.py --config.a.b=value ...]

Builds the configured joint run (`regimes/joint.setup`) on every visible device and times 3
epochs after compilation twice: with the training set split over the devices by rows
(`parallel.shard_rows`, what runs do) and replicated on every device (what they did before).
Prints each one's seconds per epoch, the bytes of the set a device holds, and the collectives
of the compiled split epoch that are not the gradients' all-reduce: per step, an all-gather of
the batch's indices and an all-reduce of its rows (uint8). Ends with
`rows_over_replicated=<float>` (seconds per epoch, split over replicated).
"""

from __future__ import annotations

import re

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from aevb.regimes import joint
from aevb.regimes.prepare import flat_images, load_and_check
from aevb.run import parallel
from benchmarks.timing import epoch_seconds

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/vae.py", lock_config=True)
flags.DEFINE_integer("epochs", 3, "timed epochs of each layout (best of them)")


def collectives(compiled_text: str) -> list[str]:
    """'op shape' of each all-reduce and all-gather in a compiled program's text."""
    return [f"{op} {shape}" for shape, op in re.findall(
        r"= (\S+) (all-reduce|all-gather)(?:-start)?\(", compiled_text)]


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    datasets = load_and_check(config)
    mesh = parallel.make_mesh()
    built = joint.setup(config, datasets, mesh)
    impl = config.train.prng_impl
    layouts = {"rows": built.images,
               "replicated": parallel.replicate(flat_images(datasets.train), mesh)}
    key = jax.random.key(0, impl=impl)
    text = built.train_epoch.lower(built.state, built.images, key).compile().as_text()
    print(f"{jax.device_count()} devices, {datasets.num_train} training images of "
          f"{datasets.num_pixels} bytes; the split epoch's collectives: "
          f"{', '.join(collectives(text)) or 'none'}")
    state, seconds = built.state, {}
    for name, images in layouts.items():
        state, loss, seconds[name] = epoch_seconds(built.train_epoch, state, images, impl,
                                                   flags.FLAGS.epochs)
        held = images.addressable_shards[0].data.nbytes
        print(f"{name}: {seconds[name]:.3f} s an epoch, {held / 2**20:.1f} MiB of the set on "
              f"each device (loss {loss:.2f})")
    print(f"rows_over_replicated={seconds['rows'] / seconds['replicated']:.3f}")


if __name__ == "__main__":
    app.run(main)
