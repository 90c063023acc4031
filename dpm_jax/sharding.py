"""Data-parallel sampling over many devices with ``jax.sharding``.

Sampling is independent per sample, so a batch split over devices needs no
communication: the plan (a few hundred scalars) is replicated and every device
integrates its own slice. Two recipes:

1. ``jit`` with a sharded input (XLA partitions the compiled loop):

   >>> import jax, jax.numpy as jnp, numpy as np
   >>> import dpm_jax
   >>> from dpm_jax import sharding
   >>> mesh = sharding.batch_mesh()                   # all devices, axis "batch"
   >>> sched = dpm_jax.schedules.vp_linear()
   >>> model = dpm_jax.model_wrapper(lambda x, t: 0.1 * x, sched)
   >>> x_T = sharding.shard_batch(jnp.ones((8, 4)), mesh)
   >>> x0 = jax.jit(lambda x: dpm_jax.sample(model, x, sched, steps=5))(x_T)
   >>> x0.sharding.is_equivalent_to(x_T.sharding, 2)
   True

2. ``shard_map`` (:func:`sample_sharded`): each device runs the sampler on its
   local slice, with the guidance batch doubled locally and, for the adaptive
   solver, either the reference's batch-coupled error norm (one ``pmax`` per
   attempt) or independent per-sample steps (no communication at all).

``jax.make_mesh`` creates meshes with *explicit* axes by default, under which
``shard_map`` rejects inputs that were not placed on the mesh; :func:`batch_mesh`
builds a mesh with automatic axes and :func:`shard_batch` places arrays, so both
recipes work with inputs from :func:`shard_batch`. ``jax.pmap`` still works
(``jax.pmap(lambda x: dpm_jax.sample(model, x, sched))`` over a leading device
axis) but is in maintenance mode; prefer the two recipes above.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dpm_jax._model import WrappedModel
from dpm_jax._sample import sample

__all__ = ["batch_mesh", "shard_batch", "replicate", "sample_sharded"]


def batch_mesh(devices=None, axis_name: str = "batch") -> Mesh:
    """A 1-D mesh over ``devices`` (default: all) with one automatic axis."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("batch_mesh(): `devices` is empty.")
    return Mesh(np.asarray(devices), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,))


def _check_axis(mesh: Mesh, axis_name: str) -> int:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"`mesh` must be a jax.sharding.Mesh, got {type(mesh).__name__}.")
    if axis_name not in mesh.axis_names:
        raise ValueError(f"`axis_name` {axis_name!r} is not an axis of the mesh {mesh.axis_names}.")
    return mesh.shape[axis_name]


def shard_batch(tree: Any, mesh: Mesh, axis_name: str = "batch"):
    """Places every array of ``tree`` with its leading (batch) axis split over ``axis_name``."""
    n = _check_axis(mesh, axis_name)

    def put(a):
        if np.ndim(a) < 1 or np.shape(a)[0] % n:
            raise ValueError(
                f"shard_batch(): the leading axis ({np.shape(a)[:1]}) must be a multiple "
                f"of the {n} devices of mesh axis {axis_name!r}."
            )
        return jax.device_put(a, NamedSharding(mesh, P(axis_name)))

    return jax.tree_util.tree_map(put, tree)


def replicate(tree: Any, mesh: Mesh):
    """Places every array of ``tree`` on all devices of the mesh."""
    return jax.tree_util.tree_map(lambda a: jax.device_put(a, NamedSharding(mesh, P())), tree)


def _model_specs(model, axis_name: str):
    """The model's shard_map specs: conditions are batched (split), every other leaf is
    replicated. Built from the model itself with ``dataclasses.replace``, so its static
    fields (whatever they are) carry over unchanged."""
    if not isinstance(model, WrappedModel):
        return None
    replicated = jax.tree_util.tree_map(lambda _: P(), model)
    batched = lambda tree: jax.tree_util.tree_map(lambda _: P(axis_name), tree)
    return dataclasses.replace(
        replicated,
        condition=batched(model.condition),
        unconditional_condition=batched(model.unconditional_condition),
    )


def sample_sharded(model, x_T, noise_schedule, mesh: Mesh, axis_name: str = "batch", **options):
    """:func:`dpm_jax.sample` under ``shard_map``: each device samples its slice of the batch.

    ``x_T`` and the model's conditions are split over ``axis_name``; the result
    is split the same way. With ``method="adaptive"``, ``error_norm="batch"``
    (the default, as the reference) takes the max of the error over the whole
    batch with one ``pmax`` per attempt, so the result equals the unsharded run;
    ``error_norm="per_sample"`` needs no communication. ``info.nfe`` is per
    device for the adaptive solver (all equal with ``error_norm="batch"``).
    Wrap the call in ``jax.jit`` to compile it once.
    """
    n = _check_axis(mesh, axis_name)
    if np.shape(x_T)[0] % n:
        raise ValueError(
            f"`x_T`'s batch {np.shape(x_T)[0]} must be a multiple of the {n} devices "
            f"of mesh axis {axis_name!r}."
        )
    return_info = options.pop("return_info", False)
    adaptive = options.get("method") == "adaptive"
    per_sample = options.get("error_norm", "batch") == "per_sample"

    def local(model, x):
        x0, info = sample(
            model, x, noise_schedule, return_info=True, _batch_axis=axis_name, **options
        )
        nfe = info.nfe
        if adaptive and not per_sample:
            nfe = nfe[None]  # one value per device
        return x0, (nfe, info.intermediates)

    nfe_spec = P(axis_name) if adaptive else P()
    inter_spec = P(None, axis_name) if options.get("return_intermediate") else P()
    fn = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(_model_specs(model, axis_name), P(axis_name)),
        out_specs=(P(axis_name), (nfe_spec, inter_spec)),
        check_vma=False,
    )
    x0, (nfe, inter) = fn(model, x_T)
    if not return_info:
        return x0
    from dpm_jax._executor import SampleInfo

    return x0, SampleInfo(nfe=nfe, intermediates=inter)
