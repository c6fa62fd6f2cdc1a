"""The rows of the results page: one measured command each, with the published figure it
stands beside (`ROWS`).

A row is an experiment file with its variants (`name`, e.g. 'stacked:deep') and any further
`--config` flags; `result` is a `str.format` template over the run's summary.json (plus the
derived fields of `derived`); `anchor` the nearest published figure with its source. Rows
with `readme=True` are the README's headline numbers, one per experiment file (its default).
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from aevb.config import defaults

LL = ("{neg_log_likelihood:.2f} nats (−L_{test_log_likelihood_k}, "
      "{test_log_likelihood_examples:,} test images)")
MSE = "test MSE {test_mse:.5f}"
PCA = "test MSE {test_mse:.5f} = {pca_ratio:.3f} × PCA-30 ({pca_mse:.5f})"
EXEMPLAR = "Norouzi et al. 2020, Exemplar VAE, Table 1"
GERON = "Géron's autoencoder chapter"
HINTON = "0.22 × PCA-30, deep autoencoder, MNIST (Hinton & Salakhutdinov 2006)"
BURDA = "Burda et al. 2015, Table 1"
QUICK_DROPS = ("--config.train.num_epochs=",)  # flags that quick mode leaves to runlocal


@dataclasses.dataclass(frozen=True)
class Row:
    """One command of the page. `name`: 'file' or 'file:variant,variant' (experiments/);
    `flags`: further `--config.a.b=v` flags; `figures`: pictures of its workdir shown on the
    page; `curves`: its learning curves (train and validation or test bound per epoch)."""

    name: str
    result: str
    anchor: str
    readme: bool = False
    flags: tuple[str, ...] = ()
    figures: tuple[str, ...] = ()
    curves: bool = False
    tag: str = ""  # tells apart two rows of one name (different flags)

    @property
    def file(self) -> str:
        return self.name.split(":")[0]

    @property
    def key(self) -> str:
        """The row's directory and record name: 'stacked-deep', 'iwae-budget+vae_k1',
        'vae-2d' (a tag)."""
        key = self.name.replace(":", "-").replace(",", "+")
        return f"{key}-{self.tag}" if self.tag else key

    def config_arg(self, quick: bool) -> str:
        """`experiments/FILE.py[:VARIANTS]`, with `runlocal` added in quick mode."""
        variants = [v for v in self.name.split(":")[1:2] for v in v.split(",") if v]
        variants += ["runlocal"] if quick else []
        return f"experiments/{self.file}.py" + (":" + ",".join(variants) if variants else "")

    def command(self, quick: bool = False) -> str:
        """The command line; in quick mode without the flags `runlocal` decides (epochs)."""
        flags = [f for f in self.flags if not (quick and f.startswith(QUICK_DROPS))]
        return shlex.join(["python", "launch.py", f"--config={self.config_arg(quick)}",
                           *flags])


@dataclasses.dataclass(frozen=True)
class Table:
    """A named sweep of an experiment file, shown grouped: its finished trials' summaries
    are kept one file each (`records/<key>/<trial>.json`, so that the table grows across
    sittings and machines); a line per value of the `rows_by` fields, and per value of
    `columns_by` each of `fields` (of `derived`) as mean ± sample std over the trials."""

    key: str
    file: str
    sweep: str
    title: str
    rows_by: tuple[str, ...]
    columns_by: str
    fields: tuple[str, ...]
    anchor: str = ""
    fmt: str = ".2f"
    # The README's line for the table: `headline_field`'s mean ± std over the kept trials of
    # each (label, ((config field, value), ...)) group.
    headline: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    headline_field: str = ""
    variant: str = ""  # the experiment file's variants the sweep runs under: 'bound,conv'
    # (config field, summary field): the field's cell reads '–' for the trials whose summary
    # lacks the summary field, the setting having acted on nothing there (no M1, no graph)
    shown_when: tuple[tuple[str, str], ...] = ()

    def command(self) -> str:
        """The sweep's command line (without its --workdir)."""
        variant = f":{self.variant}" if self.variant else ""
        return shlex.join(["python", "launch.py",
                           f"--config=experiments/{self.file}.py{variant}",
                           f"--sweep={self.sweep}"])


def put(config: dict[str, Any], field: str, value: Any) -> None:
    """Sets the dotted `field` ('labels.num') of a config.json's dict, making its sections."""
    *sections, name = field.split(".")
    for section in sections:
        config = config.setdefault(section, {})
    config[name] = value


