"""Classification with 100 labels: M1, M2 and M1 + M2 of Kingma, Rezende, Mohamed & Welling
(2014), "Semi-supervised learning with deep generative models"
(aevb/regimes/semisupervised.py).

100 labeled training images (10 per class, `labels.seed`), 100 more labeled ones outside
them for model selection and early stopping only (`labels.num_validation`: their images
train neither M1 nor M2, `labels.hold_out`), every other training image unlabeled; test
error reported, never used for a choice. Next to each command, the paper's
MNIST test error with 100 labels (its Table 1):

    python launch.py --config=experiments/semisupervised.py            # M1 + SVM: TSVM 11.82%
    python launch.py --config=experiments/semisupervised.py:m1 \\
        --config.semisupervised.classifier=poisson          # also logistic, mlp, knn, ...
    python launch.py --config=experiments/semisupervised.py:m2         # M2:        11.97%
    python launch.py --config=experiments/semisupervised.py:m1m2       # M1 + M2:    3.33%
    python launch.py --config=experiments/semisupervised.py:nn         # NN alone:  25.8%
    python launch.py --config=experiments/semisupervised.py --config.labels.num=1000
    python launch.py --config=experiments/semisupervised.py:m2 --config.data.dir=MNIST_DIR

Variants: `m1` (the default: M1, the authors' VAE, 784-500-500-50 softplus as in their code
(the paper's text says 600), then a classifier on its posterior means,
`semisupervised.classifier` = svm | logistic | mlp | knn, or the transductive graph methods
poisson | poisson_mbo | laplace | spreading on a kNN graph of every training and test
image's means, `semisupervised.graph_metric` = euclidean or angular),
`m2` (the semi-supervised VAE on the pixels: one hidden layer of 500 softplus units, 50
latents), `m1m2` (M2 on the M1 codes), `nn` (a small MLP on the labeled pixels alone),
`bound` (with any of them: M1's epoch chosen by the validation -ELBO, label-free, instead
of the probe), `conv` (M1 is experiments/vae.py's conv VAE), `runlocal` (a quick check:
2 epochs of each model).

M1's epoch (up to `train.num_epochs`, an evaluation each epoch, stopped after
`train.patience` without a better one) is the one whose posterior means a fixed probe
classifies best: a logistic regression (C = 1) fitted on the labeled examples' means and
scored on the validation ones (`train.select_on='validation_probe_accuracy'`,
aevb/regimes/probe.py). A longer-trained M1 buys likelihood with collapsed units, which the
bound cannot see.

As the paper states them (Section 4 and Appendix): dynamically binarized images; Adam-style
RMSProp with bias correction, learning rate 3e-4, moment decays 0.1 and 0.001 (Adam's
beta1 = 0.9, beta2 = 0.999); alpha = 0.1 N (`m2.alpha` = 0.1 per example); balanced
labeled batches beside the unlabeled ones. The budgets are this CPU's, far below the
paper's (which trained to convergence on a GPU): `train.num_epochs` for M1, `m2.num_epochs`
for M2. The methods and what they measured on Fashion-MNIST over seeds and label counts:
docs/semisupervised.md (headline: the README's experiments table).
"""

import ml_collections

from aevb import sweeps
from aevb.config import defaults
from experiments import vae


def _m1(config: ml_collections.ConfigDict) -> None:
    config.semisupervised.features = "m1"


def _m2(config: ml_collections.ConfigDict) -> None:
    config.semisupervised.features = "pixels"
    config.semisupervised.classifier = "m2"


def _m1m2(config: ml_collections.ConfigDict) -> None:
    config.semisupervised.features = "m1"
    config.semisupervised.classifier = "m2"


def _bound(config: ml_collections.ConfigDict) -> None:
    config.train.select_on = "validation_neg_elbo"
    config.train.select_mode = "min"


def _nn(config: ml_collections.ConfigDict) -> None:
    config.semisupervised.features = "pixels"
    config.semisupervised.classifier = "mlp"


