"""Optimisers: plain SGD and Adam, both after global-norm gradient clipping, updating parameters in place.

Contract: ``clip_grads(grads, theta)`` rescales the gradients together so their global L2 norm is at most
``theta`` (d2l's ``grad_clipping``; ``theta = 0`` leaves them alone) and returns the norm before clipping.
An optimiser's ``step(params, grads)`` changes ``params`` in place; ``state()`` returns its whole state as a
flat dict of arrays (what a checkpoint stores) and ``load_state`` restores it exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import InputError

__all__ = ["SGD", "Adam", "clip_grads", "global_norm", "make_optimizer"]

Array = NDArray[Any]


def global_norm(grads: Mapping[str, Array]) -> float:
    """sqrt(sum of squares of every element of every gradient)."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def clip_grads(grads: MutableMapping[str, Array], theta: float) -> float:
    """Scale every gradient by theta / norm when the global norm exceeds ``theta > 0``; return the norm."""
    norm = global_norm(grads)
    if theta > 0 and norm > theta:
        scale = theta / norm
        for g in grads.values():
            g *= scale
    return norm


class SGD:
    """p <- p - lr * g."""

    name = "sgd"

    def __init__(self, params: Mapping[str, Array], lr: float) -> None:
        self.lr = lr

    def step(self, params: MutableMapping[str, Array], grads: Mapping[str, Array]) -> None:
        for k, p in params.items():
            p -= self.lr * grads[k]

    def state(self) -> dict[str, Array]:
        return {}

    def load_state(self, state: Mapping[str, Array]) -> None:
        if state:
            raise InputError(f"SGD has no state, but the checkpoint stores {sorted(state)}")


class Adam:
    """Adam (Kingma & Ba 2015) with bias correction: m, v are running moments of g and g**2."""

    name = "adam"

    def __init__(
        self,
        params: Mapping[str, Array],
        lr: float,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.t = 0
        self.m = {k: np.zeros_like(p) for k, p in params.items()}
        self.v = {k: np.zeros_like(p) for k, p in params.items()}

    def step(self, params: MutableMapping[str, Array], grads: Mapping[str, Array]) -> None:
        self.t += 1
        b1, b2 = self.beta1, self.beta2
        # fold both bias corrections into the step size (the paper's "more efficient" ordering)
        lr_t = self.lr * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        eps_t = self.eps * math.sqrt(1 - b2**self.t)
        for k, p in params.items():
            g, m, v = grads[k], self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * (g * g)
            p -= lr_t * m / (np.sqrt(v) + eps_t)

    def state(self) -> dict[str, Array]:
        out: dict[str, Array] = {"t": np.array(self.t, dtype=np.int64)}
        out.update({f"m/{k}": v for k, v in self.m.items()})
        out.update({f"v/{k}": v for k, v in self.v.items()})
        return out

    def load_state(self, state: Mapping[str, Array]) -> None:
        expected = {"t", *(f"m/{k}" for k in self.m), *(f"v/{k}" for k in self.v)}
        if set(state) != expected:
            raise InputError(f"Adam state must hold {sorted(expected)}, got {sorted(state)}")
        t = np.asarray(state["t"])
        if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
            raise InputError(f"Adam step count must be a non-negative integer, got {t!r}")
        for moments, prefix in ((self.m, "m/"), (self.v, "v/")):
            for k, current in moments.items():
                a = np.asarray(state[prefix + k])
                if a.shape != current.shape or a.dtype != current.dtype:
                    raise InputError(
                        f"Adam state {prefix + k} has shape {a.shape} {a.dtype}, "
                        f"expected {current.shape} {current.dtype}"
                    )
                moments[k] = a.copy()
        self.t = int(t)


def make_optimizer(name: str, params: Mapping[str, Array], lr: float) -> SGD | Adam:
    if name == "sgd":
        return SGD(params, lr)
    if name == "adam":
        return Adam(params, lr)
    raise InputError(f"--optimizer must be sgd or adam, got {name!r}")
