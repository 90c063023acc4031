"""A progress bar driven from inside the compiled loop (``progress=True``).

Each row calls ``jax.debug.callback`` (unordered: ordered callbacks are not
allowed on more than one device) with its row index and the number of rows.
The host keeps one tqdm bar per run: the first tick opens it, and it closes
when ``total`` ticks arrived. Under ``shard_map`` a callback fires once per
device, so the sharded sampler passes the device's index along the batch axis
and only index 0 ticks. With ``progress=False`` no callback is in the program.
"""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp

_LOCK = threading.Lock()
_BARS: dict = {}


def _tick(total, shard):
    if int(shard) != 0:
        return
    total = int(total)
    with _LOCK:
        bar = _BARS.get(total)
        if bar is None:
            from tqdm.auto import tqdm

            bar = _BARS[total] = tqdm(total=total, desc="dpm_jax", unit="step", leave=True)
        bar.update(1)
        if bar.n >= total:
            bar.close()
            del _BARS[total]


def tick(total: int, shard_axis=None) -> None:
    """Emits one tick of a run of ``total`` rows (from inside the traced loop)."""
    shard = jax.lax.axis_index(shard_axis) if shard_axis is not None else jnp.int32(0)
    jax.debug.callback(_tick, jnp.int32(total), shard, ordered=False)


def require_tqdm() -> None:
    try:
        import tqdm  # noqa: F401
    except ImportError:
        raise ImportError(
            "progress=True needs tqdm: pip install tqdm (or the `test` extra)."
        ) from None