def get_config(variant: str = "") -> ml_collections.ConfigDict:
    config = defaults.base_config()
    config.experiment = "semisupervised"
    config.task = "semisupervised"
    config.data.num_validation = 0        # every training image is unlabeled data
    config.data.binarize = "dynamic"
    # M1: the authors' VAE (their code, dpkingma/nips14-ssl; the paper's text says 600), 2
    # hidden layers of 500 softplus units, 50 latent units; its epoch chosen by the probe.
    config.model.kind = "vae"
    config.model.hidden_sizes = (500, 500)
    config.model.latent_dim = 50
    config.model.activation = "softplus"
    config.train.optimizer = "adam"
    config.train.learning_rate = 3e-4
    config.train.num_epochs = 30
    config.train.select_on = "validation_probe_accuracy"  # aevb/regimes/probe.py
    config.train.select_mode = "max"
    config.train.patience = 5
    config.eval.every_epochs = 1
    config.eval.iwae_k = 100
    config.eval.iwae_num_examples = 1000
    config.labels.num = 100
    config.labels.num_validation = -1     # as many as labels.num
    config.labels.hold_out = True         # their images train neither M1 nor M2
    config.semisupervised.features = "m1"
    config.semisupervised.classifier = "svm"
    config.m2.num_epochs = 10
    config.m2.patience = 0
    return defaults.apply_variants(config, variant, "experiments/semisupervised.py",
                                  {"m1": _m1, "m2": _m2, "m1m2": _m1m2, "nn": _nn,
                                   "bound": _bound, "conv": vae.conv_vae})


def _labels() -> list[dict]:
    """Seeds 0, 1, 2 (train.seed = labels.seed: M1, M2 and the labeled subsets) x 100 and
    1,000 labels x the methods: NN on the labeled pixels (`nn`), M1 with each host
    classifier, M1 + M2; and M2 on the pixels, the costliest, for seed 0 only."""
    methods = [("pixels", "mlp"), *(("m1", c) for c in ("logistic", "mlp", "knn", "svm")),
               ("m1", "m2")]
    return [{"train.seed": seed, "labels.seed": seed, "labels.num": num,
             "semisupervised.features": features, "semisupervised.classifier": classifier}
            for seed in (0, 1, 2) for num in (100, 1000)
            for features, classifier in methods + ([("pixels", "m2")] if seed == 0 else [])]


PROTOCOL_METHODS = (("pixels", "mlp"), ("m1", "logistic"), ("m1", "svm"), ("m1", "mlp"),
                    ("m1", "knn"), ("m1", "poisson"), ("m1", "laplace"), ("m1", "spreading"),
                    ("pixels", "m2"), ("m1", "m2"))


# The anchor's protocol (Calder et al. 2020) on a sweep's M1: Poisson learning with their
# number of neighbours, the only one tried, so that no validation label chooses anything.
ANCHOR_NEIGHBORS = (10,)


def _anchor(trials: list[dict]) -> list[dict]:
    """Poisson learning in the anchor's own protocol on the features of `trials`' Poisson
    trials at 100 labels, the same draws and M1s: a graph on all 70,000 images, the 100
    labels, k = ANCHOR_NEIGHBORS (nothing chosen on the validation labels), the error over
    every unlabeled node (`unlabeled_accuracy`) beside the test error."""
    return [{**trial, "semisupervised.graph_neighbors": ANCHOR_NEIGHBORS} for trial in trials
            if trial["labels.num"] == 100 and trial["semisupervised.classifier"] == "poisson"]


def _protocol() -> list[dict]:
    """Issue 21's table: label draws 0-4 (train.seed = labels.seed) x 100 and 1,000 labels x
    every method of PROTOCOL_METHODS; beside them the control (M1 chosen by the validation
    bound, Poisson learning on it) and, at 100 labels, Poisson learning on the control's
    features in the anchor's own protocol (`_anchor`). The trials of one draw and count
    share one M1 (`semisupervised.m1_workdir`), trained by the first that needs it."""
    out, bound = [], []
    for seed in range(5):
        for num in (100, 1000):
            draw = {"train.seed": seed, "labels.seed": seed, "labels.num": num}
            probe = {"semisupervised.m1_workdir": f"probe-seed{seed}-labels{num}"}
            out += [{**draw, **probe, "semisupervised.features": f,
                     "semisupervised.classifier": c} for f, c in PROTOCOL_METHODS]
            bound.append({**draw, "semisupervised.classifier": "poisson",
                          "train.select_on": "validation_neg_elbo", "train.select_mode": "min",
                          "semisupervised.m1_workdir": f"bound-seed{seed}-labels{num}"})
            out.append(bound[-1])
    return out + _anchor(bound)


