"""The options are defined once (SolverOptions), validated once, and the public
signatures match that definition."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import _checks, _options, schedules
from dpm_jax._algorithm import ALGORITHMS
from dpm_jax._options import OPTION_NAMES, SolverOptions
from dpm_jax.plan import grids

SCHED = schedules.vp_linear()
MODEL = dpm_jax.model_wrapper(lambda x, t: 0.1 * x, SCHED)
X = jnp.ones((2, 3))
NOT_OPTIONS = {"model", "x_T", "x", "noise_schedule", "key", "_batch_axis", "solver", "grid"}


def _defaults():
    return {f.name: f.default for f in dataclasses.fields(SolverOptions)}


@pytest.mark.parametrize("fn", [dpm_jax.sample, dpm_jax.inverse])
def test_sample_and_inverse_signatures_match_the_options(fn):
    params = inspect.signature(fn).parameters
    opts = {k: p for k, p in params.items() if k not in NOT_OPTIONS}
    assert tuple(opts) == OPTION_NAMES  # same names, same order
    for name, p in opts.items():
        assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
        assert p.default == _defaults()[name] and type(p.default) is type(_defaults()[name]), name


def test_build_plan_signature_is_a_subset_with_the_same_defaults():
    params = inspect.signature(dpm_jax.build_plan).parameters
    for name, p in params.items():
        if name in ("schedule", "options", "solver", "grid"):
            continue
        assert name in OPTION_NAMES and p.default == _defaults()[name], name


def test_execute_plan_options_have_the_same_defaults():
    params = inspect.signature(dpm_jax.execute_plan).parameters
    for name, p in params.items():
        if name in ("model", "x", "plan", "key", "_shard_axis"):
            continue
        assert p.default == _defaults()[name], name


def test_literal_types_list_the_allowed_values():
    hints = typing.get_type_hints(SolverOptions)

    def args(name):
        out = []
        for a in typing.get_args(hints[name]):
            out.extend(typing.get_args(a) if typing.get_origin(a) is typing.Literal else [a])
        return tuple(a for a in out if a is not type(None)) or typing.get_args(hints[name])

    assert hints["method"] is str  # its values: the registry's (registry.methods())
    assert set(args("algorithm_type")) == set(ALGORITHMS)
    assert set(args("skip_type")) == set(grids.SKIP_TYPES)
    assert set(args("solver_type")) == set(_options.SOLVER_TYPES)
    assert set(args("multistep3_variant")) == set(_options.MULTISTEP3_VARIANTS)
    assert set(args("unipc_variant")) == set(_options.UNIPC_VARIANTS)
    assert set(args("final_sigmas_type")) == set(_options.FINAL_SIGMAS_TYPES)
    assert set(args("error_norm")) == set(_options.ERROR_NORMS)


def test_mapping_holds_what_differs_from_the_defaults():
    assert dict(SolverOptions()) == {} and len(SolverOptions()) == 0
    o = SolverOptions(order=3, method="unipc", lower_order_final=True)
    assert dict(o) == {"order": 3, "method": "unipc"}
    assert o["lower_order_final"] is True and o == {"order": 3, "method": "unipc"}
    with pytest.raises(KeyError):
        o["no_such_option"]
    a = dpm_jax.sample(MODEL, X, SCHED, steps=6, **o)
    b = dpm_jax.sample(MODEL, X, SCHED, steps=6, order=3, method="unipc")
    np.testing.assert_array_equal(a, b)


def test_frozen_and_replace_validates():
    o = SolverOptions(order=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.order = 2  # type: ignore[misc]
    assert o.replace(order=1).order == 1 and o.order == 3
    with pytest.raises(ValueError, match="order"):
        o.replace(order=7)
    with pytest.raises(TypeError, match="order"):
        SolverOptions(order=2.0)


def test_algorithm_type_is_parsed_in_one_place():
    table = {
        a: (o.algorithm.data, o.algorithm.stochastic)
        for a in ALGORITHMS
        for o in [SolverOptions(algorithm_type=a)]
    }
    assert table == {
        "dpmsolver": (False, False),
        "dpmsolver++": (True, False),
        "sde-dpmsolver": (False, True),
        "sde-dpmsolver++": (True, True),
    }
    plan = dpm_jax.build_plan(SCHED, steps=4, algorithm_type="sde-dpmsolver++")
    assert plan.data_prediction and plan.stochastic


def test_explicit_grid_options():
    o = SolverOptions(timesteps=[1.0, 0.5, 0.1])
    assert o.explicit_grid == "timesteps" and o.num_steps == 2
    assert o.timesteps.dtype == np.float64 and not o.timesteps.flags.writeable
    assert SolverOptions(sigmas=(80.0, 1.0, 0.0)).explicit_grid == "sigmas"
    assert SolverOptions().num_steps == 20 and SolverOptions(steps=7).num_steps == 7


def test_from_diffusers_config_returns_the_options_type():
    setup = dpm_jax.from_diffusers_config(
        {"_class_name": "UniPCMultistepScheduler", "solver_order": 3}
    )
    assert isinstance(setup.options, SolverOptions)
    assert setup.options.method == "unipc" and setup.options["order"] == 3
    assert dict(setup.options)["final_sigmas_type"] == "zero"


def test_validated_once_per_call(monkeypatch):
    counts = {"validate": 0, "times": 0}
    validate, check_times = _options._validate, _checks.check_times

    def counting_validate(o):
        counts["validate"] += 1
        validate(o)

    def counting_times(*a, **k):
        counts["times"] += 1
        return check_times(*a, **k)

    monkeypatch.setattr(_options, "_validate", counting_validate)
    monkeypatch.setattr(_checks, "check_times", counting_times)
    dpm_jax.sample(MODEL, X, SCHED, steps=5, correcting_x0_fn="dynamic_thresholding")
    assert counts == {"validate": 1, "times": 1}
    counts.update(validate=0, times=0)
    dpm_jax.sample(MODEL, X, SCHED, method="adaptive")
    assert counts == {"validate": 1, "times": 1}


def test_return_intermediate_needs_return_info():
    with pytest.raises(ValueError, match="return_info"):
        dpm_jax.sample(MODEL, X, SCHED, steps=4, return_intermediate=True)
    _, info = dpm_jax.sample(MODEL, X, SCHED, steps=4, return_intermediate=True, return_info=True)
    assert info.intermediates.shape == (5, 2, 3)
