"""Training demo: recurrent models trained end to end with nothing but the generated NumPy functions.

Contract: every gradient of the recurrence comes from a generated module (``grusym.load(variant)``:
``loss_and_grads`` for the language model, ``forward``/``backward`` for the adding problem); nothing here
differentiates the cell. One stage per module: ``config`` (options and defaults), ``data`` (text,
vocabulary, batches), ``tasks`` (language model, adding problem), ``optim`` (SGD, Adam, clipping),
``checkpoint`` (atomic ``.npz``, no pickle), ``sample`` (greedy text), ``plots`` (PNG curves), ``progress``
(bar, deferred Ctrl-C) and ``loop``.

>>> from grusym.train import make_config, train
>>> result = train(make_config(), "runs/toy-gru")  # doctest: +SKIP
"""

from __future__ import annotations

from .config import Config, make_config
from .loop import Result, train

__all__ = ["Config", "Result", "make_config", "train"]