# The `long` sweep's budgets: an accelerator's, far beyond the protocol's 3 CPU hours.
LONG_M1_EPOCHS, LONG_M1_PATIENCE, LONG_M2_EPOCHS = 200, 20, 300


def _long() -> list[dict]:
    """M2 and M1 + M2 trained long enough (issue 21), for a GPU: label draws 0-4 x 100 then
    1,000 labels, M2 for LONG_M2_EPOCHS epochs, on the pixels and on the codes of an M1
    chosen by the validation bound over up to LONG_M1_EPOCHS epochs, which Poisson and
    Laplace learning also use; the labels-alone network beside them, on the same draws
    and machine. Ordered so that parallel workers (`--workers`) train the five M1s
    first, each in its own process, instead of waiting for one another's."""
    m1 = {"train.select_on": "validation_neg_elbo", "train.select_mode": "min",
          "train.num_epochs": LONG_M1_EPOCHS, "train.patience": LONG_M1_PATIENCE,
          "semisupervised.features": "m1"}
    m2 = {"m2.num_epochs": LONG_M2_EPOCHS, "semisupervised.classifier": "m2"}
    methods = ({**m1, "semisupervised.classifier": "poisson"},
               {**m2, "semisupervised.features": "pixels"},
               {"semisupervised.features": "pixels", "semisupervised.classifier": "mlp"},
               {**m1, **m2},
               {**m1, "semisupervised.classifier": "laplace"})
    out = []
    for num in (100, 1000):
        for method in methods:
            for seed in range(5):
                shared = ({"semisupervised.m1_workdir": f"long-seed{seed}-labels{num}"}
                          if method["semisupervised.features"] == "m1" else {})
                out.append({"train.seed": seed, "labels.seed": seed, "labels.num": num,
                            **method, **shared})
    return out


GRAPH_CLASSIFIERS = ("poisson", "poisson_mbo", "laplace")
GRAPH_M2_EPOCHS = 30  # M1 + M2 on the graph sweep's M1s: what fits this CPU's budget


def _graph() -> list[dict]:
    """The graph methods of Calder et al. (2020) on one M1 per label draw and count, the
    one the variant configures (`:bound,conv`: the conv M1 chosen by the validation
    bound): draws 0-4 x 100 and 1,000 labels x GRAPH_CLASSIFIERS, each selected on the
    validation split, on their graph (`semisupervised.graph_metric` euclidean, the
    default); the trials of one draw and count share their M1. Then, at 100 labels,
    Poisson learning in the anchor's own protocol on the same M1s (`_anchor`). Then the
    GRAPH_CLASSIFIERS again on the same M1s with the angular graph. Last, M1 + M2 on the
    same M1s' codes for GRAPH_M2_EPOCHS epochs, 100 then 1,000 labels."""
    selected = [{"train.seed": seed, "labels.seed": seed, "labels.num": num,
                 "semisupervised.m1_workdir": f"graph-seed{seed}-labels{num}",
                 "semisupervised.classifier": classifier}
                for num in (100, 1000) for seed in range(5)
                for classifier in GRAPH_CLASSIFIERS]
    anchor = _anchor(selected)
    angular = [{**trial, "semisupervised.graph_metric": "angular"} for trial in selected]
    m1m2 = [{**trial, "semisupervised.classifier": "m2", "m2.num_epochs": GRAPH_M2_EPOCHS}
            for trial in selected if trial["semisupervised.classifier"] == "poisson"]
    return selected + anchor + angular + m1m2


def get_sweep(name: str = "") -> list[dict]:
    """`--sweep=labels` (`_labels`), `--sweep=protocol` (`_protocol`), `--sweep=long`
    (`_long`) or `--sweep=graph` (`_graph`, with a variant's M1), and its table of test
    error (%), mean ± sample std over the seeds:

        python launch.py --config=experiments/semisupervised.py --sweep=labels \\
            --workdir=runs/semisupervised-labels
        python -m aevb.sweeps.report runs/semisupervised-labels --fields=test_error \\
            --group_by=semisupervised.features,semisupervised.classifier,labels.num \\
            --scale=100 --format=.2f
    """
    return sweeps.named(name, {"labels": _labels, "protocol": _protocol, "long": _long,
                               "graph": _graph}, "experiments/semisupervised.py")
