"""The linear probe that chooses a VAE's epoch for its features (`train.select_on=
'validation_probe_accuracy'`): how well one fixed, cheap classifier does on the posterior
means, measured at every evaluation of a pretraining run (M1 of the semisupervised regime).

A longer-trained VAE buys likelihood with collapsed units, and its features can classify
worse; selecting on the bound cannot see that. The probe reads the labels of the labeled
training examples and of the labeled validation examples only (`labels.hold_out` has
moved the latter out of the training split, into the run's validation split): a
multinomial logistic regression at C = 1 (`host_classifiers.DEFAULTS`, no search) on
their standardised posterior means, restricted to the units active among those examples
(the variance of the mean above `families.vae.ACTIVE_THRESHOLD`), is fitted on the labeled
examples and scored on the validation ones. The test set is never read.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import ml_collections
import numpy as np

from aevb import data as data_lib
from aevb import families
from aevb.regimes.classifier import inputs
from aevb.regimes.prepare import flat_images
from aevb.regimes.validation import PROBE as METRIC
from aevb.run import parallel


def make_probe(config: ml_collections.ConfigDict, model: Any, datasets: data_lib.Datasets
               ) -> Callable[[Any], dict[str, float]]:
    """params -> {METRIC: the probe's validation accuracy} for a VAE `model` of `config`
    on `datasets` (which `labels.hold_out` made: labeled rows and a labeled validation
    split). The inputs are grey levels, as the features' classifiers see them."""
    from aevb.evaluation import host_classifiers  # scikit-learn: only probing runs import it

    family = families.get(config.model.kind)
    labeled = datasets.train.take(datasets.labeled_rows)
    splits = [(inputs(jnp.asarray(flat_images(s)), config.data.binarize), np.asarray(s.labels))
              for s in (labeled, datasets.validation)]

    def probe(params: Any) -> dict[str, float]:
        (x, y), (xv, yv) = [(parallel.fetch(family.posterior(config, model, params, x_))
                             ["mean"], y_) for x_, y_ in splits]
        active = family.active_units(np.concatenate([x, xv]))
        if not active.any():  # nothing to classify on: chance is what a probe would get
            return {METRIC: float(np.mean(yv == np.bincount(y).argmax()))}
        fitted = host_classifiers.fit_and_select("logistic", x[:, active], y,
                                                 xv[:0, active], yv[:0], config.train.seed)
        return {METRIC: host_classifiers.accuracy(fitted, xv[:, active], yv)}
    return probe
