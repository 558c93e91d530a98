"""`python -m export3d_core.train [train|pretrain-clebs] ...`: the entry point torchrun launches.

`torchrun --nproc_per_node N -m export3d_core.train --preset demo --data D --out RUN` runs
`train` under DDP (the sub-command name may be left out). Same exit codes as `export3d`.
"""
from __future__ import annotations

import sys

from export3d_core.cli import OneLineParser, run_handler
from export3d_core.train.commands import add_train_commands

COMMANDS = ("train", "pretrain-clebs", "expression-gain", "train-face-features")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["train", *argv]
    parser = OneLineParser(prog="python -m export3d_core.train")
    add_train_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return run_handler(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
