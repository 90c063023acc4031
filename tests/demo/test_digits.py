"""The bundled digits model end to end: checkpoint, guided sampling, classifier, demo, and the
examples built on it (the loop in the user's hands, image-to-image, inpainting, editing).

The examples of ``examples/`` are run as a user runs them, with small settings: 30 digits
(3 per class) and 10 steps, the shapes of the demo's run below, so that the programs they
share with it (the DiffEdit of the reference) and with each other (the guided sampler)
compile once for the file. float32 throughout.
"""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from paths import ROOT

pytest.importorskip("flax", reason="the digits model needs flax (pip install -e '.[test]')")

import dpm_jax
from dpm_jax.demo import digits


@pytest.fixture(scope="module")
def bundle():
    return digits.load()


def test_checkpoint_is_small_package_data(bundle):
    path = pathlib.Path(str(digits.checkpoint_path()))
    assert path.is_file() and path.suffix == ".msgpack"
    assert path.stat().st_size <= 5_000_000
    assert path.read_bytes()[:1] != b"\x80"  # not a pickle
    leaves = jax.tree_util.tree_leaves(bundle.unet_params)
    assert all(leaf.dtype == jnp.float32 for leaf in leaves)
    assert bundle.meta["classifier_heldout_accuracy"] > 0.95


def test_save_load_round_trip(bundle, tmp_path):
    unet, clf = bundle.unet(), bundle.classifier()
    n = digits.save(
        tmp_path / "c.msgpack",
        unet,
        clf,
        digits.DEFAULT_UNET,
        digits.DEFAULT_CLASSIFIER,
        {"note": "test"},
    )
    assert n == (tmp_path / "c.msgpack").stat().st_size
    again = digits.load(tmp_path / "c.msgpack")
    assert again.meta == {"note": "test"}
    for a, b in zip(
        jax.tree_util.tree_leaves(bundle.unet_params), jax.tree_util.tree_leaves(again.unet_params)
    ):
        np.testing.assert_array_equal(a, b)  # stored in float16 both times
    with pytest.raises(ValueError, match="not a dpm_jax digits checkpoint"):
        (tmp_path / "bad.msgpack").write_bytes(b"\x80")
        digits.load(tmp_path / "bad.msgpack")


def test_guided_samples_are_the_requested_digits(bundle):
    labels = jnp.repeat(jnp.arange(10), 3)
    x0, info = digits.generate(
        bundle, labels, jax.random.key(0), steps=10, method="dpmsolver++", return_info=True
    )
    assert info.nfe == 10
    assert x0.shape == (30, 8, 8, 1) and x0.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(x0)))
    assert float(jnp.abs(x0).max()) < 1.5
    # a broken or untrained model scores ~0.1; the bundled one ~0.95 at 10 NFE
    assert digits.accuracy(bundle, x0, labels) >= 0.8


def test_new_parameters_do_not_recompile(bundle):
    labels = jnp.repeat(jnp.arange(10), 3)  # the shapes of the test above: no new compilation
    digits.generate(bundle, labels, jax.random.key(0), steps=10)
    size = digits._generate_jit._cache_size()
    scaled = jax.tree_util.tree_map(lambda w: 0.5 * w, bundle.unet_params)
    x0 = digits.generate(
        bundle, labels, jax.random.key(1), steps=10, params=scaled, guidance_scale=3.0
    )
    assert digits._generate_jit._cache_size() == size
    assert x0.shape == (30, 8, 8, 1)


def test_classifier_reads_real_digits(bundle):
    # Hand-drawn 8x8 "1": a vertical bar; and the wrong-label accuracy is low.
    x = -np.ones((1, 8, 8, 1), np.float32)
    x[0, 1:7, 3:5, 0] = 1.0
    assert digits.classify(bundle, x).tolist() == [1]
    assert digits.accuracy(bundle, x, [7]) == 0.0


def test_unknown_method_raises(bundle):
    with pytest.raises(ValueError, match="`method` must be one of"):
        digits.generate(bundle, jnp.arange(2), jax.random.key(0), method="euler")


