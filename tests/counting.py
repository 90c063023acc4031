"""Counting XLA compilations (through ``jax.monitoring``), for tests that a program is reused."""

from __future__ import annotations

import contextlib

import jax

_ACTIVE: list[list] = []


def _listener(name, duration, **kwargs):
    if name == "/jax/core/compile/backend_compile_duration":
        for events in _ACTIVE:
            events.append(duration)


jax.monitoring.register_event_duration_secs_listener(_listener)


@contextlib.contextmanager
def compiles():
    """``with compiles() as c: ...``; then ``len(c)`` is the number of XLA compilations."""
    events: list = []
    _ACTIVE.append(events)
    try:
        yield events
    finally:
        _ACTIVE.remove(events)
