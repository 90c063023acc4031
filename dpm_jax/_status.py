"""Failures inside the compiled loop, reported: status codes and the error they raise.

A run's ``SampleInfo.status`` (int32, per sample or one for the batch) is 0 when it
finished; otherwise it says what stopped it (``MESSAGES``). With ``throw=True`` (the
default) a failed run raises :class:`SamplingError`: after an eager call from the
status read back on the host, and inside a caller's ``jax.jit`` from a
``jax.debug.callback`` in the program (JAX reports it as a runtime error carrying the
message), as diffrax's ``throw=True``. With ``throw=False`` the status is returned.
"""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["MESSAGES", "SamplingError", "report"]

#: status codes of a run (``SampleInfo.status``)
FINISHED, ATTEMPTS_EXHAUSTED, NON_FINITE, STEP_UNDERFLOW = 0, 1, 2, 3

MESSAGES = {
    ATTEMPTS_EXHAUSTED: "the adaptive solver reached its attempt cap before t_end "
    "(raise atol/rtol)",
    NON_FINITE: "a model output was not finite (NaN or inf)",
    STEP_UNDERFLOW: "the adaptive solver's step became too small to move t in the state's "
    "precision (an unreachable tolerance: raise atol/rtol, or sample in float64)",
}


class SamplingError(RuntimeError):
    """A run that did not finish (see ``SampleInfo.status``; pass ``throw=False`` to get
    the status instead)."""


def _message(status) -> str:
    codes = sorted({int(c) for c in np.atleast_1d(np.asarray(status)).ravel() if c})
    n = int(np.sum(np.asarray(status) != 0))
    return "; ".join(MESSAGES.get(c, f"status {c}") for c in codes) + (
        f" ({n} of {np.size(status)} status entries failed; SampleInfo.status, throw=False)"
    )


def _raise_if_failed(status) -> None:
    if np.any(np.asarray(status) != 0):
        raise SamplingError(_message(status))


def report(status, throw: bool, traced: bool) -> None:
    """Raises :class:`SamplingError` for a failed ``status`` if ``throw``: now (eager), or
    from the compiled program (``traced``)."""
    if not throw or status is None:
        return
    if traced:
        jax.debug.callback(_raise_if_failed, status)
    else:
        _raise_if_failed(jax.device_get(status))
