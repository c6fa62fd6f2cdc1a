"""The shared defaults of every experiment (`base_config`) and named variants (`apply_variants`).

Each field has a comment; experiment files in `experiments/` start from `base_config()` and
override a few fields. Validation lives with the regimes (`aevb/regimes/validation.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import ml_collections

from aevb.config.checks import (
    ConfigError,
)


def base_config() -> ml_collections.ConfigDict:
    """The defaults every experiment shares; experiment files override a few of them."""
    c = ml_collections.ConfigDict()
    c.experiment = "vae"

    c.data = ml_collections.ConfigDict()
    c.data.name = "fashion_mnist"       # any MNIST-layout IDX dataset or TFDS image dataset
    c.data.source = "auto"              # auto | idx | tfds | npz | folder (aevb/data/sources.py)
    c.data.dir = ""                     # directory with the four IDX files ('' = default)
    c.data.path = ""                    # npz: an .npz file (or a directory of train.npz,
    #                                     test.npz); folder: a directory of images (docs/data.md)
    c.data.test_fraction = 0.1          # npz, folder without a test split: held out for test
    c.data.tfds_data_dir = ""           # TFDS data_dir ('' = TFDS default)
    c.data.binarize = "dynamic"         # dynamic | static | none | dequantize (grey levels
    #                                     (g + u) / 256, u ~ U[0, 1): a Gaussian decoder's data)
    c.data.num_validation = 0           # examples held out from train for validation
    c.data.seed = 0                     # validation split and the test set's binarization

    c.model = ml_collections.ConfigDict()
    c.model.kind = "vae"                # vae | autoencoder
    c.model.architecture = "mlp"        # mlp | conv (aevb/architectures/)
    c.model.hidden_sizes = (500,)       # encoder widths (conv: dense layers after the convs);
    #                                     the decoder mirrors them
    c.model.latent_dim = 20             # the code size of an autoencoder
    c.model.activation = "tanh"
    c.model.decoder = "bernoulli"       # vae: bernoulli | gaussian (needs data.binarize=
    #                                     dequantize)
    _vae_fields(c.model)
    # autoencoder only:
    c.model.code_activation = "linear"  # linear | sigmoid (sparse) | any model.activation
    c.model.output_activation = "sigmoid"   # sigmoid | linear
    c.model.reconstruction_loss = "mse"     # mse | cross_entropy (both per pixel)
    c.model.tied_weights = False        # decoder kernels = transposed encoder kernels (mlp)
    _conv_section(c.model)

    c.noise = ml_collections.ConfigDict()   # denoising: corrupt the input, score the clean x
    c.noise.kind = "none"               # none | gaussian | masking | dropout | salt_and_pepper
    c.noise.std = 0.1                   # gaussian
    c.noise.rate = 0.5                  # masking, dropout, salt_and_pepper: fraction hit

    c.sparsity = ml_collections.ConfigDict()  # autoencoder codes
    c.sparsity.kind = "none"            # none | kl | l1
    c.sparsity.target = 0.1             # kl: target mean activation rho
    c.sparsity.weight = 5e-3            # multiplies the penalty

    c.train = ml_collections.ConfigDict()
    c.train.num_epochs = 30
    c.train.batch_size = 100
    c.train.optimizer = "adam"
    c.train.learning_rate = 1e-3        # the peak rate of the schedule
    c.train.lr_schedule = "constant"    # constant | cosine | iwae (aevb/training/schedules.py)
    c.train.adam_eps = 1e-8             # adam, adamw: the epsilon under the square root
    c.train.normalize_gradients = False  # each tensor's gradient to unit norm first (VampPrior)
    c.train.weight_decay = 0.0          # decoupled (adamw) or L2 added to gradients (others)
    # vae: the objective (aevb/families/vae.py): elbo (k-sample average, closed-form KL) |
    # iwae (the importance-weighted bound L_k of Burda et al. 2015), k = num_samples.
    c.train.objective = "elbo"
    c.train.num_samples = 1
    c.train.kl_warmup_epochs = 0        # vae: KL weight rises linearly from 0 over these
    c.train.seed = 0
    c.train.prng_impl = "threefry2x32"  # threefry2x32 | rbg | unsafe_rbg (often faster on TPU)
    # Checkpoints on round boundaries, every phase; also after the last round and on SIGTERM:
    c.train.checkpoint_every_secs = 600.0   # when this long has passed since the last (0: off)
    c.train.checkpoint_every_epochs = 0     # and every this many epochs (0: off)
    c.train.max_checkpoints = 2
    c.train.profile = False             # a jax.profiler trace of one round: <phase dir>/profile

    c.eval = ml_collections.ConfigDict()
    c.eval.every_epochs = 5
    c.eval.test_while_training = True   # the periodic evaluation reads the test split too
                                        # (False: only for the reported parameters)
    c.eval.batch_size = 1000
    c.eval.iwae_k = 1000                # importance samples for the final log-likelihood
    c.eval.iwae_num_examples = 2000     # test examples it is estimated on (0 = none, -1 = all)
    c.eval.iwae_samples_per_chunk = 20000  # bounds memory: examples*k per compiled chunk
    c.eval.iwae_codes_per_block = 2000  # codes decoded at once within a chunk (speed only)
    c.eval.num_images = 64              # reconstructions and samples in the PNG grids

    _regime_sections(c)
    return c


def _vae_fields(m: ml_collections.ConfigDict) -> None:
    """The VAE's fields of `model` (and kernel_init, which every dense layer reads)."""
    # gaussian decoder: the log-variance floor, log((1/256)^2 / 12), the dequantization
    # noise's (= aevb.models.MIN_LOG_VAR)
    m.decoder_min_log_var = -13.58
    m.kl_weight = 1.0                   # loss = recon + kl_weight * KL (1: the -ELBO)
    m.kernel_init = "lecun_normal"      # lecun_normal | glorot_uniform (the IWAE paper)
    m.encoder_log_var_clip = ()         # () | (low, high): q(z|x)'s log-variance clipped
    m.prior = "standard"                # standard (N(0, I)) | vampprior (Tomczak & Welling
    #                                     2018: a mixture of q(z|u_k) at learned pseudo-inputs)
    m.num_pseudo_inputs = 500           # the VampPrior's K