def test_demo_writes_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the demo plots with matplotlib")
    from dpm_jax import demo

    out = tmp_path / "digits.png"
    # 3 x 10 digits at 10 NFE: the program of the tests above, so only the reference compiles
    assert (
        demo.main(["--steps", "10", "--per-class", "3", "--ref-steps", "12", "--out", str(out)])
        == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in text.splitlines()
        if line.startswith(("DDIM", "DPM-Solver++(2M)", "reference"))
    }
    # columns from the right: NFE, compile+run s, run s, accuracy, RMS to the reference
    assert [rows[k][-5] for k in ("DDIM", "DPM-Solver++(2M)", "reference:")] == ["10", "10", "12"]
    assert float(rows["DPM-Solver++(2M)"][-2]) >= 0.8  # classifier accuracy
    assert float(rows["reference:"][-1]) == 0.0  # the reference against itself
    assert 0.0 < float(rows["DDIM"][-1]) < 1.0
    # the edit of the reference's digits (c -> c + 1, DiffEdit): the pixels outside the mask
    # are the reference's to the bit; measured 28 / 30 read as c + 1 (96 % of 80 at 8 per class)
    edit = text[text.index("edit (DiffEdit") :].split("\n")[1].split()
    assert edit[0] == "accuracy" and float(edit[1]) >= 0.8
    assert edit[-1] == "0.0"


