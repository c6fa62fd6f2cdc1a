"""Encoder/decoder architectures, looked up by `model.architecture`: the only place that
knows their names.

Adding one: a file in this package with an `Architecture` subclass, and one line below.
"""

from __future__ import annotations

from aevb.architectures import conv, mlp
from aevb.architectures.base import Architecture

ARCHITECTURES: dict[str, Architecture] = {
    "mlp": mlp.MLPArchitecture(),
    "conv": conv.ConvArchitecture(),
}
NAMES = tuple(ARCHITECTURES)


def get(name: str) -> Architecture:
    """The architecture `model.architecture` names (validated before: unknown is a bug)."""
    return ARCHITECTURES[name]


__all__ = ["ARCHITECTURES", "NAMES", "Architecture", "get"]