def _conv_section(m: ml_collections.ConfigDict) -> None:
    """`model.conv`: the conv layers of model.architecture='conv' (aevb/architectures/conv.py),
    one entry per layer in each tuple. Default: Geron's convolutional autoencoder."""
    m.conv = ml_collections.ConfigDict()
    m.conv.channels = (16, 32, 64)      # filters per conv layer
    m.conv.kernels = (3, 3, 3)          # square kernel sides
    m.conv.strides = (1, 1, 1)
    m.conv.pools = (2, 2, 2)            # max-pooling window = stride after the conv (1: none)
    m.conv.paddings = ("same", "same", "same")  # same | valid
    m.conv.code = "dense"               # dense (a dense code layer of model.latent_dim) |
    #                                     feature_map (the last feature map is the code)
    m.conv.gradients = "explicit"       # explicit (aevb/models/conv.py's written-out
    #                                     gradients: 25 x XLA's on this CPU, 1.37 x on an
    #                                     H200) | xla (jax.grad of lax.conv)


def _regime_sections(c: ml_collections.ConfigDict) -> None:
    """The defaults of greedy layer-wise training and unsupervised pretraining
    (aevb/regimes/layerwise.py, aevb/regimes/pretrain.py)."""
    c.task = "reconstruct"              # reconstruct | pretrain (autoencoder, then classifier)
    #                                     | semisupervised (M1, M2, M1+M2:
    #                                       aevb/regimes/semisupervised.py)
    c.train.schedule = "joint"          # joint | layerwise (autoencoders: one layer at a time,
    #                                     train.num_epochs epochs per layer)
    c.train.finetune_epochs = 0         # layerwise: end-to-end epochs after assembling the stack
    # joint: report the parameters of the evaluation (every eval.every_epochs) with the best
    # validation metric, and stop after train.patience evaluations without a better one
    c.train.select_on = ""              # '' (the last epoch's) | validation_<term>, e.g.
    #                                     validation_neg_elbo (needs data.num_validation) |
    #                                     validation_probe_accuracy (a VAE: a logistic probe
    #                                     on the labeled means, labels.hold_out; max)
    c.train.select_mode = "min"         # min | max: which way is better
    c.train.patience = 0                # evaluations without improvement (0: never stop early)

    c.labels = ml_collections.ConfigDict()   # pretrain: the labeled subset of the train split
    c.labels.num = 1000                 # labeled examples, class-balanced (0 = all)
    c.labels.seed = 0                   # which ones
    c.labels.num_validation = -1        # labeled validation examples, class-balanced, outside
    #                                     the labeled ones: model selection and early stopping
    #                                     (-1 = as many as labels.num; 0 = none: last step)
    c.labels.hold_out = False           # True: no model trains on the validation examples'
    #                                     images (M1, M2's unlabeled set, the pretrained
    #                                     autoencoder: aevb/regimes/labels.py)

    c.classifier = ml_collections.ConfigDict()  # pretrain: encoder layers + softmax head
    c.classifier.encoder = "trainable"  # frozen (only the head learns) | trainable
    c.classifier.encoder_layers = 0     # pretrained encoder layers under the head (0 = all)
    c.classifier.num_steps = 2000       # the budget, the same for pretrained and scratch
    c.classifier.batch_size = 100
    c.classifier.optimizer = "adam"
    c.classifier.learning_rate = 1e-3
    c.classifier.lr_schedule = "constant"  # as train.lr_schedule, over classifier.num_steps
    c.classifier.adam_eps = 1e-8        # adam, adamw
    c.classifier.weight_decay = 0.0
    c.classifier.eval_every_steps = 500  # validation and test accuracy, metrics, checkpoint
    c.classifier.patience = 0           # early stopping: evaluations without a better
    #                                     validation accuracy (0 = train every step); the
    #                                     classifier of the best one is kept either way
    _semisupervised_sections(c)


