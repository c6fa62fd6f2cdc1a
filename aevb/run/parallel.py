"""Data parallelism over every visible device, on one host or many, with `jax.sharding`.

One `Mesh` with a single `data` axis spans all devices of all processes. Parameters,
optimizer state and the evaluation sets are replicated on every device; the training set is
split over the devices by rows (`shard_rows`), each device holding 1/devices of it; each
training batch is gathered from the rows' holders (an all-reduce of its rows) and sharded
along `data`, so every device processes its own slice of the global batch, and the compiler
inserts the gradient all-reduce of the global-view `jax.jit` step. No `pmap`.

Multi-host: `initialize_distributed()` joins the processes (a TPU pod slice or SLURM
environment is detected by `jax.distributed.initialize()` itself; elsewhere pass the
coordinator address, process count and id). Every process builds the same global arrays
with `jax.make_array_from_process_local_data`: from its copy of the replicated ones, and
from only its own rows of the training set (`row_block`), which is all it keeps of it.
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


def _process_block(num_rows: int, mesh: Mesh) -> tuple[int, int, int]:
    """(start, stop, padded): the rows of the padded set this process's devices hold."""
    padded = -(-num_rows // mesh.size) * mesh.size
    slices = [range(*index[0].indices(padded)) for index in NamedSharding(
        mesh, P(DATA_AXIS)).addressable_devices_indices_map((padded,)).values()]
    start, stop = min(s.start for s in slices), max(s.stop for s in slices)
    if sum(len(s) for s in slices) != stop - start:
        raise RuntimeError(f"process {jax.process_index()}'s devices hold rows that are not "
                           f"contiguous in the mesh: {sorted((s.start, s.stop) for s in slices)}")
    return start, stop, padded


def row_block(num_rows: int, mesh: Mesh) -> slice:
    """The rows of a training set of `num_rows` rows that this process holds once
    `shard_rows` has split it over `data`.

    The rows are padded to a multiple of the device count and device d of the mesh holds
    the d-th block of padded / devices rows. A process's devices are contiguous in the mesh
    (`jax.make_mesh` orders devices by process), so its rows are one slice.
    """
    start, stop, _ = _process_block(num_rows, mesh)
    return slice(min(start, num_rows), min(stop, num_rows))


def shard_rows(rows: np.ndarray, first_row: int, num_rows: int, mesh: Mesh) -> jax.Array:
    """The training set [padded, ...] as one global array split over `data` by rows: each
    device holds its block, and each process passes only its own rows (`row_block`).

    `rows` are rows first_row.. of the `num_rows`-row set (all of them, or this process's
    share). The padding rows are zeros on the last devices, and an epoch never draws them
    (`epoch_function`'s `num_examples`). Inside jit, `x[indices]` on this array compiles to a
    gather of each device's own rows and an all-reduce of the batch over the devices (a row
    lives on one device): a batch of traffic per step, against the whole set on every
    device when it is replicated.
    """
    start, stop, padded = _process_block(num_rows, mesh)
    real = row_block(num_rows, mesh)
    if real.start < first_row or real.stop > first_row + rows.shape[0]:
        raise ValueError(f"this process needs rows {real.start}..{real.stop} of the training "
                         f"set; it was given rows {first_row}..{first_row + rows.shape[0]}")
    local = np.asarray(rows[real.start - first_row:real.stop - first_row])
    if real.stop - real.start < stop - start:  # the padding, on the last process's devices
        pad = np.zeros((stop - start - (real.stop - real.start), *rows.shape[1:]), rows.dtype)
        local = np.concatenate([local, pad])
    return jax.make_array_from_process_local_data(batch_sharded(mesh), local,
                                                  (padded, *rows.shape[1:]))


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
