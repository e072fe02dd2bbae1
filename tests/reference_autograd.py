"""An independent reverse-mode autograd, for cross-checking the generated code.

It shares nothing with ``grusym.symbolic.derive`` or ``codegen``: it interprets each variant's declared
SymPy matrix expressions numerically on a tape of NumPy nodes (micrograd's design, for arrays) and
backpropagates by the textbook rules of each node. Only the equations are shared, which is the point: the
derivation and the code generator are what this checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import sympy as sp

from grusym.symbolic.cell import Cell


class Node:
    def __init__(self, value: np.ndarray, parents: tuple[tuple[Node, Callable], ...] = ()) -> None:
        self.value = np.asarray(value, dtype=np.float64)
        self.parents = parents  # (parent, vjp: upstream grad -> grad for the parent)
        self.grad = np.zeros_like(self.value)

    def __add__(self, o: Node) -> Node:
        return Node(
            self.value + o.value,
            (
                (self, lambda g: _unbroadcast(g, self.value.shape)),
                (o, lambda g: _unbroadcast(g, o.value.shape)),
            ),
        )

    def __mul__(self, o: Node) -> Node:
        return Node(
            self.value * o.value,
            (
                (self, lambda g: _unbroadcast(g * o.value, self.value.shape)),
                (o, lambda g: _unbroadcast(g * self.value, o.value.shape)),
            ),
        )

    def scale(self, c: float) -> Node:
        return Node(c * self.value, ((self, lambda g: c * g),))

    def power(self, k: int) -> Node:
        """x ** k for an integer k (negative too): d/dx = k x^(k - 1)."""
        return Node(self.value**k, ((self, lambda g: g * k * self.value ** (k - 1)),))

    def row_sum(self) -> Node:
        """Each row's sum in every column of that row: y[i, j] = sum_k x[i, k]; dx[i, k] = sum_j g[i, j]."""
        width = self.value.shape[1]
        return Node(
            np.repeat(self.value.sum(axis=1, keepdims=True), width, axis=1),
            ((self, lambda g: np.repeat(g.sum(axis=1, keepdims=True), width, axis=1)),),
        )

    def __matmul__(self, o: Node) -> Node:
        return Node(self.value @ o.value, ((self, lambda g: g @ o.value.T), (o, lambda g: self.value.T @ g)))

    def apply(self, fn: type) -> Node:
        """The primitive named ``fn.label``, by its textbook formula and derivative (kinks: 0, as torch)."""
        x = self.value
        if fn.label == "sigmoid":
            y = 1.0 / (1.0 + np.exp(-x))
            dy = y * (1 - y)
        elif fn.label == "tanh":
            y = np.tanh(x)
            dy = 1 - y * y
        elif fn.label == "relu":
            y, dy = np.where(x > 0, x, 0.0), (x > 0).astype(float)
        elif fn.label == "softplus":
            y, dy = np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0), 1 / (1 + np.exp(-x))
        elif fn.label == "exp":
            y = dy = np.exp(x)
        elif fn.label == "identity":
            y, dy = x.copy(), np.ones_like(x)
        elif fn.label == "hard_sigmoid":  # Keras 2: clip(0.2 x + 0.5, 0, 1)
            y = np.clip(0.2 * x + 0.5, 0, 1)
            dy = np.where((x > -2.5) & (x < 2.5), 0.2, 0.0)
        elif fn.label == "softsign":  # x / (1 + |x|): quotient rule on each side, 1/(1 + |x|)^2
            y, dy = x / (1 + np.abs(x)), 1 / (1 + np.abs(x)) ** 2
        elif fn.label == "abs":
            y, dy = np.abs(x), np.sign(x)  # sign(0) = 0, as torch
        elif fn.label == "sqrt":
            y = np.sqrt(x)
            dy = 0.5 / y
        elif fn.label == "log":
            y, dy = np.log(x), 1 / x
        elif fn.label == "leaky_relu":  # torch's default slope 0.01, also at 0
            y, dy = np.where(x > 0, x, 0.01 * x), np.where(x > 0, 1.0, 0.01)
        elif fn.label == "elu":  # alpha 1
            y, dy = (
                np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
                np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
            )
        elif fn.label == "gelu":  # Hendrycks & Gimpel's tanh approximation, product and chain rules
            k = math.sqrt(2 / math.pi)
            u = k * (x + 0.044715 * x**3)
            th = np.tanh(u)
            y = 0.5 * x * (1 + th)
            dy = 0.5 * (1 + th) + 0.5 * x * (1 - th**2) * k * (1 + 3 * 0.044715 * x**2)
        elif fn.label == "silu":  # x sigmoid(x)
            sig = 1 / (1 + np.exp(-x))
            y, dy = x * sig, sig + x * sig * (1 - sig)
        else:
            raise NotImplementedError(fn)
        return Node(y, ((self, lambda g: g * dy),))


