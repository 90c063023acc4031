"""The model boundary: a compiled program holds structure, never a user's arrays.

An eager (un-jitted) call of :func:`dpm_jax.sample` turns the model function the
solvers call, ``M(x, t, t_input, alpha, sigma)``, into a :class:`Bound`: a traced
:class:`Program` (its jaxpr with every array taken out, compared and hashed by its
structure) and the arrays it reads, as a list of arguments. The arrays are found in
three places:

1. the documented containers: a :class:`~dpm_jax.WrappedModel`'s conditions, guidance
   scale and keyword arguments, and the thresholding values (all leaves, Python numbers
   included, so a new guidance scale does not recompile);
2. the structure of the network itself (:func:`split`): a flax ``nnx.Module`` (through
   ``nnx.split``: its state is read at *this* call, so in-place updates and
   ``train()`` / ``eval()`` are seen), a pytree module (equinox, ``jax.tree_util.Partial``),
   ``functools.partial`` and bound methods;
3. anything else the function reads, closures and globals included: tracing the
   function lifts every array it touches into the jaxpr's constants, which become
   arguments too.

The executor is compiled with the :class:`Bound` as an argument (its program static),
so a new checkpoint of the same shapes reuses the compiled program and is used, large
weights are never constants of the program, and no cache keeps a user's array alive.
A trace is itself cached (by the network's structure and the avals) only when it read
no array outside (1) and (2): a function closing over arrays is traced again at every
call, which reads the arrays as they are then.

Python numbers and other non-array values a function reads are compiled in, as under
``jax.jit``.
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from jax.extend import core as jex_core

__all__ = ["Program", "Bound", "bind", "split", "is_traced", "clear_caches"]

_TRACE_CACHE_SIZE = 256
_TRACES: collections.OrderedDict = collections.OrderedDict()
_LOCK = threading.Lock()
#: Number of times a function was traced by :func:`bind` (for tests and benchmarks).
TRACE_COUNT = [0]


def is_traced(*trees) -> bool:
    """Whether any leaf is a tracer (we are inside jit / vmap / grad of the caller)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(trees))


def _is_array(v) -> bool:
    return isinstance(v, (jax.Array, np.ndarray, np.generic, jax.core.Tracer))


