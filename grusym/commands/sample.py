"""``grusym sample``: continue a primer with a trained language model read from its checkpoint.

Nothing is trained: the checkpoint's parameters and vocabulary are all it needs (not the training text), so
any primer and length can be tried on a finished run. Prints the primer followed by the continuation, as
``Trained.sample`` returns it.
Exit status: 0 done, 2 bad input (a bad option, a damaged or foreign checkpoint, primer characters the
model has never seen: all of them are named).
"""

from __future__ import annotations

import argparse

from ..cli import non_negative_float, non_negative_int, positive_int

HELP = "continue a primer with a trained language model (greedy, or sampled with --temperature)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "checkpoint",
        metavar="RUN",
        help="the folder grusym train wrote to (or its checkpoint.npz; after --variant a,b: one subfolder)",
    )
    p.add_argument("--primer", metavar="TEXT", help="text to continue (default: the training log's primer)")
    p.add_argument(
        "--length",
        metavar="N",
        type=non_negative_int,
        default=200,
        help="characters to generate (default: 200)",
    )
    p.add_argument(
        "--temperature",
        metavar="T",
        type=non_negative_float,
        default=0.0,
        help="0: always the most likely character (default); 1: the model's own distribution; between: "
        "more conservative draws",
    )
    p.add_argument(
        "--top-k",
        metavar="K",
        type=positive_int,
        default=None,
        help="draw only among the K most likely characters (needs --temperature > 0)",
    )
    p.add_argument(
        "--seed",
        metavar="S",
        type=non_negative_int,
        default=0,
        help="seed of the draws (default: 0): the same seed repeats a sample",
    )


def run(args: argparse.Namespace) -> int:
    from ..train import load_trained

    model = load_trained(args.checkpoint)
    text = model.sample(
        args.primer, args.length, temperature=args.temperature, top_k=args.top_k, seed=args.seed
    )
    print(text)
    return 0
