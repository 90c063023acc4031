"""from_diffusers_config on checkpoint-style configs (keys as public checkpoints ship them)."""

import json
import warnings

import numpy as np
import pytest

import dpm_jax

#: A Stable Diffusion 1.x-style scheduler config (PNDM, as such checkpoints ship it).
SD15 = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
#: SDXL-style Euler config.
SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}
#: SD3-style flow-matching config.
SD3 = {
    "_class_name": "FlowMatchEulerDiscreteScheduler",
    "_diffusers_version": "0.29.0.dev0",
    "num_train_timesteps": 1000,
    "shift": 3.0,
}
#: SD 2.x v-prediction DDIM config.
SD2V = {
    "_class_name": "DDIMScheduler",
    "_diffusers_version": "0.8.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}


def test_sd15_read_as_dpm_solver(tmp_path):
    with pytest.raises(ValueError, match="scheduler="):
        dpm_jax.from_diffusers_config(SD15)
    (tmp_path / "scheduler_config.json").write_text(json.dumps(SD15))
    with pytest.warns(UserWarning, match="skip_prk_steps"):
        setup = dpm_jax.from_diffusers_config(tmp_path, scheduler="DPMSolverMultistepScheduler")
    assert setup.unknown == ("clip_sample", "set_alpha_to_one", "skip_prk_steps")
    assert setup.model_type == "noise" and setup.options["method"] == "multistep"
    assert setup.options["skip_type"] == "linspace" and setup.options["final_sigmas_type"] == "zero"
    # the scaled_linear table: beta_n = (sqrt(b0) + n (sqrt(b1) - sqrt(b0)) / 999)^2
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    np.testing.assert_allclose(
        np.exp(2 * setup.schedule.marginal_log_alpha.table[1]), np.cumprod(1 - betas), rtol=1e-12
    )
    plan = dpm_jax.build_plan(setup.schedule, steps=20, **setup.options)
    assert plan.nfe == 20 and plan.t_input[0] == 999.0 and np.all(np.isfinite(plan.m_coef))


def test_sdxl_euler_maps_to_ddim_on_leading_grid():
    """Euler is the DDIM step on Euler's own "leading" grid: multiples of N // steps plus
    the offset, its last call at timestep 1 (``spacing_rule="euler"``; before issue 22 it
    was DPMSolverMultistep's grid, multiples of N // (steps + 1))."""
    with pytest.warns(UserWarning):
        setup = dpm_jax.from_diffusers_config(SDXL)
    assert setup.options == {
        "method": "multistep",
        "order": 1,
        "algorithm_type": "dpmsolver++",
        "skip_type": "leading",
        "steps_offset": 1,
        "spacing_rule": "euler",
        "final_sigmas_type": "zero",
    }
    assert "sample_max_value" in setup.unknown
    plan = dpm_jax.build_plan(setup.schedule, steps=10, **setup.options)
    np.testing.assert_array_equal(plan.t_input, np.arange(901, 0, -100))


def test_sd3_flow_match():
    with pytest.warns(UserWarning, match="FlowMatchEuler"):
        setup = dpm_jax.from_diffusers_config(SD3)
    assert setup.schedule.name == "flow" and setup.model_type == "flow"
    assert setup.options["t_start"] == 1.0 and setup.options["t_end"] == 0.0
    # time input: 1000 * shifted sigma, sigma = 3t / (1 + 2t)
    assert abs(setup.schedule.time_input(np.float64(0.5)) - 750.0) < 1e-9
    plan = dpm_jax.build_plan(setup.schedule, steps=8, **{**setup.options, "order": 2})
    assert plan.alpha[0] == 0.0 and np.all(np.isfinite(plan.x_coef))


def test_sd2_v_ddim():
    with pytest.warns(UserWarning, match="DDIM"):
        setup = dpm_jax.from_diffusers_config(SD2V)
    assert setup.model_type == "v" and setup.options["final_sigmas_type"] == "sigma_min"
    assert setup.options["skip_type"] == "leading" and setup.options["steps_offset"] == 1
    assert not any("clip_sample" in n for n in setup.notes)  # clip_sample is false here


@pytest.mark.parametrize(
    "cfg, key",
    [
        ({"_class_name": "DPMSolverMultistepScheduler", "beta_schedule": "cubic"}, "beta_schedule"),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "timestep_spacing": "middle"},
            "timestep_spacing",
        ),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "final_sigmas_type": "none"},
            "final_sigmas_type",
        ),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "lower_order_final": "yes"},
            "lower_order_final",
        ),
        (
            {
                "_class_name": "DPMSolverMultistepScheduler",
                "use_karras_sigmas": True,
                "use_exponential_sigmas": True,
            },
            "use_karras_sigmas",
        ),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "variance_type": "learned_range"},
            "variance_type",
        ),
        ({"_class_name": "UniPCMultistepScheduler", "disable_corrector": [0]}, "disable_corrector"),
        ({"_class_name": "UniPCMultistepScheduler", "solver_type": "bh3"}, "solver_type"),
        ({"_class_name": "DPMSolverSinglestepScheduler", "beta_start": -1.0}, "beta_start"),
        ({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 0}, "shift"),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "num_train_timesteps": 1.5},
            "num_train_timesteps",
        ),
    ],
)
def test_bad_values_name_the_key(cfg, key):
    with pytest.raises(ValueError, match=key):
        dpm_jax.from_diffusers_config(cfg)


