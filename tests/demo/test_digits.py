"""The bundled digits model end to end: checkpoint, guided sampling, classifier, demo."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax", reason="the digits model needs flax (pip install -e '.[test]')")

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