def _unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def backprop(out: Node) -> None:
    order, seen = [], set()

    def visit(node: Node) -> None:
        if id(node) not in seen:
            seen.add(id(node))
            for parent, _ in node.parents:
                visit(parent)
            order.append(node)

    visit(out)
    out.grad = np.ones_like(out.value)
    for node in reversed(order):
        for parent, vjp in node.parents:
            parent.grad = parent.grad + vjp(node.grad)


def evaluate(expr: sp.Basic, env: dict[str, Node], n: int) -> Node:
    """Evaluate a SymPy matrix expression of a cell step on tape nodes."""
    if isinstance(expr, sp.MatrixSymbol):
        return env[expr.name]
    if isinstance(expr, sp.OneMatrix):
        rows = n if expr.shape[0] != 1 else 1
        width = next(v.value.shape[1] for k, v in env.items() if k.endswith("_prev"))
        return Node(np.ones((rows, 1 if expr.shape[1] == 1 else width)))
    if isinstance(expr, sp.MatAdd):
        nodes = [evaluate(a, env, n) for a in expr.args]
        total = nodes[0]
        for other in nodes[1:]:
            total = total + other
        return total
    if isinstance(expr, sp.HadamardProduct):
        nodes = [evaluate(a, env, n) for a in expr.args]
        total = nodes[0]
        for other in nodes[1:]:
            total = total * other
        return total
    matrices = [a for a in expr.args if a.is_Matrix] if isinstance(expr, sp.MatMul) else []
    if len(matrices) == 2 and isinstance(matrices[1], sp.OneMatrix) and matrices[1].shape[0] != 1:
        # v @ 1 (h, h) (times 1/h): a row's sum (mean) over the units, in every column of the row
        v = matrices[0]
        total = evaluate(v, env, n).row_sum()
        h = sp.Symbol("h", integer=True, positive=True)
        coeff = sp.Mul(*(a for a in expr.args if not a.is_Matrix)).subs(h, total.value.shape[1])
        return total.scale(float(coeff)) if coeff != 1 else total
    if isinstance(expr, sp.MatMul):
        coeff = sp.Integer(1)
        nodes = []
        for a in expr.args:
            if a.is_Matrix:
                nodes.append(evaluate(a, env, n))
            else:
                coeff *= a
        total = nodes[0]
        for other in nodes[1:]:
            total = total @ other
        return total.scale(float(coeff)) if coeff != 1 else total
    if isinstance(expr, sp.ZeroMatrix):
        width = next(v.value.shape[1] for k, v in env.items() if k.endswith("_prev"))
        return Node(np.zeros((n, width)))
    if isinstance(expr, sp.HadamardPower) and expr.exp.is_Integer:
        return evaluate(expr.base, env, n).power(int(expr.exp))
    if isinstance(expr, sp.matrices.expressions.applyfunc.ElementwiseApplyFunction):
        # SymPy merges nested applications into one function, e.g. x -> tanh(sigmoid(x)): apply the chain
        x = sp.Symbol("x")
        body = expr.function(x)
        chain = []
        while body != x:
            chain.append(type(body))
            (body,) = body.args
        node = evaluate(expr.expr, env, n)
        for fn in reversed(chain):
            node = node.apply(fn)
        return node
    raise NotImplementedError(type(expr))