def test_import_dpm_jax_does_not_import_flax():
    import subprocess
    import sys

    code = (
        "import sys, dpm_jax; "
        "assert 'flax' not in sys.modules and 'dpm_jax.demo.digits' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_old_import_paths_still_work():
    import dpm_jax.digits
    import dpm_jax.exact
    import dpm_jax.problems
    from dpm_jax.exact import exact_ode_solution
    from dpm_jax.problems import gmm_16d

    # each old path is the new module itself (compared by name: pytest's doctest collection
    # may import a module file a second time)
    assert dpm_jax.digits.__name__ == "dpm_jax.demo.digits"
    assert dpm_jax.problems.__name__ == "dpm_jax.testing.problems"
    assert dpm_jax.exact.__name__ == "dpm_jax.testing.exact"
    assert gmm_16d.__module__ == "dpm_jax.testing.problems"
    assert exact_ode_solution.__module__ == "dpm_jax.testing.exact"


def test_edit_mask_marks_where_the_classes_disagree(bundle):
    # 30 real digits, 3 per class: the shapes of the demo's edit above (no new program)
    x = jnp.asarray(digits.real_digits()[:30], jnp.float32)  # 0, 1, ..., 9, 0, 1, ...
    source = jnp.arange(30) % 10
    target, key = (source + 5) % 10, jax.random.key(0)
    mask = digits.edit_mask(bundle, x, source, target, key)
    assert mask.shape == x.shape and mask.dtype == jnp.float32
    assert set(np.unique(np.asarray(mask)).tolist()) == {0.0, 1.0}
    # measured 31 % of the pixels at the default threshold 0.3; every pixel at 0
    assert 0.1 < float(mask.mean()) < 0.6
    assert float(digits.edit_mask(bundle, x, source, target, key, threshold=0.0).mean()) > 0.9
    # the same label twice: nothing to edit, the predictions agree (0 / 0 -> 0)
    assert float(digits.edit_mask(bundle, x, source, source, key).max()) == 0.0
    for kwargs, match in [
        (dict(draws=0), "`draws`"),
        (dict(t=0.0), "`t`"),
        (dict(threshold=1.0), "`threshold`"),
    ]:
        with pytest.raises(ValueError, match=match):
            digits.edit_mask(bundle, x, source, target, key, **kwargs)
    with pytest.raises(ValueError, match="`target`"):
        digits.edit_mask(bundle, x, source, target[:2], key)
    with pytest.raises(ValueError, match="`x`"):
        digits.edit_mask(bundle, x[..., 0], source, target, key)


# --------------------------------------------------------------------------- the examples

SMALL = ["--per-class", "3", "--steps", "10"]  # 30 digits, the demo test's batch


def example(name: str):
    """The module of ``examples/<name>.py``."""
    path = ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_example_custom_loop_equals_sample(capsys):
    diff = example("custom_loop").main(SMALL)
    out = capsys.readouterr().out
    assert "max |fori_loop - dpm_jax.sample|" in out and "float32" in out
    # Measured 1.2e-6 to 3.3e-6 (5 to 10 steps, 10 to 40 digits): the same arithmetic in two
    # programs, and the guided model combines the two halves after converting them to x0
    # (1 / alpha_T ~ 160 amplifies eps's rounding). A wrong row, a swapped null / label
    # half or a missed guidance term moves the digits by 0.1 or more.
    assert 0.0 <= diff < 1e-4


def test_example_img2img(tmp_path):
    pytest.importorskip("sklearn", reason="the example edits real digits")
    out = tmp_path / "img2img.png"
    rows = example("img2img").main(SMALL + ["--strengths", "0", "0.02", "0.5", "--out", str(out)])
    assert is_png(out)
    zero, low, half = rows
    assert zero["rms"] == 0.0 and zero["acc_source"] == 1.0  # strength 0: the input itself
    # strength 0.02 (t0 = 0.021, sigma 0.06): measured RMS 0.057 to the source, every digit
    # still read as itself; a real digit of the target class is ~0.78 away.
    assert low["rms"] < 0.1 and low["acc_source"] == 1.0 and low["acc_target"] == 0.0
    # strength 0.5: measured 30 / 30 read as the target class, RMS 0.73 to the source
    assert half["acc_target"] >= 0.9 and half["acc_source"] <= 0.1
    assert half["rms"] > 5 * low["rms"]


def test_example_inpainting_keeps_the_known_pixels(tmp_path):
    pytest.importorskip("sklearn", reason="the example completes real digits")
    mod = example("inpainting")
    out = tmp_path / "inpainting.png"
    # --jumps 1: without the RePaint-style resampling (its own program, 3 s to compile here;
    # run by the command of docs/editing.md's figures)
    figures = mod.main(SMALL + ["--jumps", "1", "--out", str(out)])
    assert is_png(out)
    assert figures["known_error"] == 0.0  # exactly the known pixels, after the paste

    # Without the final paste, the last correction has put the known pixels at t_end's
    # noise level (sigma = 0.01): the hook's last t is t_end, not 0.
    bundle = digits.load()
    x = jnp.asarray(digits.real_digits()[:30], jnp.float32)
    model = digits.guided_model(bundle.unet_graph, bundle.unet_params, jnp.full((30,), 10), 1.0)
    z = jnp.asarray(np.random.default_rng(0).standard_normal(x.shape), jnp.float32)
    mask = jnp.asarray(mod.MASK)
    raw = mod.inpaint(model, x, mask, z, steps=10, paste=False)
    sched = model.schedule
    np.testing.assert_allclose(
        mask * raw, mask * dpm_jax.add_noise(sched, x, z, sched.t_eps), rtol=0, atol=1e-6
    )
    assert float(jnp.max(jnp.abs(mask * (raw - x)))) > 0.01  # hence the paste
    # The completion reads the known half: its hidden half is not the plain sample's
    # (measured RMS 0.2 apart there; 0 if the correction were not applied).
    plain = dpm_jax.sample(model, z, sched, steps=10, skip_type="logSNR")
    assert mod.masked_rms(raw, plain, 1 - mask) > 0.05
    # the completion beats pasting a sample in the hidden half: measured RMS 0.69 against
    # 0.76 on these 30 digits (0.74 against 0.79 on 200: docs/editing.md)
    assert figures["replacement"]["rms"] < figures["pasted"]["rms"]
    assert "resampling" not in figures


def test_example_editing_with_the_mask_keeps_the_outside(tmp_path):
    pytest.importorskip("sklearn", reason="the example edits real digits")
    out = tmp_path / "editing.png"
    figures = example("editing").main(SMALL + ["--out", str(out)])
    assert is_png(out)
    free, masked = figures["inversion, no mask"], figures["inversion, with the mask"]
    # the last correction (node t_end) puts back the encoded path's first state, the
    # source itself: outside the mask the edit is the source to the bit
    assert masked["outside"] == 0.0
    # measured: 30 / 30 read as the target class, with and without the mask; the mask
    # covers 31 % of the pixels; the free edit moves the outside by 0.36 RMS
    assert masked["accuracy"] >= 0.8 and free["accuracy"] >= 0.8
    assert 0.1 < figures["mask_area"] < 0.6
    assert free["outside"] > 0.2
    assert masked["inside"] > 0.5  # the inside did change
