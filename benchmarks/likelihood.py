"""L_k's speed against the size of the blocks its codes are decoded in (a benchmark, not a
test).

    python -m benchmarks.likelihood [--config=experiments/likelihood.py:vampprior]
        [--examples=120] [--blocks=2000,1000]

Times `importance_weighted_log_likelihood` as the final evaluation runs it (the config's
k = `eval.iwae_k` and chunks of `eval.iwae_samples_per_chunk` codes) on the first
--examples test images, at the model's initial parameters (the time does not depend on
their values), best of 2 after compilation. The baseline decodes each chunk's codes at once
(`codes_per_block` = `eval.iwae_samples_per_chunk`); then each block size of --blocks.
Prints, per setting, seconds per 10,000 test images, the speedup over the baseline and the
largest difference from the baseline's numbers (0.0: the same numbers).
"""

from __future__ import annotations

import jax
import numpy as np
from absl import app, flags, logging
from ml_collections import config_flags

from aevb import families
from aevb.families import vae as vae_family
from aevb.regimes.prepare import eval_data, load_and_check
from benchmarks.timing import best_seconds

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/likelihood.py:vampprior",
                                          lock_config=True)
_EXAMPLES = flags.DEFINE_integer("examples", 120, "Test images to score.")
_BLOCKS = flags.DEFINE_list("blocks", ["2000", "1000"], "codes_per_block values to time.")


def main(argv) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)
    config = _CONFIG.value
    datasets = load_and_check(config)
    family = families.get(config.model.kind)
    model = family.make_model(config.model, datasets.image_shape)
    params = family.init_params(model, jax.random.key(0), datasets.image_shape)
    x = eval_data(config, datasets, None).splits["test"][:_EXAMPLES.value]
    k, per_chunk = config.eval.iwae_k, config.eval.iwae_samples_per_chunk
    print(f"device={jax.devices()[0].platform} prior={config.model.prior} k={k} "
          f"examples={x.shape[0]} samples_per_chunk={per_chunk}")

    def lk(codes_per_block: int) -> jax.Array:
        return vae_family.importance_weighted_log_likelihood(
            model, params, x, jax.random.key(1), k, per_chunk, None, codes_per_block)

    baseline = np.asarray(lk(per_chunk))
    base_seconds = best_seconds(lk, per_chunk, repeats=2)
    scale = 10_000 / x.shape[0]
    print(f"codes_per_block={per_chunk} (each chunk at once): "
          f"{base_seconds * scale:.0f} s per 10,000 images")
    for block in (int(b) for b in _BLOCKS.value):
        seconds = best_seconds(lk, block, repeats=2)
        difference = float(np.max(np.abs(np.asarray(lk(block)) - baseline)))
        print(f"codes_per_block={block}: {seconds * scale:.0f} s per 10,000 images  "
              f"speedup={base_seconds / seconds:.2f}  max_difference={difference:.1e}")


if __name__ == "__main__":
    app.run(main)