def loss_and_grads(cell: Cell, params: dict, X: np.ndarray, Y: np.ndarray, h0):
    """Loss and gradients of the unrolled cell + char-LM head, by the tape above (float X).

    h0: the initial state (n, h), or a tuple of them in ``cell.states`` order; gradients "<state>0".
    """
    value, grads, _ = unroll(cell, params, X, Y, h0)
    return value, grads


def unroll(cell: Cell, params: dict, X: np.ndarray, Y: np.ndarray, h0, lengths=None, aux=None):
    """(loss, gradients, last states) of the unrolled cell + char-LM head, by the tape above.

    X: (T, n, d) floats, or (T, n) integer token ids (one-hot rows; then no "X" gradient); h0: the initial
    state (n, h) or a tuple in ``cell.states`` order; lengths: None or (n,) true lengths, in any order (the
    mean runs over the positions t < lengths[i], the last state of sequence i is the one after its step
    lengths[i] - 1). Last states: a tuple in ``cell.states`` order. aux: the per-step inputs (c.input),
    name -> (T, n, h), constants on the tape (no gradient is returned for them).
    """
    tokens = np.issubdtype(np.asarray(X).dtype, np.integer)
    if tokens:
        # the width of the one-hot rows: the rows of an input weight (named freely: SRU's W)
        width = next(params[t.weight].shape[0] for s in cell.steps for t in s.terms if t.left == "X")
        X = np.eye(width)[X]
    T, n, _ = X.shape
    lengths = np.full(n, T) if lengths is None else np.asarray(lengths)
    count = int(lengths.sum())
    states = list(cell.states)
    initial = (h0,) if len(states) == 1 else tuple(h0)
    leaves = {k: Node(v if v.ndim == 2 else v[None, :]) for k, v in params.items()}
    for s, v in zip(states, initial, strict=True):
        leaves[f"{s}0"] = Node(v)
    xs = [Node(X[t]) for t in range(T)]
    prev = {s: leaves[f"{s}0"] for s in states}
    last = {s: np.array(v, dtype=np.float64) for s, v in zip(states, initial, strict=True)}
    total = None
    for t in range(T):
        env = {**leaves, "X": xs[t], **{f"{s}_prev": prev[s] for s in states}}
        env |= {k: Node(v[t]) for k, v in (aux or {}).items()}
        for step in cell.steps:
            env[step.name] = evaluate(step.expr, env, n)
        prev = {s: env[s] for s in states}
        valid = t < lengths
        for s in states:
            last[s][valid] = env[s].value[valid]
        logits = env["h"] @ leaves["W_hq"] + leaves["b_q"]
        # mean cross-entropy over the valid positions, by log-sum-exp with its own vjp
        z = logits.value - logits.value.max(axis=1, keepdims=True)
        p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        rows = np.log(np.exp(z).sum(axis=1)) - z[np.arange(n), Y[t]]
        ce = float(np.sum(rows[valid]))
        onehot = np.eye(logits.value.shape[1])[Y[t]]
        mask = valid[:, None].astype(float)
        node = Node(
            np.array(ce / count), ((logits, lambda g, p=p, oh=onehot, m=mask: g * m * (p - oh) / count),)
        )
        total = node if total is None else total + node
    backprop(total)
    grads = {k: (leaves[k].grad if params[k].ndim == 2 else leaves[k].grad[0]) for k in params}
    for s in states:
        grads[f"{s}0"] = leaves[f"{s}0"].grad
    if not tokens:
        grads["X"] = np.stack([x.grad for x in xs])
    return float(total.value), grads, tuple(last[s] for s in states)
