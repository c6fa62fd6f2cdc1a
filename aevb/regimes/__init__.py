"""The router: picks the regime that runs a config, or the way a sweep's trials run.

    task=pretrain          -> aevb/regimes/pretrain.py (its phase 1 routed back through `run`)
    task=semisupervised    -> aevb/regimes/semisupervised.py (M1's VAE routed back through `run`)
    train.schedule=layerwise -> aevb/regimes/layerwise.py
    otherwise              -> aevb/regimes/joint.py (joint)
    a sweep                -> trials that differ only in vectorizable fields, as plain
                              runs, train together (aevb/regimes/vectorized.py); the rest one by one

Regimes never import the router or each other's entry points: pretraining receives `run`
as an argument, so the import graph of `aevb/` has no cycle.

Both entry points hold the workdir locks they take (`aevb/run/lock.py`: one per run's workdir,
one per trial's, one on a sweep's root for its tables and vectorized checkpoints) until
they return or raise.
"""

from __future__ import annotations

from typing import Any

import ml_collections

from aevb.regimes import joint, layerwise, pretrain, semisupervised
from aevb.run import lock


def run(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Runs one config in `workdir` through its regime; returns the run's summary."""
    with lock.scope():
        if config.task == "pretrain":
            return pretrain.train_and_evaluate(config, workdir, train_autoencoder=run)
        if config.task == "semisupervised":
            return semisupervised.train_and_evaluate(config, workdir, train_autoencoder=run)
        if config.train.schedule == "layerwise":
            return layerwise.train_and_evaluate(config, workdir)
        return joint.train_and_evaluate(config, workdir)
