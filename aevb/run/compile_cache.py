"""JAX's persistent compilation cache, so that a rerun or a resume does not compile again.

`enable(directory)` points JAX at an on-disk cache of compiled programs (XLA executables,
keyed by the program, the devices and the JAX version). The first run of a config compiles
and stores its epoch, evaluation and picture programs; a rerun, a resume or a sweep trial
of the same shapes loads them instead (on this 2-core CPU the default VAE's epoch: 1.1 s to
compile, 0.2 s to load). `launch.py` enables it by default in `default_directory()`;
`--compilation_cache=` (empty) turns it off.
"""

from __future__ import annotations

import os

import jax


def default_directory() -> str:
    """`$XDG_CACHE_HOME/aevb/jax`, by default `~/.cache/aevb/jax`."""
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "aevb", "jax")


def enable(directory: str) -> None:
    """Caches every compiled program in `directory` (created), however short its compile."""
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
