"""Bad input fails early with a ValueError/TypeError that names the argument."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dpm_jax
from dpm_jax import schedules

SCHED = schedules.discrete(betas=np.linspace(1e-4, 0.02, 1000))
VP = schedules.vp_linear()
X = jnp.zeros((2, 3))
LABELS = jnp.array([0, 1])


def net(x, t, cond=None):
    return 0.1 * x


MODEL = dpm_jax.model_wrapper(net, SCHED)
FLOW = schedules.flow()
FLOW_MODEL = dpm_jax.model_wrapper(net, FLOW, model_type="flow")


VP_MODEL = dpm_jax.model_wrapper(net, VP)


def sample(**kw):
    sched = kw.pop("sched", SCHED)
    default = VP_MODEL if sched is VP else MODEL
    return dpm_jax.sample(kw.pop("model", default), kw.pop("x", X), sched, **kw)


CASES = [
    # (description, call, exception, text the message must contain)
    ("unknown method", lambda: sample(method="foo"), ValueError, "method"),
    ("unknown algorithm_type", lambda: sample(algorithm_type="dpm"), ValueError, "algorithm_type"),
    ("unknown skip_type", lambda: sample(skip_type="uniform"), ValueError, "skip_type"),
    ("unknown solver_type", lambda: sample(solver_type="foo"), ValueError, "solver_type"),
    ("order 4", lambda: sample(order=4), ValueError, "order"),
    ("order 0 singlestep", lambda: sample(order=0, method="singlestep"), ValueError, "order"),
    ("order float", lambda: sample(order=2.0), TypeError, "order"),
    ("adaptive order 1", lambda: sample(method="adaptive", order=1), ValueError, "order"),
    ("multistep steps < order", lambda: sample(order=3, steps=2), ValueError, "steps"),
    (
        "singlestep_fixed steps < order",
        lambda: sample(order=3, steps=2, method="singlestep_fixed"),
        ValueError,
        "steps",
    ),
    ("steps 0", lambda: sample(steps=0, order=1), ValueError, "steps"),
    ("steps float", lambda: sample(steps=10.0), TypeError, "steps"),
    ("t_end 0", lambda: sample(t_end=0.0), ValueError, "t_end"),
    ("t_end >= t_start", lambda: sample(t_start=0.5, t_end=0.6), ValueError, "t_end"),
    ("t_start beyond T", lambda: sample(t_start=1.5), ValueError, "t_start"),
    ("t_end below 1/N (discrete)", lambda: sample(t_end=1e-4), ValueError, "t_end"),
    (
        "inverse t_start >= t_end",
        lambda: dpm_jax.inverse(MODEL, X, SCHED, t_start=0.5, t_end=0.2),
        ValueError,
        "t_start",
    ),
    ("integer x_T", lambda: sample(x=jnp.zeros((2, 3), jnp.int32)), TypeError, "x_T"),
    ("scalar x_T", lambda: sample(x=jnp.float32(1.0)), ValueError, "batch"),
    ("list x_T", lambda: sample(x=[[1.0, 2.0]]), TypeError, "x_T"),
    (
        "integer x for inverse",
        lambda: dpm_jax.inverse(MODEL, jnp.zeros((2, 3), jnp.int32), SCHED),
        TypeError,
        "`x`",
    ),
    (
        "lower_order_final not bool",
        lambda: sample(lower_order_final=1),
        TypeError,
        "lower_order_final",
    ),
    (
        "denoise_to_zero not bool",
        lambda: sample(denoise_to_zero="yes"),
        TypeError,
        "denoise_to_zero",
    ),
    ("unknown corrector", lambda: sample(correcting_x0_fn="clip"), ValueError, "correcting_x0_fn"),
    ("corrector not callable", lambda: sample(correcting_x0_fn=3), TypeError, "correcting_x0_fn"),
    (
        "thresholding ratio > 1",
        lambda: sample(correcting_x0_fn="dynamic_thresholding", dynamic_thresholding_ratio=1.5),
        ValueError,
        "dynamic_thresholding_ratio",
    ),
    (
        "thresholding max_val <= 0",
        lambda: sample(correcting_x0_fn="dynamic_thresholding", thresholding_max_val=0.0),
        ValueError,
        "thresholding_max_val",
    ),
    ("adaptive atol <= 0", lambda: sample(method="adaptive", atol=0.0), ValueError, "atol"),
    ("adaptive rtol nan", lambda: sample(method="adaptive", rtol=float("nan")), ValueError, "rtol"),
    (
        "adaptive intermediates",
        lambda: sample(method="adaptive", return_intermediate=True),
        ValueError,
        "return_intermediate",
    ),
    (
        "unknown multistep3_variant",
        lambda: sample(multistep3_variant="exact"),
        ValueError,
        "multistep3_variant",
    ),
    ("schedule wrong type", lambda: sample(sched="linear"), TypeError, "noise_schedule"),
    (
        "schedule differs from the model's",
        lambda: sample(sched=VP, model=MODEL),
        ValueError,
        "noise_schedule",
    ),
    ("model not callable", lambda: sample(model=3), TypeError, "model"),
    (
        "unknown model_type",
        lambda: dpm_jax.model_wrapper(net, SCHED, model_type="eps"),
        ValueError,
        "model_type",
    ),
    (
        "unknown guidance_type",
        lambda: dpm_jax.model_wrapper(net, SCHED, guidance_type="cfg"),
        ValueError,
        "guidance_type",
    ),
    (
        "classifier without classifier_fn",
        lambda: dpm_jax.model_wrapper(net, SCHED, guidance_type="classifier", condition=LABELS),
        ValueError,
        "classifier_fn",
    ),
    (
        "classifier-free without condition",
        lambda: dpm_jax.model_wrapper(net, SCHED, guidance_type="classifier-free"),
        ValueError,
        "condition",
    ),
    (
        "condition batch mismatch",
        lambda: sample(
            model=dpm_jax.model_wrapper(
                net,
                SCHED,
                guidance_type="classifier-free",
                condition=jnp.array([0, 1, 2]),
                unconditional_condition=jnp.array([3, 3, 3]),
                guidance_scale=2.0,
            )
        ),
        ValueError,
        "condition",
    ),
    (
        "unconditional_condition shape mismatch",
        lambda: sample(
            model=dpm_jax.model_wrapper(
                net,
                SCHED,
                guidance_type="classifier-free",
                condition=LABELS,
                unconditional_condition=jnp.array([3]),
                guidance_scale=2.0,
            )
        ),
        ValueError,
        "unconditional_condition",
    ),
    (
        "guidance_scale not finite",
        lambda: dpm_jax.model_wrapper(
            net,
            SCHED,
            guidance_type="classifier-free",
            condition=LABELS,
            guidance_scale=float("inf"),
        ),
        ValueError,
        "guidance_scale",
    ),
    (
        "model_kwargs not a dict",
        lambda: dpm_jax.model_wrapper(net, SCHED, model_kwargs=[1]),
        TypeError,
        "model_kwargs",
    ),
    (
        "network output of the wrong shape",
        lambda: sample(model=dpm_jax.model_wrapper(lambda x, t: x[:, :1], SCHED)),
        ValueError,
        "shape",
    ),
    (
        "discrete betas and alphas_cumprod",
        lambda: schedules.discrete(betas=[0.1, 0.2], alphas_cumprod=[0.9, 0.7]),
        ValueError,
        "betas",
    ),
    (
        "discrete betas out of range",
        lambda: schedules.discrete(betas=[0.1, 1.2]),
        ValueError,
        "betas",
    ),
    (
        "discrete alphas_cumprod increasing",
        lambda: schedules.discrete(alphas_cumprod=[0.5, 0.9]),
        ValueError,
        "alphas_cumprod",
    ),
    ("vp_linear beta_1 <= beta_0", lambda: schedules.vp_linear(1.0, 0.5), ValueError, "beta_1"),
    (
        "bfloat16 state",
        lambda: sample(x=jnp.zeros((2, 3), jnp.bfloat16)),
        ValueError,
        "model_dtype",
    ),
    (
        "integer model_dtype",
        lambda: dpm_jax.model_wrapper(net, SCHED, model_dtype=jnp.int32),
        TypeError,
        "model_dtype",
    ),
    (
        "unknown error_norm",
        lambda: sample(method="adaptive", error_norm="max"),
        ValueError,
        "error_norm",
    ),
    ("unroll 0", lambda: sample(unroll=0), ValueError, "unroll"),
    (
        "build_plan adaptive",
        lambda: dpm_jax.build_plan(SCHED, method="adaptive", order=2),
        ValueError,
        "adaptive",
    ),
    (
        "execute_plan without a plan",
        lambda: dpm_jax.execute_plan(MODEL, X, {"t": 1}),
        TypeError,
        "plan",
    ),
    # model families, spacings, infinite log-SNR, diffusers configs
    (
        "unknown final_sigmas_type",
        lambda: sample(final_sigmas_type="min"),
        ValueError,
        "final_sigmas_type",
    ),
    ("karras_rho 0", lambda: sample(skip_type="karras", karras_rho=0.0), ValueError, "karras_rho"),
    (
        "steps_offset negative",
        lambda: sample(skip_type="leading", steps_offset=-1),
        ValueError,
        "steps_offset",
    ),
    ("euler_at_final not bool", lambda: sample(euler_at_final="yes"), TypeError, "euler_at_final"),
    (
        "diffusers spacing on a continuous schedule",
        lambda: sample(sched=VP, model=dpm_jax.model_wrapper(net, VP), skip_type="trailing"),
        ValueError,
        "skip_type",
    ),
    (
        "leading timesteps beyond the table",
        lambda: sample(skip_type="leading", steps=10, steps_offset=999),
        ValueError,
        "steps_offset",
    ),
    (
        "logSNR to sigma = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, skip_type="logSNR"),
        ValueError,
        "skip_type",
    ),
    (
        "noise prediction from alpha = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, algorithm_type="dpmsolver"),
        ValueError,
        "algorithm_type",
    ),
    (
        "eps model at alpha = 0",
        lambda: sample(sched=FLOW, model=dpm_jax.model_wrapper(net, FLOW)),
        ValueError,
        "model_type",
    ),
    (
        "denoise_to_zero at sigma = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, denoise_to_zero=True),
        ValueError,
        "denoise_to_zero",
    ),
    (
        "adaptive from alpha = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, method="adaptive"),
        ValueError,
        "adaptive",
    ),
    (
        "karras from alpha = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, skip_type="karras"),
        ValueError,
        "t_start",
    ),
    (
        "final_sigmas_type for inversion",
        lambda: dpm_jax.inverse(MODEL, X, SCHED, final_sigmas_type="zero"),
        ValueError,
        "final_sigmas_type",
    ),
    (
        "inversion from the data",
        lambda: dpm_jax.inverse(FLOW_MODEL, X, FLOW),
        ValueError,
        "t_start",
    ),
    ("flow shift 0", lambda: schedules.flow(shift=0.0), ValueError, "shift"),
    ("edm sigma_max < sigma_min", lambda: schedules.edm(1.0, 0.5), ValueError, "sigma_min"),
    ("ve sigma_min string", lambda: schedules.ve("0.01", 50.0), TypeError, "sigma_min"),
    (
        "discrete rescale not bool",
        lambda: schedules.discrete(betas=[0.1, 0.2], rescale_zero_terminal_snr=1),
        TypeError,
        "rescale_zero_terminal_snr",
    ),
    (
        "sigma_data without edm",
        lambda: dpm_jax.model_wrapper(net, SCHED, sigma_data=0.5),
        ValueError,
        "sigma_data",
    ),
    (
        "diffusers unknown class",
        lambda: dpm_jax.from_diffusers_config({"_class_name": "PNDMScheduler"}),
        ValueError,
        "_class_name",
    ),
    (
        "diffusers bad value",
        lambda: dpm_jax.from_diffusers_config(
            {"_class_name": "DPMSolverMultistepScheduler", "solver_order": 4}
        ),
        ValueError,
        "solver_order",
    ),
    (
        "diffusers bad prediction_type",
        lambda: dpm_jax.from_diffusers_config(
            {"_class_name": "UniPCMultistepScheduler", "prediction_type": "eps"}
        ),
        ValueError,
        "prediction_type",
    ),
    (
        "diffusers unsupported option",
        lambda: dpm_jax.from_diffusers_config(
            {"_class_name": "DPMSolverMultistepScheduler", "use_beta_sigmas": True}
        ),
        ValueError,
        "use_beta_sigmas",
    ),
    (
        "diffusers missing file",
        lambda: dpm_jax.from_diffusers_config("/nonexistent/scheduler.json"),
        ValueError,
        "not a file",
    ),
    (
        "diffusers config of a wrong type",
        lambda: dpm_jax.from_diffusers_config(3),
        TypeError,
        "config",
    ),
    # explicit grids
    (
        "timesteps 2-D",
        lambda: sample(sched=VP, timesteps=[[1.0, 0.5], [0.4, 0.1]]),
        ValueError,
        "timesteps",
    ),
    ("timesteps one entry", lambda: sample(sched=VP, timesteps=[1.0]), ValueError, "timesteps"),
    (
        "timesteps not monotone",
        lambda: sample(sched=VP, timesteps=[1.0, 0.2, 0.5, 0.1]),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps repeated",
        lambda: sample(sched=VP, timesteps=[1.0, 0.5, 0.5, 0.1]),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps NaN",
        lambda: sample(sched=VP, timesteps=[1.0, np.nan, 0.1]),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps inf",
        lambda: sample(sched=VP, timesteps=[np.inf, 0.5, 0.1]),
        ValueError,
        "timesteps",
    ),
    ("timesteps strings", lambda: sample(sched=VP, timesteps=["a", "b"]), TypeError, "timesteps"),
    (
        "timesteps above T",
        lambda: sample(sched=VP, timesteps=[1.5, 0.5, 0.1]),
        ValueError,
        "timesteps",
    ),
    ("timesteps below 1/N", lambda: sample(timesteps=[1.0, 0.5, 1e-4]), ValueError, "timesteps"),
    (
        "timesteps increasing for sample",
        lambda: sample(sched=VP, timesteps=[0.1, 0.5, 1.0]),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps decreasing for inverse",
        lambda: dpm_jax.inverse(dpm_jax.model_wrapper(net, VP), X, VP, timesteps=[1.0, 0.5, 0.1]),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps with skip_type",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], skip_type="time_uniform"),
        ValueError,
        "skip_type",
    ),
    (
        "timesteps with t_start",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], t_start=1.0),
        ValueError,
        "t_start",
    ),
    (
        "timesteps with t_end",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], t_end=0.1),
        ValueError,
        "t_end",
    ),
    (
        "timesteps with final_sigmas_type",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], final_sigmas_type="zero"),
        ValueError,
        "final_sigmas_type",
    ),
    (
        "timesteps and steps disagree",
        lambda: sample(sched=VP, timesteps=[1.0, 0.5, 0.1], steps=5),
        ValueError,
        "steps",
    ),
    (
        "timesteps and sigmas",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], sigmas=[10.0, 0.0]),
        ValueError,
        "sigmas",
    ),
    (
        "timesteps with adaptive",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], method="adaptive"),
        ValueError,
        "timesteps",
    ),
    (
        "timesteps shorter than order",
        lambda: sample(sched=VP, timesteps=[1.0, 0.1], order=2),
        ValueError,
        "steps",
    ),
    ("sigmas increasing", lambda: sample(sched=VP, sigmas=[0.1, 1.0, 10.0]), ValueError, "sigmas"),
    ("sigmas zero inside", lambda: sample(sched=VP, sigmas=[10.0, 0.0, 0.0]), ValueError, "sigmas"),
    ("sigmas negative", lambda: sample(sched=VP, sigmas=[10.0, 1.0, -1.0]), ValueError, "sigmas"),
    (
        "sigmas inf",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, sigmas=[np.inf, 1.0, 0.0]),
        ValueError,
        "sigmas",
    ),
    ("sigmas NaN", lambda: sample(sched=VP, sigmas=[10.0, np.nan, 0.0]), ValueError, "sigmas"),
    (
        "sigmas above the schedule",
        lambda: sample(sched=VP, sigmas=[1e4, 1.0, 0.0]),
        ValueError,
        "sigmas",
    ),
    ("sigmas below the schedule", lambda: sample(sigmas=[10.0, 1.0, 1e-4]), ValueError, "sigmas"),
    ("sigmas empty", lambda: sample(sched=VP, sigmas=[]), ValueError, "sigmas"),
    # the low-NFE solvers: options that do not apply name the option
    *[
        (f"{m} with {name}", lambda m=m, kw=kw: sample(sched=VP, method=m, **kw), ValueError, text)
        for m in ("ipndm", "deis", "heun", "dpm2")
        for name, kw, text in (
            ("sde", dict(algorithm_type="sde-dpmsolver++"), "algorithm_type"),
            ("data prediction", dict(algorithm_type="dpmsolver++"), "algorithm_type"),
            ("solver_type", dict(solver_type="taylor"), "solver_type"),
            ("lower_order_final", dict(lower_order_final=False), "lower_order_final"),
            ("multistep3_variant", dict(multistep3_variant="third_order"), "multistep3_variant"),
            ("unipc_variant", dict(unipc_variant="bh1"), "unipc_variant"),
            ("unipc_corrector", dict(unipc_corrector=False), "unipc_corrector"),
            ("euler_at_final", dict(euler_at_final=True), "euler_at_final"),
        )
    ],
    ("ipndm order 5", lambda: sample(sched=VP, method="ipndm", order=5), ValueError, "order"),
    ("deis order 4", lambda: sample(sched=VP, method="deis", order=4), ValueError, "order"),
    ("heun order 3", lambda: sample(sched=VP, method="heun", order=3), ValueError, "order"),
    ("dpm2 order 1", lambda: sample(sched=VP, method="dpm2", order=1), ValueError, "order"),
    (
        "unknown ipndm_variant",
        lambda: sample(sched=VP, method="ipndm", ipndm_variant="w"),
        ValueError,
        "ipndm_variant",
    ),
    (
        "unknown deis_variant",
        lambda: sample(sched=VP, method="deis", deis_variant="ab"),
        ValueError,
        "deis_variant",
    ),
    (
        "ipndm_variant with deis",
        lambda: sample(sched=VP, method="deis", ipndm_variant="v"),
        ValueError,
        "ipndm_variant",
    ),
    (
        "deis_variant with multistep",
        lambda: sample(sched=VP, deis_variant="rhoab"),
        ValueError,
        "deis_variant",
    ),
    (
        "ipndm from alpha = 0",
        lambda: sample(sched=FLOW, model=FLOW_MODEL, method="ipndm"),
        ValueError,
        "algorithm_type",
    ),
    (
        "unknown final_sigmas_type",
        lambda: sample(final_sigmas_type="last"),
        ValueError,
        "final_sigmas_type",
    ),
]


@pytest.mark.parametrize("call, exc, text", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(call, exc, text):
    with pytest.raises(exc) as info:
        call()
    assert text in str(info.value), str(info.value)


def test_enough_cases():
    assert len(CASES) >= 20


def test_traced_grid_is_refused_naming_it():
    @jax.jit
    def run(ts):
        return dpm_jax.sample(dpm_jax.model_wrapper(net, VP), X, VP, timesteps=ts)

    with pytest.raises(TypeError, match="timesteps"):
        run(jnp.array([1.0, 0.5, 0.1]))


def test_diffusers_unknown_keys_are_reported_not_dropped():
    cfg = {
        "_class_name": "DPMSolverMultistepScheduler",
        "_diffusers_version": "0.30.0",
        "solver_order": 3,
        "my_option": 1,
    }
    with pytest.warns(UserWarning, match="my_option"):
        setup = dpm_jax.from_diffusers_config(cfg)
    assert setup.unknown == ("my_option",) and setup.options["order"] == 3


def test_diffusers_config_from_a_file_and_a_folder(tmp_path):
    import json

    cfg = {
        "_class_name": "UniPCMultistepScheduler",
        "solver_order": 3,
        "prediction_type": "v_prediction",
    }
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(cfg))
    a = dpm_jax.from_diffusers_config(tmp_path)
    b = dpm_jax.from_diffusers_config(tmp_path / "scheduler" / "scheduler_config.json")
    assert a.options == b.options and a.model_type == "v" and a.options["method"] == "unipc"
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        dpm_jax.from_diffusers_config(tmp_path / "bad.json")
