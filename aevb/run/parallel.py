"""Data parallelism over every visible device, on one host or many, with `jax.sharding`.

One `Mesh` with a single `data` axis spans all devices of all processes. Parameters,
optimizer state and the (MNIST-sized) datasets are replicated on every device; each
training batch is sharded along `data`, so every device gathers and processes its own
slice of the global batch, and the compiler inserts the gradient all-reduce of the
global-view `jax.jit` step. No `pmap`.

Multi-host: `initialize_distributed()` joins the processes (a TPU pod slice or SLURM
environment is detected by `jax.distributed.initialize()` itself; elsewhere pass the
coordinator address, process count and id). Every process then builds the same global
arrays from its local copy of the data with `jax.make_array_from_process_local_data`.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from aevb.config.checks import ConfigError

DATA_AXIS = "data"


def initialize_distributed(coordinator_address: str = "", num_processes: int = 0,
                           process_id: int = -1) -> None:
    """Joins a multi-process run; empty arguments let JAX read them from the environment."""
    kwargs: dict[str, Any] = {}
    if coordinator_address:
        kwargs["coordinator_address"] = coordinator_address
    if num_processes:
        kwargs["num_processes"] = num_processes
    if process_id >= 0:
        kwargs["process_id"] = process_id
    jax.distributed.initialize(**kwargs)


def make_mesh() -> Mesh:
    """A 1-D mesh named `data` over every device of every process.

    Auto axis: the compiler propagates shardings from the constraints on each batch.
    """
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,),
                         axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Leading (batch) axis split over the `data` axis, the rest whole."""
    return NamedSharding(mesh, P(DATA_AXIS))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Puts every array of `tree` on every device of the mesh, whole.

    Each process passes its own full copy (the same values in every process), which is
    what `make_array_from_process_local_data` expects for a replicated sharding.
    """
    sharding = replicated(mesh)
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def shard_batch(x: jax.Array, mesh: Mesh | None) -> jax.Array:
    """Inside jit: asks for x [B, ...] split along `data` (a no-op without a mesh).

    Requires B divisible by the device count; callers with other sizes leave x as it is.
    """
    if mesh is None or x.shape[0] % mesh.size:
        return x
    return jax.lax.with_sharding_constraint(x, batch_sharded(mesh))


def fetch(tree: Any) -> Any:
    """Global arrays -> numpy on this host, in every process.

    Replicated arrays are read from a local copy (no communication); arrays sharded over
    several processes are gathered with `process_allgather`.
    """
    def one(x):
        if not isinstance(x, jax.Array) or x.is_fully_addressable:
            return np.asarray(x)
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return jax.tree.map(one, tree)


def describe_devices() -> str:
    """', 8 devices in 2 processes' when there is more than one device, else ''."""
    if jax.device_count() == 1:
        return ""
    return f", {jax.device_count()} devices in {jax.process_count()} processes"


def barrier(name: str) -> None:
    """Waits until every process has reached the barrier `name` (no-op in one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def process_0_says(value: bool) -> bool:
    """Process 0's `value`, in every process (a process's own value when it is alone)."""
    if jax.process_count() == 1:
        return value
    return bool(multihost_utils.broadcast_one_to_all(np.asarray(value)))


def check_batch_divisible(batch_size: int, field: str) -> None:
    """A global batch must split evenly over the devices; raises ConfigError otherwise."""
    n = jax.device_count()
    if batch_size % n:
        raise ConfigError(
            f"config field {field}={batch_size} is not allowed: must be divisible by the "
            f"number of devices ({n}), so that every device gets an equal slice")