@pytest.mark.parametrize(
    "cfg, kw, key",
    [
        (
            {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True},
            {},
            "mu",
        ),
        (
            {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift_terminal": 0.1},
            {},
            "num_inference_steps",
        ),
        ({"_class_name": "DDIMScheduler"}, {"num_inference_steps": 10}, "num_inference_steps"),
        ({"_class_name": "DDIMScheduler"}, {"mu": 0.5}, "mu"),
        (
            {
                "_class_name": "UniPCMultistepScheduler",
                "use_flow_sigmas": True,
                "shift_terminal": 0.1,
            },
            {},
            "shift_terminal",
        ),
        (
            {
                "_class_name": "DPMSolverMultistepScheduler",
                "use_flow_sigmas": True,
                "use_karras_sigmas": True,
            },
            {},
            "use_karras_sigmas",
        ),
        (
            {"_class_name": "EDMDPMSolverMultistepScheduler", "prediction_type": "sample"},
            {},
            "prediction_type",
        ),
        ({"_class_name": "EDMEulerScheduler", "sigma_schedule": "beta"}, {}, "sigma_schedule"),
        ({"_class_name": "HeunDiscreteScheduler", "clip_sample": True}, {}, "clip_sample"),
        (
            {"_class_name": "EulerDiscreteScheduler", "interpolation_type": "log_linear"},
            {},
            "interpolation_type",
        ),
        (
            {
                "_class_name": "EulerDiscreteScheduler",
                "use_karras_sigmas": True,
                "timestep_spacing": "leading",
            },
            {},
            "use_karras_sigmas",
        ),
        (
            {
                "_class_name": "DPMSolverMultistepInverseScheduler",
                "algorithm_type": "sde-dpmsolver++",
            },
            {},
            "algorithm_type",
        ),
        (
            {"_class_name": "DPMSolverMultistepInverseScheduler", "use_flow_sigmas": True},
            {},
            "use_flow_sigmas",
        ),
        (
            {"_class_name": "DPMSolverMultistepScheduler", "use_dynamic_shifting": True},
            {"mu": 1.0},
            "use_dynamic_shifting",
        ),
    ],
)
def test_refused_options_name_the_key(cfg, kw, key):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=key):
            dpm_jax.from_diffusers_config(cfg, **kw)


def test_what_each_new_class_maps_to():
    """The classes read since issue 22, in dpm_jax's terms (their runs against diffusers:
    tests/golden/test_diffusers_suite.py)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inv = dpm_jax.from_diffusers_config({"_class_name": "DPMSolverMultistepInverseScheduler"})
        edm = dpm_jax.from_diffusers_config(
            {"_class_name": "EDMDPMSolverMultistepScheduler", "prediction_type": "v_prediction"}
        )
        heun = dpm_jax.from_diffusers_config(
            {"_class_name": "HeunDiscreteScheduler", "num_train_timesteps": 1100}
        )
        fme = dpm_jax.from_diffusers_config(
            {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True},
            mu=0.8,
            num_inference_steps=4,
        )
    assert inv.inverse and inv.options["final_sigmas_type"] == "sigma_max"
    assert edm.model_type == "edm_v" and edm.schedule.name == "edm"
    assert edm.options["skip_type"] == "karras" and edm.options["final_sigmas_type"] == "zero"
    assert heun.options["method"] == "heun" and heun.options["spacing_rule"] == "euler"
    assert heun.schedule.input_scale == 1100.0  # the network gets diffusers' table index
    assert not any((inv.notes, edm.notes, heun.notes))  # nothing differs from diffusers
    # flow-matching Euler with mu: shift e^mu, diffusers' grid linspace(1, 1/N, 4) then 0
    assert fme.schedule == dpm_jax.schedules.flow(shift=np.exp(0.8), time_scale=1000.0)
    np.testing.assert_allclose(fme.options["timesteps"], [*np.linspace(1, 1e-3, 4), 0.0])


def test_unipc_flow_and_karras_sigmas():
    """diffusers' tests/schedulers/test_scheduler_unipc.py::test_flow_and_karras_sigmas_values
    (the sigmas it expects, compared as torch.allclose does: rtol 1e-5, atol 1e-8)."""
    want = [0.9950248599052429, 0.9787454605102539, 0.8774884343147278, 0.3604971766471863,
            0.009900986216962337, 0.0]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        setup = dpm_jax.from_diffusers_config(
            {
                "_class_name": "UniPCMultistepScheduler",
                "sigma_min": 0.01,
                "sigma_max": 200.0,
                "use_flow_sigmas": True,
                "use_karras_sigmas": True,
            }
        )
    nodes = dpm_jax.grid_nodes(
        setup.schedule,
        "karras",
        setup.options["t_start"],
        setup.options["t_end"],
        5,
        setup.options["final_sigmas_type"],
    )
    np.testing.assert_allclose([n.p.sigma for n in nodes], want, rtol=1e-5, atol=1e-8)
