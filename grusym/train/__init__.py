"""Training demo: recurrent models trained end to end with nothing but the generated NumPy functions.

Contract: every gradient of the recurrence comes from a generated module (``grusym.load(variant)``:
``loss_and_grads`` for the language model, ``forward``/``backward`` for the adding problem); nothing here
differentiates the cell. One stage per module: ``config`` (options and defaults), ``data`` (text,
vocabulary, held-out split, batches), ``tasks`` (language model, adding problem), ``optim`` (SGD, Adam,
clipping), ``checkpoint`` (atomic ``.npz``, no pickle), ``sample`` (text from a trained model), ``plots``
(PNG curves), ``progress`` (bar, deferred Ctrl-C) and ``loop``.

>>> from grusym.train import SAMPLE_TEXT, load_trained, make_config, train
>>> result = train(make_config(text=str(SAMPLE_TEXT), epochs=2), "runs/pride")  # doctest: +SKIP
>>> load_trained("runs/pride/checkpoint.npz").sample("Elizabeth ", 80, temperature=0.8)  # doctest: +SKIP
"""

from __future__ import annotations

from .config import Config, make_config
from .data import SAMPLE_TEXT
from .loop import Result, train
from .sample import Trained, generate, load_trained

__all__ = ["SAMPLE_TEXT", "Config", "Result", "Trained", "generate", "load_trained", "make_config", "train"]
