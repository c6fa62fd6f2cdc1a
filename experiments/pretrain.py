"""Unsupervised pretraining for classification with few labels (Fashion-MNIST).

Phase 1 trains a stacked denoising autoencoder 784-1000-500 (ReLU, 25% masking noise as in
Vincent et al. 2010, 10 epochs) on all 60,000 training images, no labels read. Phase 2
puts a softmax head on its encoder and trains the classifier 784-1000-500-10 on 1,000
labeled images (100 per class, chosen by labels.seed), the encoder trainable; the same
classifier from random initialisation, on the same images in the same batches for the
same steps, is the baseline. Both test accuracies are in summary.json.

    python launch.py --config=experiments/pretrain.py
    python launch.py --config=experiments/pretrain.py --config.labels.num=100
    python launch.py --config=experiments/pretrain.py:frozen     # only the head learns
    python launch.py --config=experiments/pretrain.py:vae        # encoder = the VAE's mean
    python launch.py --config=experiments/pretrain.py:layerwise  # greedy stacked pretraining

Variants: `frozen`, `vae` (784-500-20 VAE, Bernoulli decoder), `layerwise` (the stack
trained one layer at a time), `runlocal` (also 100 labels, 100 classifier steps).

Each classifier is the one of its best accuracy on 1,000 more labeled training images
(`labels.num_validation`, outside the labeled ones), evaluated every 50 steps, early
stopping after 10 evaluations without a gain; the test set is only reported. These
settings were chosen on that validation split.

The protocol, the label-count and seed comparisons and how the settings were chosen:
docs/pretraining.md. Measured: the README's experiments table (headline) and
docs/pretraining.md.
"""

import ml_collections

from aevb import sweeps
from aevb.config import defaults
from experiments import stacked


def _frozen(config: ml_collections.ConfigDict) -> None:
    config.classifier.encoder = "frozen"


def _vae(config: ml_collections.ConfigDict) -> None:
    base = defaults.base_config()
    config.model = base.model
    config.data.binarize = base.data.binarize
    config.noise.kind = "none"
    config.train.batch_size = base.train.batch_size


def _layerwise(config: ml_collections.ConfigDict) -> None:
    config.train.schedule = "layerwise"
    config.train.num_epochs = 5           # per layer
    config.train.finetune_epochs = 5


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = stacked.get_config()
    config.experiment = "pretrain"
    config.task = "pretrain"
    config.data.num_validation = 0        # every training image is unlabeled data
    config.model.hidden_sizes = (1000,)
    config.model.latent_dim = 500
    config.noise.kind = "masking"
    config.noise.rate = 0.25
    config.train.num_epochs = 10
    config.train.batch_size = 100
    config.eval.every_epochs = 10
    config.labels.num = 1000
    config.classifier.encoder = "trainable"
    config.classifier.num_steps = 1000
    config.classifier.batch_size = 100
    config.classifier.learning_rate = 1e-3
    config.classifier.eval_every_steps = 50   # 20 evaluations on the validation split
    config.classifier.patience = 10           # early stopping after 500 steps without a gain
    return defaults.apply_variants(config, variant, "experiments/pretrain.py",
                                  {"frozen": _frozen, "vae": _vae, "layerwise": _layerwise})


def _labels() -> list[dict]:
    """Seeds 0, 1, 2 (train.seed = labels.seed: the pretraining and the labeled subset) x
    label counts 100 to 60,000 (0: every training image) x the encoder frozen or trainable;
    each trial also trains the scratch baseline on its labeled subset."""
    return [{"train.seed": seed, "labels.seed": seed, "labels.num": num,
             "classifier.encoder": encoder}
            for seed in (0, 1, 2) for num in (100, 600, 1000, 3000, 0)
            for encoder in ("frozen", "trainable")]


def get_sweep(name: str = "") -> list[dict]:
    """`--sweep=labels` (`_labels`), and its table of test accuracy (%), mean ± sample std
    over the seeds, with the gain over scratch paired by seed:

        python launch.py --config=experiments/pretrain.py --sweep=labels \\
            --workdir=runs/pretrain-labels
        python -m aevb.sweeps.report runs/pretrain-labels \\
            --group_by=labels.num,classifier.encoder --scale=100 --format=.2f \\
            --fields=pretrained_test_accuracy,scratch_test_accuracy,accuracy_gain
    """
    return sweeps.named(name, {"labels": _labels}, "experiments/pretrain.py")
