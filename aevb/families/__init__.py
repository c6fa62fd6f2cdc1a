"""The model families, looked up by `model.kind`: the only place that knows their names.

Adding a family: one file in this package with a `Family` subclass, and one line below
(docs/extending.md). M2, the semi-supervised VAE of Kingma et al. (2014), is not a
`model.kind`, as it needs labels: `aevb/models/m2.py` holds it and `task=semisupervised`
trains it (`aevb/regimes/semisupervised.py`, `semisupervised.classifier=m2`) on the pixels
or on the codes of a VAE of `model.*`.
"""

from __future__ import annotations

from aevb.families import autoencoder, vae
from aevb.families.base import Family, Objective

FAMILIES: dict[str, Family] = {
    "vae": vae.VAEFamily(),
    "autoencoder": autoencoder.AutoencoderFamily(),
}
KINDS = tuple(FAMILIES)
# Every float field some family's objective reads (the vectorizable ones).
FLOAT_FIELDS = tuple(dict.fromkeys(f for fam in FAMILIES.values() for f in fam.float_fields))


def get(kind: str) -> Family:
    """The family of `model.kind` (validated before: an unknown kind is a bug here)."""
    return FAMILIES[kind]


__all__ = ["FAMILIES", "FLOAT_FIELDS", "KINDS", "Family", "Objective", "get"]
