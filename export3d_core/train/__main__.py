"""`python -m export3d_core.train [train|pretrain-clebs] ...`: the entry point torchrun launches.

`torchrun --nproc_per_node N -m export3d_core.train --preset demo --data D --out RUN` runs
`train` under DDP (the sub-command name may be left out). Same exit codes as `export3d`.
"""
from __future__ import annotations

import argparse
import sys

from export3d_core.errors import Export3DError
from export3d_core.train.commands import EXIT_INTERRUPTED, add_train_commands

COMMANDS = ("train", "pretrain-clebs")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv = ["train", *argv]
    parser = argparse.ArgumentParser(prog="python -m export3d_core.train")
    add_train_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except Export3DError as exc:
        print(f"export3d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"export3d {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
