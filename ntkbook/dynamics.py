"""Stage-2 dynamics around a parent ``params_t``: linearized, centered, centered standard.

With ``delta = params - params_t`` and ``J`` the Jacobian of the logits at ``params_t``:

- standard:           ``f(params)``
- linearized:         ``f(params_t) + J delta``   (one ``jax.jvp``)
- centered:           ``J delta``                 (zero at ``params_t``)
- centered_standard:  ``f(params) - f(params_t)`` (section 6)

``apply_fn(params, x) -> logits`` is pure; BatchNorm statistics are closed over by the caller.
A function returning ``(logits, aux)`` can be used with ``has_aux=True`` (updating BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from ntkbook.models import ApplyFn, Params

DYNAMICS = ("standard", "linearized", "centered", "centered_standard")


def _delta(params: Params, params_t: Params) -> Params:
    return jax.tree_util.tree_map(lambda p, q: p - q, params, params_t)


def first_order_terms(apply_fn: Callable, params_t: Params, params: Params, x: jax.Array,
                      *, has_aux: bool = False) -> tuple:
    """``(f0, delta_f)`` or ``(f0, delta_f, aux)``: ``f(params_t)`` and
    ``J (params - params_t)``."""
    return jax.jvp(lambda p: apply_fn(p, x), (params_t,), (_delta(params, params_t),),
                   has_aux=has_aux)


def linearize(apply_fn: ApplyFn, params_t: Params) -> ApplyFn:
    """``f_lin(params, x) = f(params_t, x) + J(x; params_t)(params - params_t)``."""

    def f_lin(params: Params, x: jax.Array) -> jax.Array:
        f0, delta_f = first_order_terms(apply_fn, params_t, params, x)
        return f0 + delta_f

    return f_lin


def centered(apply_fn: ApplyFn, params_t: Params) -> ApplyFn:
    """``f_cen(params, x) = J(x; params_t)(params - params_t)``."""

    def f_cen(params: Params, x: jax.Array) -> jax.Array:
        return first_order_terms(apply_fn, params_t, params, x)[1]

    return f_cen


def centered_standard(apply_fn: ApplyFn, params_t: Params) -> ApplyFn:
    """``f(params, x) - f(params_t, x)``: the network minus its parent's output."""

    def f_cs(params: Params, x: jax.Array) -> jax.Array:
        return apply_fn(params, x) - jax.lax.stop_gradient(apply_fn(params_t, x))

    return f_cs


def make_dynamics(name: str, apply_fn: ApplyFn, params_t: Params) -> ApplyFn:
    """The ``(params, x) -> logits`` function of dynamics ``name`` around ``params_t``."""
    if name == "standard":
        return apply_fn
    builders = {"linearized": linearize, "centered": centered,
                "centered_standard": centered_standard}
    if name not in builders:
        raise ValueError(f"unknown dynamics {name!r}; choose from {', '.join(DYNAMICS)}")
    return builders[name](apply_fn, params_t)