def _semisupervised_sections(c: ml_collections.ConfigDict) -> None:
    """The defaults of task=semisupervised (aevb/regimes/semisupervised.py): Kingma, Rezende,
    Mohamed & Welling (2014), M1 (a VAE's posterior means under a classifier), M2 (the
    semi-supervised VAE, aevb/models/m2.py) and M1+M2 (M2 on the M1 codes)."""
    c.semisupervised = ml_collections.ConfigDict()
    c.semisupervised.features = "m1"    # m1 (the posterior means of a VAE of model.*,
    #                                     trained first on every training image) | pixels
    c.semisupervised.classifier = "svm"  # logistic | mlp | knn | svm (on the host, on the
    #                                     labeled features) | poisson | poisson_mbo |
    #                                     laplace | spreading (on the host, on a kNN graph
    #                                     of every example's features, test ones too) | m2
    #                                     (the semi-supervised VAE)
    c.semisupervised.graph_metric = "euclidean"  # the graph methods' kNN distance:
    #                                     euclidean (Calder et al.'s) | angular (the angle
    #                                     between the features: aevb/evaluation/graph_...)
    c.semisupervised.graph_neighbors = (30, 20, 10)  # the graphs' numbers of neighbours,
    #                                     chosen on the validation nodes (ties to the first);
    #                                     without them the last (10: Calder et al.'s)
    c.semisupervised.m1_workdir = ""    # where M1 trains: '' = <workdir>/m1; a name:
    #                                     <workdir>/../m1/<name>, shared by the runs (a
    #                                     sweep's trials) that need the same M1

    c.m2 = ml_collections.ConfigDict()  # the paper's M2 (Section 4: 1 x 500 softplus, 50 z)
    c.m2.architecture = "mlp"           # mlp | conv (on pixels only: the conv layers of
    #                                     model.conv, then m2.hidden_sizes; aevb/architectures/)
    c.m2.hidden_sizes = (500,)          # every network's dense widths
    c.m2.latent_dim = 50
    c.m2.activation = "softplus"
    c.m2.alpha = 0.1                    # classification weight per example: the paper's
    #                                     alpha = 0.1 N on the objective's sum over N examples
    c.m2.num_epochs = 10                # passes over the unlabeled examples
    c.m2.batch_size = 100               # unlabeled examples per step
    c.m2.labeled_batch_size = 100       # labeled examples per step, an equal number per class
    c.m2.optimizer = "adam"             # the paper: Adam-style RMSProp, 3e-4, decays 0.1, 0.001
    c.m2.learning_rate = 3e-4
    c.m2.lr_schedule = "constant"
    c.m2.adam_eps = 1e-8
    c.m2.weight_decay = 0.0
    c.m2.eval_every_epochs = 1          # validation and test accuracy, selection
    c.m2.patience = 0                   # early stopping on validation accuracy, in epochs


def apply_variants(config: ml_collections.ConfigDict, variants: str, file: str,
                   known: dict[str, Callable[[ml_collections.ConfigDict], None]]
                   ) -> ml_collections.ConfigDict:
    """Applies the named variants of `--config=file.py:a,b` in order; unknown names fail.

    `runlocal` is known to every experiment: two epochs and small evaluations, a quick check.
    """
    known = {"runlocal": _runlocal, **known}
    for name in filter(None, (v.strip() for v in variants.split(","))):
        if name not in known:
            raise ConfigError(f"unknown variant {name!r} of {file}; allowed: {sorted(known)}")
        known[name](config)
    return config


def _runlocal(config: ml_collections.ConfigDict) -> None:
    config.train.num_epochs = 2
    config.eval.every_epochs = 1
    config.eval.iwae_k = 100
    config.eval.iwae_num_examples = 500
    config.train.finetune_epochs = min(config.train.finetune_epochs, 1)
    config.classifier.num_steps = min(config.classifier.num_steps, 100)
    config.classifier.eval_every_steps = min(config.classifier.eval_every_steps, 50)
    config.labels.num = min(config.labels.num or 100, 100)
    config.m2.num_epochs = min(config.m2.num_epochs, 2)
