"""Trains a tiny config in a fresh process (for device-count and multi-process tests).

    python -m tests.run_tiny --kind=vae --data_dir=DIR --workdir=DIR [--distributed ...]

Run from the repository root, as a module, so that `experiments` imports.

Device count comes from XLA_FLAGS=--xla_force_host_platform_device_count=N, set by the test.
"""

import sys

from absl import app, flags

_KIND = flags.DEFINE_enum("kind", "vae", ["vae", "iwae", "stacked", "layerwise",
                                          "pretrain", "convvae", "m1m2"],
                          "Which experiment.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "IDX directory.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory.")
_BATCH = flags.DEFINE_integer("batch_size", 40, "Global batch size.")
_SEEDS = flags.DEFINE_integer("seeds", 0, "Run a vectorized sweep over this many seeds.")
_PRNG = flags.DEFINE_string("prng_impl", "threefry2x32", "train.prng_impl.")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Join a multi-process run.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", "", "host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 0, "Number of processes.")
_PROCESS_ID = flags.DEFINE_integer("process_id", -1, "This process's index.")


def main(argv):
    del argv
    from aevb import regimes, sweeps
    from aevb.config import checks
    from aevb.run import parallel

    if _DISTRIBUTED.value:
        parallel.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                                        _PROCESS_ID.value)
    kind = _KIND.value
    name = {"convvae": "vae", "m1m2": "semisupervised"}.get(kind, kind)
    experiment = __import__(f"experiments.{name}", fromlist=["get_config"])
    config = experiment.get_config({"convvae": "conv", "m1m2": "m1m2"}.get(kind, ""))
    config.data.dir = _DATA_DIR.value
    config.data.num_validation = 0
    config.model.hidden_sizes = (64, 16) if _KIND.value == "stacked" else (64,)
    config.model.latent_dim = 4
    config.train.num_epochs = 3 if _KIND.value in ("vae", "stacked") else 2
    config.train.finetune_epochs = 1 if _KIND.value == "layerwise" else 0
    config.classifier.num_steps = 40
    config.classifier.eval_every_steps = 20
    config.classifier.batch_size = _BATCH.value
    config.labels.num = 100
    config.train.batch_size = _BATCH.value
    config.train.prng_impl = _PRNG.value
    config.eval.every_epochs = 1
    config.eval.batch_size = 40
    config.eval.iwae_k = 16
    config.eval.iwae_num_examples = 40
    config.eval.num_images = 4
    if kind == "convvae":  # 4 and 8 filters, 28 -> 14 (stride 2) -> 7 (2x2 max-pooling)
        config.model.hidden_sizes = ()
        config.model.conv.channels, config.model.conv.kernels = (4, 8), (3, 3)
        config.model.conv.strides, config.model.conv.pools = (2, 1), (1, 2)
        config.model.conv.paddings = ("same", "same")
    if kind == "m1m2":  # M2 on the M1 codes: 16 hidden units, 3 latents, 4 labels per class
        config.m2.hidden_sizes, config.m2.latent_dim, config.m2.num_epochs = (16,), 3, 2
        config.m2.batch_size = config.m2.labeled_batch_size = _BATCH.value
    if _KIND.value == "iwae":  # k = 3 samples, the bound L_3, a cosine rate and a KL warm-up
        config.train.num_samples, config.train.objective = 3, "iwae"
        config.train.lr_schedule, config.train.kl_warmup_epochs = "cosine", 2
    try:
        if _SEEDS.value:
            sweeps.run_sweep(config, sweeps.product({"train.seed": list(range(_SEEDS.value))}),
                             _WORKDIR.value)
        else:
            regimes.run(config, _WORKDIR.value)
    except checks.ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