class _Same:
    """A key part that compares by identity (holding the object, so its id stays unique)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __eq__(self, other):
        return isinstance(other, _Same) and other.obj is self.obj

    def __hash__(self):
        return id(self.obj)


def _static(obj):
    """``obj`` as part of a cache key: by value if hashable, else by identity."""
    try:
        hash(obj)
    except TypeError:
        return _Same(obj)
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType)):
        return obj  # functions hash and compare by identity already
    return (type(obj), obj)


def _nnx():
    mod = sys.modules.get("flax.nnx")
    return mod if mod is not None and hasattr(mod, "Module") else None


def split(obj, leaves: list) -> tuple[Any, Callable[[list], Any]]:
    """Takes the arrays out of a network-like object.

    Appends the arrays ``obj`` holds to ``leaves`` and returns ``(key, rebuild)``:
    ``key`` describes everything else (hashable unless an unhashable value is held,
    which makes it compare by identity), and ``rebuild(values)`` makes the same object
    with ``values[i]`` in place of ``leaves[i]`` (tracers, inside a trace).
    """
    if _is_array(obj):
        i = len(leaves)
        leaves.append(obj)
        return ("array",), lambda values: values[i]
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return (type(obj), obj), lambda values: obj
    nnx = _nnx()
    if nnx is not None and isinstance(obj, nnx.Module):
        graphdef, state = nnx.split(obj)
        key, rebuild = split_tree(state, leaves)
        return ("nnx", graphdef, key), lambda values: nnx.merge(graphdef, rebuild(values))
    if isinstance(obj, types.MethodType):
        key, rebuild = split(obj.__self__, leaves)
        func = obj.__func__
        return ("method", func, key), lambda values: types.MethodType(func, rebuild(values))
    if isinstance(obj, functools.partial):
        fkey, frb = split(obj.func, leaves)
        akey, arb = split_tree((obj.args, obj.keywords), leaves)

        def rebuild_partial(values):
            args, kwargs = arb(values)
            return functools.partial(frb(values), *args, **kwargs)

        return ("partial", fkey, akey), rebuild_partial
    treedef = jax.tree_util.tree_structure(obj)
    if not jax.tree_util.treedef_is_leaf(treedef):
        return split_tree(obj, leaves)  # a pytree: equinox modules, Partial, containers
    return ("object", _static(obj)), lambda values: obj


def split_tree(tree, leaves: list) -> tuple[Any, Callable[[list], Any]]:
    """:func:`split` of every leaf of a pytree (non-array leaves become part of the key)."""
    flat, treedef = jax.tree_util.tree_flatten(tree)
    parts = [split(leaf, leaves) for leaf in flat]
    keys = tuple(k for k, _ in parts)

    def rebuild(values):
        return jax.tree_util.tree_unflatten(treedef, [rb(values) for _, rb in parts])

    return ("tree", _static(treedef), keys), rebuild


# --------------------------------------------------------------------------- programs


def _literal(v):
    try:
        hash(v.val)
        return ("lit", v.val, v.aval)
    except TypeError:
        val = np.asarray(v.val)
        return ("lit", val.dtype.str, val.shape, val.tobytes(), v.aval)


def _fingerprint(jaxpr) -> tuple:
    """A hashable description of a jaxpr that equal programs share: primitives, avals,
    parameters (compared by value; they are hashable by JAX's contract), the variables'
    wiring, and nested jaxprs recursively. The arrays held by a nested closed jaxpr (a
    ``jax.jit`` inside the network closing over arrays) compare by identity."""

    def walk(j):
        ids: dict = {}

        def var(v):
            if isinstance(v, jex_core.Literal):
                return _literal(v)
            k = ids.get(v)
            if k is None:
                k = ids[v] = len(ids)
                return (k, v.aval)
            return k

        def param(p):
            if isinstance(p, jex_core.ClosedJaxpr):
                return ("closed", walk(p.jaxpr), tuple(_Same(c) for c in p.consts))
            if isinstance(p, jex_core.Jaxpr):
                return ("jaxpr", walk(p))
            if isinstance(p, (tuple, list)):
                return tuple(param(q) for q in p)
            return _static(p)

        eqns = tuple(
            (
                e.primitive,
                tuple(var(v) for v in e.invars),
                tuple(var(v) for v in e.outvars),
                tuple((k, param(v)) for k, v in e.params.items()),
            )
            for e in j.eqns
        )
        return (
            tuple(var(v) for v in j.constvars),
            tuple(var(v) for v in j.invars),
            eqns,
            tuple(var(v) for v in j.outvars),
        )

    return walk(jaxpr)


class Program:
    """A traced function without its constants (static: hashed and compared by structure).

    ``jaxpr`` takes ``n_args`` array arguments (the network's arrays, then the
    constants the trace found) followed by the call's inputs, and returns the
    flattened output of tree ``out_tree``.
    """

    __slots__ = ("jaxpr", "out_tree", "key", "_hash", "batched")

    def __init__(self, jaxpr, out_tree, batched: tuple = ()):
        self.jaxpr = jaxpr
        self.out_tree = out_tree
        self.batched = batched
        self.key = (_fingerprint(jaxpr), out_tree, batched)
        self._hash = hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Program) and (other is self or other.key == self.key)

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"Program({len(self.jaxpr.eqns)} equations, {len(self.jaxpr.invars)} inputs)"


class Bound:
    """A :class:`Program` with its array arguments: callable like the traced function.

    A pytree (the arguments are its leaves, the program its static part), so it
    passes into ``jax.jit`` as an argument: the compiled executor is cached by the
    program's structure, and the arrays are inputs of every call."""

    __slots__ = ("program", "args")

    def __init__(self, program: Program, args):
        self.program = program
        self.args = tuple(args)

    def __call__(self, *inputs):
        flat = jax.tree_util.tree_leaves(inputs)
        jaxpr = self.program.jaxpr
        out = jex_core.jaxpr_as_fun(jex_core.ClosedJaxpr(jaxpr, []))(*self.args, *flat)
        return jax.tree_util.tree_unflatten(self.program.out_tree, out)


jax.tree_util.register_pytree_node(
    Bound, lambda b: (b.args, b.program), lambda program, args: Bound(program, args)
)


def _aval_key(v):
    if isinstance(v, jax.core.Tracer):
        return None
    if isinstance(v, jax.ShapeDtypeStruct):
        return jax.core.ShapedArray(v.shape, v.dtype)
    return jax.typeof(v)


def bind(
    fn: Callable, network: Any, data: Any, inputs: tuple, batched: Any = None, cache: bool = True
) -> Bound:
    """``fn(network, data, *inputs)`` as a :class:`Bound`, traced at the avals of ``inputs``.

    ``network`` is taken apart by :func:`split` (its arrays become arguments, the rest
    is structure); every leaf of ``data`` is an argument (numbers included). The trace
    is cached by (structure, avals) when it found no other array; otherwise the arrays
    it found (closures, globals) are arguments too and the next call traces again.
    ``batched``: a pytree of bools like ``data``, marking per-sample leaves (for the
    sharded sampler's specs; network arrays and constants are never batched).
    ``cache=False``: never keep the trace (for a ``fn`` made afresh at every call).
    """
    leaves: list = []
    net_key, rebuild = split(network, leaves)
    n_net = len(leaves)
    data_flat, data_tree = jax.tree_util.tree_flatten(data)
    data_batched = (
        (False,) * len(data_flat)
        if batched is None
        else tuple(bool(b) for b in jax.tree_util.tree_leaves(batched))
    )
    args = leaves + data_flat
    in_flat, in_tree = jax.tree_util.tree_flatten(inputs)
    avals = tuple(_aval_key(v) for v in (*args, *in_flat))
    cache_key: Any = None
    if cache and None not in avals:
        cache_key = (net_key, data_tree, in_tree, avals, _static(fn), data_batched)
        try:
            hash(cache_key)
        except TypeError:
            cache_key = None
    program = None
    if cache_key is not None:
        with _LOCK:
            program = _TRACES.get(cache_key)
            if program is not None:
                _TRACES.move_to_end(cache_key)
    if program is not None:
        return Bound(program, args)

    def flat_fn(*values):
        net_vals = list(values[:n_net])
        data_vals = jax.tree_util.tree_unflatten(data_tree, values[n_net : len(args)])
        return fn(
            rebuild(net_vals),
            data_vals,
            *jax.tree_util.tree_unflatten(in_tree, values[len(args) :]),
        )

    TRACE_COUNT[0] += 1
    closed, out_shape = jax.make_jaxpr(flat_fn, return_shape=True)(*args, *in_flat)
    consts = list(closed.consts)
    jaxpr = closed.jaxpr
    if consts:  # arrays read from closures: arguments, placed after the known ones
        jaxpr = _consts_as_args(jaxpr, len(args))
    mask = (False,) * n_net + data_batched + (False,) * len(consts)
    program = Program(jaxpr, jax.tree_util.tree_structure(out_shape), mask)
    if cache_key is not None and not consts:
        with _LOCK:
            _TRACES[cache_key] = program
            while len(_TRACES) > _TRACE_CACHE_SIZE:
                _TRACES.popitem(last=False)
    return Bound(program, args + consts)


def _consts_as_args(jaxpr, position: int):
    """The jaxpr with its constant variables moved into its inputs at ``position``."""
    invars = list(jaxpr.invars)
    return jaxpr.replace(
        constvars=[], invars=invars[:position] + list(jaxpr.constvars) + invars[position:]
    )


@jax.jit
def call(bound: Bound, *inputs):
    """Runs a :class:`Bound` compiled (cached by its program's structure and the avals)."""
    return bound(*inputs)


def clear_caches() -> None:
    """Empties the trace cache (compiled programs stay in ``jax.jit``'s caches)."""
    with _LOCK:
        _TRACES.clear()
