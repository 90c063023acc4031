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

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from dpm_jax import _boundary
from dpm_jax._executor import SampleInfo, _parts, _rebuilt, as_model, is_traced
from dpm_jax._model import WrappedModel
from dpm_jax._options import SolverOptions
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


def _auto_axes(mesh: Mesh) -> Mesh:
    """The mesh with automatic axes (``jax.make_mesh`` makes *explicit* ones by default,
    under which ``shard_map`` refuses inputs that were not placed on the mesh)."""
    auto = jax.sharding.AxisType.Auto
    types = getattr(mesh, "axis_types", None)
    if types is None or all(t == auto for t in types):
        return mesh
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(auto,) * len(mesh.axis_names))


def _is_key_batch(key, b: int) -> bool:
    if key is None:
        return False
    typed = jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)
    return np.ndim(key) == (1 if typed else 2) and np.shape(key)[0] == b


def sample_sharded(
    model,
    x_T,
    noise_schedule,
    mesh: Mesh,
    axis_name: str = "batch",
    *,
    key: Any = None,
    **options,
):
    """:func:`dpm_jax.sample` under ``shard_map``: each device samples its slice of the batch.

    ``x_T`` is split over ``axis_name`` and so is everything of the model that belongs
    to a sample: the conditions (``condition``, ``unconditional_condition``), the arrays
    of ``model_kwargs`` / ``classifier_kwargs`` whose leading dimension is the batch
    size, and a batch of per-sample keys; the network's weights and everything else are
    replicated. The result is split the same way and equals :func:`dpm_jax.sample` on
    one device with the same inputs, for every method: the guidance batch is doubled
    locally, and the stochastic solvers draw sample n's noise from its own key (one of
    a batch of keys, or ``fold_in(key, n)`` with n the sample's index in the whole
    batch), so the noise does not depend on the number of devices. With
    ``method="adaptive"``, ``error_norm="batch"`` (the default, as the reference) takes
    the max of the error over the whole batch with one ``pmax`` per attempt;
    ``error_norm="per_sample"`` needs no communication. ``info.nfe`` is per device for
    the adaptive solver (all equal with ``error_norm="batch"``).

    ``mesh`` may come from :func:`batch_mesh` or ``jax.make_mesh`` (explicit axes are
    used as automatic ones). Called eagerly, the program is compiled once per structure
    (the model's arrays are its arguments); under ``jax.jit`` it is part of the caller's
    program.
    """
    n = _check_axis(mesh, axis_name)
    mesh = _auto_axes(mesh)
    b = int(np.shape(x_T)[0]) if np.ndim(x_T) else 0
    if np.ndim(x_T) < 1 or b % n:
        raise ValueError(
            f"`x_T`'s batch {np.shape(x_T)[:1]} must be a multiple of the {n} devices "
            f"of mesh axis {axis_name!r}."
        )
    return_info = options.pop("return_info", False)
    for name in ("_batch_axis",):
        if name in options:
            raise TypeError(f"sample_sharded() got an unexpected keyword argument {name!r}")
    SolverOptions(**options)  # checked before anything is traced
    model = as_model(model)
    if isinstance(model, WrappedModel) and model.guidance_type != "uncond":
        model.check_batch(jnp.zeros((b,)))
    if key is not None:
        key = jax.numpy.asarray(key) if not isinstance(key, jax.Array) else key
    key_spec = P(axis_name) if _is_key_batch(key, b) else P()
    adaptive = options.get("method") == "adaptive"
    per_sample = options.get("error_norm", "batch") == "per_sample"
    network, data, batched = _parts(model, None, (), b)
    data_specs = jax.tree_util.tree_map(lambda x: P(axis_name) if x else P(), batched)

    def whole(network, data, x, key):
        def local(data, x, key):
            m, _, _ = _rebuilt(network, data)
            x0, info = sample(
                m,
                x,
                noise_schedule,
                key=key,
                return_info=True,
                _batch_axis=axis_name,
                **options,
            )
            nfe, status = info.nfe, info.status
            if adaptive and not per_sample:
                nfe, status = nfe[None], status[None]  # one value per device
            return x0, (nfe, info.intermediates, status)

        nfe_spec = P(axis_name) if adaptive else P()
        inter_spec = P(None, axis_name) if options.get("return_intermediate") else P()
        status_spec = P(axis_name) if adaptive or options.get("check_finite") else P()
        return jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(data_specs, P(axis_name), key_spec),
            out_specs=(P(axis_name), (nfe_spec, inter_spec, status_spec)),
            check_vma=False,
        )(data, x, key)

    bound = None
    if not is_traced(x_T, data, key):
        bound = _boundary.bind(whole, network, data, (x_T, key), cache=False)
        if is_traced(bound.args):
            bound = None
    if bound is None:
        x0, (nfe, inter, status) = whole(network, data, x_T, key)
    else:
        x0, (nfe, inter, status) = _boundary.call(bound, x_T, key)
    if not return_info:
        return x0
    return x0, SampleInfo(nfe=nfe, intermediates=inter, status=status)
