"""The classifier family: an encoder exported by a model family under a softmax head.

Pretraining (`aevb/regimes/pretrain.py`) builds it twice: on the pretrained encoder (its module and
its parameters, as the autoencoder or VAE family exports them) and on the same module
initialised at random (scratch). Objective: softmax cross-entropy per example; evaluation:
accuracy. A frozen encoder is every parameter under the classifier's `encoder` entry.
"""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh

from aevb import data as data_lib
from aevb.evaluation import plots
from aevb.evaluation.measures import map_in_chunks
from aevb.families.base import Family, Params
from aevb.models import Classifier
from aevb.run import files, parallel

ENCODER = "encoder"  # the classifier's parameter entry that holds its encoder


def build(family: Family, model_config: ml_collections.ConfigDict,
          image_shape: tuple[int, int, int],
          num_classes: int, pretrained_params: Params, num_layers: int, key: jax.Array
          ) -> tuple[Classifier, Params, Params]:
    """(model, pretrained parameters, scratch parameters) of the classifier on the lower
    `num_layers` (0 = all) encoder layers of a `family` model with `pretrained_params`.

    Both parameter sets share the head's random initialisation (from `key`); `scratch` has
    a randomly initialised encoder, `pretrained` the exported one.
    """
    module, encoder_params = family.encoder(model_config, image_shape, pretrained_params,
                                            num_layers)
    model = Classifier(encoder=module, num_classes=num_classes)
    scratch = jax.jit(model.init)(key, jnp.zeros((1, int(np.prod(image_shape))), jnp.float32))
    pretrained = {**scratch, "params": {**scratch["params"], ENCODER: encoder_params["params"]}}
    return model, pretrained, scratch


def inputs(images: jax.Array, binarize: str) -> jax.Array:
    """uint8 pixels [N, D] -> float32 classifier inputs [N, D]: grey levels (static: 0/1).

    A model trained on dynamically binarized images sees their expectation, the grey levels.
    """
    x = data_lib.to_unit_interval(images)
    return data_lib.binarize(x, "static", None) if binarize == "static" else x


def frozen_labels(params: Params) -> Params:
    """'frozen' for every encoder parameter, 'train' for the head's: for optax.multi_transform."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "frozen" if path[1].key == ENCODER else "train", params)


def stop_encoder_gradient(params: Params) -> Params:
    """The parameters with the encoder's behind `stop_gradient` (no backward pass there)."""
    inner = params["params"]
    return {**params, "params": {**inner, ENCODER: jax.lax.stop_gradient(inner[ENCODER])}}


def cross_entropy_terms(model: Classifier, params: Params, x: jax.Array,
                        labels: jax.Array) -> dict[str, jax.Array]:
    """Per-example softmax cross-entropy (nats) and correctness, each [B], of x [B, D]."""
    logits = model.apply(params, x)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(logits, labels),
            "accuracy": (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)}


@functools.partial(jax.jit, static_argnames=("model", "chunk_size", "mesh"))
def predict(model: Classifier, params: Params, x: jax.Array, chunk_size: int,
            mesh: Mesh | None = None) -> jax.Array:
    """Predicted classes [N] of inputs x [N, D], in chunks."""

    def fn(xc, _):
        return {"class": jnp.argmax(model.apply(params, xc), axis=-1)}
    return map_in_chunks(fn, x, jax.random.key(0), chunk_size, mesh)["class"]


def accuracy(model: Classifier, params: Params, x: jax.Array, labels: np.ndarray,
             chunk_size: int = 1000, mesh: Mesh | None = None) -> float:
    """Fraction of inputs x [N, D] whose predicted class is the label [N]."""
    predicted = parallel.fetch(predict(model, params, x, chunk_size, mesh))
    return float(np.mean(predicted == np.asarray(labels)))


def save_accuracy_plot(workdir: str, names: tuple[str, ...], steps_per_round: int) -> str:
    """`accuracy.png`: test accuracy against each classifier's own steps, per classifier,
    read back from metrics.jsonl (where the classifiers' lines follow each other: a
    classifier's steps count from its first round's line, which is `steps_per_round` in)."""
    curves: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    with open(files.path(workdir, files.METRICS)) as f:
        for record in map(json.loads, f):
            name = record.get("phase")
            if name in curves and f"{name}/test_accuracy" in record:
                curves[name].append((record["step"], record[f"{name}/test_accuracy"]))
    for name, points in curves.items():
        start = min((step for step, _ in points), default=0) - steps_per_round
        curves[name] = [(step - start, accuracy) for step, accuracy in points]
    return plots.save_curves(curves, "classifier step", "test accuracy",
                             files.path(workdir, files.ACCURACY))
