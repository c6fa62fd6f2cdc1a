"""The protocol of Burda, Grosse & Salakhutdinov (2015), "Importance weighted autoencoders",
section 5, for one stochastic layer: the VAE and the IWAE with k = 1, 5 and 50 samples.

As in the paper: a 784-200-200-50 network in both directions (tanh, Bernoulli decoder),
weights drawn with the Glorot & Bengio (2010) heuristic, dynamic binarization, batches of
20, Adam (beta1 0.9, beta2 0.999, epsilon 1e-4), and the schedule of 3^i passes at
1e-3 * 10^(-i/7) for i = 0 .. 7 (3,280 passes). The test log-likelihood is L_5000 on the
whole test set (`test_log_likelihood`, with its k and number of examples in the summary).

MNIST is the four standard IDX files; Table 1 of the paper (test -log p(x) in nats, one
stochastic layer) next to the command for each:

    # VAE  k=1: 86.76   k=5: 86.47   k=50: 86.35
    python launch.py --config=experiments/iwae.py:vae_k1 --config.data.dir=MNIST_DIR
    python launch.py --config=experiments/iwae.py:vae_k5 --config.data.dir=MNIST_DIR
    python launch.py --config=experiments/iwae.py:vae_k50 --config.data.dir=MNIST_DIR
    # IWAE k=1: 86.76   k=5: 85.54   k=50: 84.78
    python launch.py --config=experiments/iwae.py:iwae_k1 --config.data.dir=MNIST_DIR
    python launch.py --config=experiments/iwae.py:iwae_k5 --config.data.dir=MNIST_DIR
    python launch.py --config=experiments/iwae.py:iwae_k50 --config.data.dir=MNIST_DIR
    # all six, trials side by side: --sweep (see get_sweep)

(the paper reports -L_5000, so a run's `test_log_likelihood` of -86.0 reads as 86.0 nats).
At 3,280 passes these take hours even at k = 1, and much longer at k = 50.

`budget`: 1,640 passes, half of the paper's, with the schedule compressed in proportion:
stage i lasts 3^i / 2 passes instead of 3^i (aevb/training/schedules.py keeps the stages'
fractions of the run, whatever its length): deterministic (a fixed number of passes, not a
time limit), and any `--config.train.num_epochs` shortens it further in the same
proportions. Other variants: `constant` (a constant rate of 1e-3 instead of the schedule),
`warmup` (the KL weight rises from 0 over the first 200 passes, Sønderby et al. 2016),
`runlocal`.

The objectives, the schedule, the runs' times on a 2-core CPU and their results on
Fashion-MNIST, each with its command: docs/vae.md (headline: the README's experiments
table).
"""

import functools

import ml_collections

from aevb import sweeps
from aevb.config import defaults


def _objective(config: ml_collections.ConfigDict, objective: str, k: int) -> None:
    config.train.objective = objective
    config.train.num_samples = k


def _budget(config: ml_collections.ConfigDict) -> None:
    config.train.num_epochs = 1640


def _constant(config: ml_collections.ConfigDict) -> None:
    config.train.lr_schedule = "constant"


def _warmup(config: ml_collections.ConfigDict) -> None:
    config.train.kl_warmup_epochs = 200


VARIANTS = {f"{objective}_k{k}": functools.partial(_objective, objective=name, k=k)
            for objective, name in (("vae", "elbo"), ("iwae", "iwae")) for k in (1, 5, 50)}


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.experiment = "iwae"
    config.data.binarize = "dynamic"
    config.model.kind = "vae"
    config.model.hidden_sizes = (200, 200)
    config.model.latent_dim = 50
    config.model.activation = "tanh"
    config.model.decoder = "bernoulli"
    config.model.kernel_init = "glorot_uniform"
    config.train.batch_size = 20
    config.train.optimizer = "adam"
    config.train.adam_eps = 1e-4
    config.train.learning_rate = 1e-3
    config.train.lr_schedule = "iwae"
    config.train.num_epochs = 3280
    config.train.checkpoint_every_epochs = 10
    config.eval.every_epochs = 40
    config.eval.iwae_k = 5000
    config.eval.iwae_num_examples = -1
    return defaults.apply_variants(config, variant, "experiments/iwae.py",
                                  {**VARIANTS, "budget": _budget, "constant": _constant,
                                   "warmup": _warmup})


def _figures() -> list[dict]:
    """The Fashion-MNIST runs of about 15 minutes of training each on a 2-core CPU: 560
    passes at k = 1, 280 at k = 5 (a pass costs twice as much), under a constant rate or the
    schedule (compressed in proportion), and the VAE with a KL warm-up over its first 56."""
    fields = ("train.objective", "train.num_samples", "train.lr_schedule",
              "train.num_epochs", "train.kl_warmup_epochs")
    runs = [("elbo", 1, "constant", 560, 0), ("elbo", 1, "iwae", 560, 0),
            ("iwae", 5, "constant", 280, 0), ("iwae", 5, "iwae", 280, 0),
            ("elbo", 1, "iwae", 560, 56)]
    return [dict(zip(fields, run, strict=True)) for run in runs]


def get_sweep(name: str = "") -> list[dict]:
    """`--sweep`: the paper's six models, both objectives at k = 1, 5 and 50.
    `--sweep=figures`: the README's five Fashion-MNIST runs (`_figures`), one after another
    (no two can share a program), each resuming where it stopped and skipped once finished:

        python launch.py --config=experiments/iwae.py --sweep=figures --workdir=runs/iwae15
    """
    return sweeps.named(name, {
        "": lambda: sweeps.product({"train.objective": ["elbo", "iwae"],
                                    "train.num_samples": [1, 5, 50]}),
        "figures": _figures}, "experiments/iwae.py")
