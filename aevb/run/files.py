"""Every file name of a workdir, in one place.

A run's workdir holds:

  config.json          the resolved config (`workdir.claim`); a resume must match it
  data.json            the data's content hash, sizes and image shape; a resume must match
  .lock                the lock of the process that runs there (`lock.py`)
  metrics.jsonl        one JSON object per logged round; the last, `"final": true`
  tensorboard/         the same metrics as TensorBoard event files
  checkpoints/         Orbax checkpoints of the phase (a phase of a multi-phase regime:
                       `<phase>/checkpoints`, e.g. `phase_2/checkpoints`, `m2/checkpoints`)
  profile/             a `jax.profiler` trace (`train.profile`)
  summary.json         the flat final metrics, written when the run ends
  summary.stale.json   an earlier summary.json, set aside while the run it described changes
  *.png                the run's pictures (`PICTURES`; drawn by the families and regimes)

Multi-phase regimes keep sub-runs in sub-directories (`autoencoder/` of pretraining, `m1/`
of the semi-supervised regime); each is a workdir of its own with the same files.
"""

from __future__ import annotations

import os

import jax

CONFIG = "config.json"
DATA = "data.json"
LOCK = ".lock"
METRICS = "metrics.jsonl"
TENSORBOARD = "tensorboard"
CHECKPOINTS = "checkpoints"
PROFILE = "profile"
SUMMARY = "summary.json"
STALE_SUMMARY = "summary.stale.json"
# The pictures, by who draws them: every model (reconstructions, filters of the first
# layer); the VAE (samples, interpolations, the latent manifold of a 2-d code); a denoising
# or sparse autoencoder (denoising, code activations); pretraining (accuracy); M2 (class
# samples, analogies).
RECONSTRUCTIONS = "reconstructions.png"
FILTERS = "filters.png"
SAMPLES = "samples.png"
INTERPOLATIONS = "interpolations.png"
LATENT_MANIFOLD = "latent_manifold.png"
DENOISING = "denoising.png"
CODE_ACTIVATIONS = "code_activations.png"
ACCURACY = "accuracy.png"
CLASS_SAMPLES = "class_samples.png"
ANALOGIES = "analogies.png"
PICTURES = (RECONSTRUCTIONS, FILTERS, SAMPLES, INTERPOLATIONS, LATENT_MANIFOLD, DENOISING,
            CODE_ACTIVATIONS, ACCURACY, CLASS_SAMPLES, ANALOGIES)


def checkpoint_dir(workdir: str, phase: str = "") -> str:
    """Where a phase's checkpoints live: `<workdir>/checkpoints`, or
    `<workdir>/<phase>/checkpoints` for a named phase of a multi-phase regime."""
    return os.path.join(workdir, phase, CHECKPOINTS) if phase else os.path.join(workdir,
                                                                                 CHECKPOINTS)


def path(workdir: str, name: str) -> str:
    """`<workdir>/<name>` for one of the names above."""
    return os.path.join(workdir, name)


def set_summary_aside(workdir: str) -> None:
    """Moves `workdir`'s summary.json to summary.stale.json (process 0): the run it
    describes is being changed, and the run's end will write the new one."""
    summary = path(workdir, SUMMARY)
    if jax.process_index() == 0 and os.path.exists(summary):
        os.replace(summary, path(workdir, STALE_SUMMARY))
