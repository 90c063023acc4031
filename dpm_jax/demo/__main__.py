"""``python -m dpm_jax.demo``: see :mod:`dpm_jax.demo`."""

from dpm_jax.demo import main

main()
