"""Test configuration.

* 8 virtual CPU devices (``chex.set_n_cpu_devices``, before jax starts its
  backend), for the sharding tests; unsharded computations run on device 0 as usual.
* float64 is enabled for the whole suite. Tests that check float32 behaviour
  pass float32 arrays explicitly (the library follows the dtype of the state),
  so x64 being on also guards against silent promotion to float64.
* Under ``-n``, each file's tests go to one worker (``pytest_configure`` below).
* The ``slow`` marker (``SLOW`` below, set in one place): the long golden sets beyond a
  sample of them, the heavy grid fits, the randomized API sweep, the notebook and the
  two-process run. The README's command leaves them out (``-m "not slow"`` in
  ``pyproject.toml``); CI runs them too (``python -m pytest -q -n auto -m slow``).
"""

import re

import chex
import jax

chex.set_n_cpu_devices(8)

jax.config.update("jax_enable_x64", True)


def pytest_configure(config):
    """Under ``-n`` (pytest-xdist), send each file's tests to one worker (``--dist
    loadfile``) unless another mode was asked for: tests of a file share compiled programs
    (same shapes, same models), which spread over the workers would each compile again
    (the suite takes a quarter less time on 2 cores)."""
    if getattr(config.option, "numprocesses", None) and config.option.dist == "load":
        if "--dist" not in " ".join(config.invocation_params.args):
            config.option.dist = "loadfile"


#: Tests marked ``slow`` (node ids matched from the start, after ``tests/``). Of the
#: parametrized golden runs (and the other long parametrized sweeps in ``GOLDEN``), every
#: ``GOLDEN_SAMPLE``-th stays in the fast suite.
SLOW = (
    "api/test_random_api.py",
    "api/test_options_used.py::test_every_option_is_used_or_refused",
    "executor/test_step_api.py::test_hand_loop_equals_sample_every_method_algorithm_model_type",
    "v3/test_ems.py::test_point_statistics_converge_to_the_oracle_as_one_over_sqrt_k",
    "v3/test_ems.py::test_point_functions_eager_and_under_jit",
    "v3/test_ems.py::test_batching_does_not_change_the_statistics",
    "v3/test_ems.py::test_float32_data_gives_float32_statistics",
    "v3/test_ems_ode.py::test_batching_and_dtype_along_the_ode",
    "v3/test_ems_ode.py::test_the_time_difference_ignores_what_the_autodiff_derivative_sees",
    "docs/test_docs.py::test_page_code_runs[time-grids.md]",
    "docs/test_docs.py::test_page_code_runs[editing.md]",
    "solvers/test_adaptive.py::test_default_tolerances_are_accurate_on_every_schedule_family",
    "demo/test_digits.py::test_demo_writes_png",  # (CI's wheel stage runs the demo too)
    "optimize/test_optimize.py::test_progress_bar_shows_the_loss",
    "optimize/test_optimize.py::test_ld3_gradient_matches_finite_differences",
    "demo/test_notebook.py",
    "executor/test_multihost.py",
    "plan/test_plan_freeze.py::test_plans_do_not_depend_on_the_blas_kernel",
    "optimize/test_optimize.py::test_every_objective_gives_a_valid_grid_that_samples",
    "optimize/test_optimize.py::test_image_shaped_states",
    "optimize/test_optimize.py::test_other_spans_and_the_time_parametrisation",
    "optimize/test_optimize.py::test_decoupled_model_times",
    "optimize/test_optimize.py::test_minibatch_decoupled_fit",
    "optimize/test_optimize.py::test_restarts_return",
    "optimize/test_optimize.py::test_a_loss_that_turns_nan",
    "optimize/test_optimize.py::test_dmn_is_data_free",
    "optimize/test_optimize.py::test_gits_finds_the_known_optimum",
    "optimize/test_optimize.py::test_ld3_gradient_in_the_model_times",
    "optimize/test_optimize.py::test_a_guided_model_with_per_sample_conditions_fits_with",
)
GOLDEN = (
    "golden/test_golden.py::",
    "golden/test_reference_xt_golden.py::",
    "golden/test_v3_golden.py::",
    "v3/test_v3_object.py::test_sample_is_sample_v3_bit_for_bit",
)
GOLDEN_SAMPLE = 6


def pytest_collection_modifyitems(config, items):
    slow = __import__("pytest").mark.slow
    seen: dict = {}
    for item in items:
        node = re.sub(r"^.*?tests/", "", item.nodeid)
        if node.startswith(SLOW):
            item.add_marker(slow)
        elif node.startswith(GOLDEN) and "[" in node:
            group = node.split("[")[0]
            k = seen[group] = seen.get(group, -1) + 1
            if k % GOLDEN_SAMPLE:
                item.add_marker(slow)