def derived(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary with the fields results are written in: `neg_log_likelihood` (-L_k, as
    papers report it), `pca_ratio` (test MSE over PCA's with as many components as the
    code), `test_error_pct`, `pretrained_test_error_pct`, `scratch_test_error_pct`."""
    out = dict(summary)
    if "test_log_likelihood" in out:
        out["neg_log_likelihood"] = -out["test_log_likelihood"]
    if "test_mse" in out and out.get("pca_mse"):
        out["pca_ratio"] = out["test_mse"] / out["pca_mse"]
    for field in ("test_accuracy", "pretrained_test_accuracy", "scratch_test_accuracy",
                  "unlabeled_accuracy"):
        if field in out:
            out[field.replace("accuracy", "error_pct")] = 100.0 * (1.0 - out[field])
    # a semi-supervised trial's own time: its features (M1 trained or loaded) and classifier
    parts = [out.get(k) for k in ("features_seconds", "classifier_seconds", "train_seconds")]
    if out.get("task") == "semisupervised":
        out["trial_seconds"] = sum(p for p in parts if p is not None)
    return out


ROWS = (
    Row("vae", LL, f"228.70 nats, VAE, Fashion-MNIST ({EXEMPLAR})", readme=True,
        figures=("reconstructions.png", "samples.png", "interpolations.png"), curves=True),
    Row("vae:paper", LL, f"228.70 nats, VAE, Fashion-MNIST ({EXEMPLAR})"),
    Row("vae:gaussian", "{test_log_likelihood_bits_per_dim:.2f} bits/dim (L_"
        "{test_log_likelihood_k}, {test_log_likelihood_examples:,} test images), −ELBO "
        "{test_neg_elbo_bits_per_dim:.2f} bits/dim; Gaussian decoder, dequantized grey levels",
        "none"),
    Row("vae", LL + "; the 2-D latent manifold", "Kingma & Welling 2014, figure 4 (MNIST)",
        flags=("--config.model.latent_dim=2",), figures=("latent_manifold.png",), tag="2d"),
    # The IWAE paper's table in runs of about 15 minutes (`iwae.py --sweep=figures`): the
    # `budget` schedule shortened to 560 passes at k = 1 and 280 at k = 5.
    Row("iwae:budget,vae_k1", LL + " after {epochs} passes, a KL warm-up over 56",
        f"MNIST: VAE k = 1, 86.76 nats ({BURDA})", readme=True,
        flags=("--config.train.num_epochs=560", "--config.train.kl_warmup_epochs=56"),
        tag="warmup"),
    Row("iwae:budget,vae_k1,constant", LL + " after {epochs} passes",
        f"MNIST: VAE k = 1, 86.76 nats ({BURDA})", flags=("--config.train.num_epochs=560",)),
    Row("iwae:budget,vae_k1", LL + " after {epochs} passes",
        f"MNIST: VAE k = 1, 86.76 nats ({BURDA})", flags=("--config.train.num_epochs=560",)),
    Row("iwae:budget,iwae_k5,constant", LL + " after {epochs} passes",
        f"MNIST: IWAE k = 5, 85.54 nats ({BURDA})", flags=("--config.train.num_epochs=280",)),
    Row("iwae:budget,iwae_k5", LL + " after {epochs} passes",
        f"MNIST: IWAE k = 5, 85.54 nats ({BURDA})", flags=("--config.train.num_epochs=280",)),
    Row("likelihood", LL + ", selected at epoch {selected_epoch} of {epochs_run}",
        f"228.70 ± 0.15 nats, VAE, Fashion-MNIST ({EXEMPLAR})", readme=True, curves=True),
    Row("likelihood:iwae", LL + ", selected at epoch {selected_epoch} of {epochs_run}; "
        "{active_units} active units", "none (IWAE k = 5 under this protocol); the VAE row "
        "above", curves=True),
    # the IWAE in the VAE's training time: 607 epochs x 0.427, the IWAE's rate against the
    # VAE's (`python -m benchmarks.samples --config=experiments/likelihood.py --samples=1,5`)
    Row("likelihood:iwae", LL + ", selected at epoch {selected_epoch} of {epochs_run}; "
        "{active_units} active units", "none: the `likelihood` row at equal training time",
        flags=("--config.train.num_epochs=259", "--config.train.patience=0"), curves=True,
        tag="epochs259"),
    # the IWAE at the VAE's 607 epochs (its early stop), every epoch trained
    Row("likelihood:iwae", LL + ", selected at epoch {selected_epoch} of {epochs_run}; "
        "{active_units} active units", "none: the `likelihood` row at equal epochs",
        flags=("--config.train.num_epochs=607", "--config.train.patience=0"), curves=True,
        tag="epochs607"),
    Row("likelihood:vampprior", LL + ", selected at epoch {selected_epoch} of {epochs_run}",
        f"227.35 ± 0.05 nats, VampPrior, Fashion-MNIST ({EXEMPLAR})", curves=True),
    Row("autoencoder", PCA, "none; PCA-30 (the linear optimum) beside it", readme=True),
    Row("stacked", MSE, f"≈ 0.0132, Fashion-MNIST ({GERON})", readme=True),
    Row("stacked:tied", MSE, f"≈ 0.0133, Fashion-MNIST ({GERON})"),
    Row("stacked:deep", PCA, HINTON, figures=("reconstructions.png",)),
    Row("stacked:deep", PCA.replace("PCA-30", "PCA-16"), "none: the code-size curve",
        flags=("--config.model.latent_dim=16",), tag="code16"),
    Row("stacked:deep", PCA.replace("PCA-30", "PCA-64"), "none: the code-size curve",
        flags=("--config.model.latent_dim=64",), tag="code64"),
    Row("denoising", MSE + " (clean inputs)", f"≈ 0.0166, Fashion-MNIST ({GERON})",
        readme=True),
    Row("sparse", MSE, f"≈ 0.0099, Fashion-MNIST ({GERON})", readme=True),
    Row("layerwise", PCA + " (fine-tuned)", HINTON, readme=True),
    Row("pretrain", "{pretrained_test_error_pct:.2f}% test error pretrained, "
        "{scratch_test_error_pct:.2f}% from scratch ({labels_num:,} labels)",
        "1.28% error, SDAE with all labels, MNIST (Vincent et al. 2010)", readme=True),
    Row("semisupervised", "{test_error_pct:.2f}% test error (M1 + SVM, {labels_num} labels)",
        "24.75% error, Poisson learning on VAE features, Fashion-MNIST (Calder et al. 2020)",
        readme=True),
    Row("conv", MSE, "none", readme=True),
)

SEMISUPERVISED = ("semisupervised.features", "semisupervised.classifier", "train.select_on",
                  "semisupervised.graph_neighbors")
# M1's selection shows where an M1 was trained, the graph's settings where a graph was built
SEMISUPERVISED_SHOWN = (("train.select_on", "m1_selected_epoch"),
                        ("semisupervised.graph_neighbors", "graph_nodes"),
                        ("semisupervised.graph_metric", "graph_nodes"))
# The graphs' numbers of neighbours chosen on the validation nodes (the default, as
# config.json has it), not the anchor's protocol (experiments/semisupervised.py's _anchor)
CHOSEN_NEIGHBORS = ("semisupervised.graph_neighbors",
                    list(defaults.base_config().semisupervised.graph_neighbors))
TABLES = (
    Table("semisupervised-protocol", "semisupervised", "protocol",
          "Few labels: test error (%) over label draws (issue 21's protocol)",
          rows_by=SEMISUPERVISED, columns_by="labels.num", shown_when=SEMISUPERVISED_SHOWN,
          fields=("test_error_pct", "unlabeled_error_pct", "m1_selected_epoch",
                  "selected_epoch", "trial_seconds"),
          anchor="24.75% error at 100 labels, Poisson learning on VAE features, over every "
                 "unlabeled node (Calder et al. 2020); 17.7% Laplace learning at 1,600",
          headline_field="test_error_pct", headline=tuple(
              (f"{label}, {num:,} labels", (("labels.num", num), *where))
              for num in (100, 1000) for label, where in (
                  ("M1 chosen by the bound + Poisson", (
                      ("semisupervised.classifier", "poisson"),
                      ("train.select_on", "validation_neg_elbo"), CHOSEN_NEIGHBORS)),
                  ("labels alone", (("semisupervised.features", "pixels"),
                                    ("semisupervised.classifier", "mlp")))))),
    Table("semisupervised-long", "semisupervised", "long",
          "Few labels, trained long on a GPU: M2, M1 + M2, graph methods (issue 21)",
          rows_by=SEMISUPERVISED[:2], columns_by="labels.num",
          fields=("test_error_pct", "unlabeled_error_pct", "m1_selected_epoch",
                  "selected_epoch", "trial_seconds"),
          anchor="MNIST, 100 labels: M2 11.97%, M1 + M2 3.33% (Kingma et al. 2014); "
                 "Fashion-MNIST: 24.75% Poisson learning (Calder et al. 2020)",
          headline_field="test_error_pct", headline=tuple(
              (f"{label}, 100 labels", (("labels.num", 100),
                                        ("semisupervised.features", features),
                                        ("semisupervised.classifier", classifier)))
              for label, features, classifier in (("M2", "pixels", "m2"),
                                                  ("M1 + M2", "m1", "m2"),
                                                  ("labels alone", "pixels", "mlp")))),
    Table("semisupervised-graph-conv", "semisupervised", "graph",
          "Few labels: the graph methods on the conv M1 chosen by the bound, and M1 + M2 on "
          "its codes (issue 21)",
          rows_by=("semisupervised.classifier", "semisupervised.graph_metric",
                   "semisupervised.graph_neighbors"),
          columns_by="labels.num", shown_when=SEMISUPERVISED_SHOWN,
          fields=("test_error_pct", "unlabeled_error_pct", "m1_selected_epoch",
                  "selected_num_neighbors", "selected_epoch", "trial_seconds"),
          anchor="24.75% error at 100 labels, Poisson learning on VAE features, over every "
                 "unlabeled node (Calder et al. 2020); 17.7% Laplace learning at 1,600",
          headline_field="test_error_pct", variant="bound,conv", headline=tuple(
              (f"{label}, {num:,} labels", (("labels.num", num),
                                            ("semisupervised.classifier", classifier),
                                            ("semisupervised.graph_metric", metric),
                                            CHOSEN_NEIGHBORS))
              for num, label, classifier, metric in (
                  (100, "Poisson", "poisson", "euclidean"),
                  (100, "Poisson, angular graph", "poisson", "angular"),
                  (1000, "Poisson, angular graph", "poisson", "angular"),
                  (1000, "Laplace", "laplace", "euclidean"),
                  (100, "M1 + M2", "m2", "euclidean")))),
)
