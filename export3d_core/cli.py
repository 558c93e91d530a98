"""The `export3d` command: one entry point, one sub-command per job (DESIGN.md §2).

Each sub-command lives with the code it drives and registers itself here. A user error
(`Export3DError`) prints one line and exits 2; Ctrl-C exits 130 after the command's own cleanup.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from export3d_core.errors import Export3DError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # the shell's code for SIGINT

# (module, registration function): each adds its sub-commands to the parser.
COMMAND_MODULES = (
    ("export3d_core.view_commands", "add_view_commands"),
    ("export3d_core.data.intake", "add_crop_command"),
    ("export3d_core.data.synthetic", "add_synth_command"),
    ("export3d_core.data.prepare", "add_prepare_command"),
    ("export3d_core.train.commands", "add_train_commands"),
    ("export3d_core.eval.commands", "add_eval_command"),
    ("export3d_core.eval.real_command", "add_eval_real_command"),
    ("export3d_core.bench", "add_bench_command"),
    ("export3d_core.animation_commands", "add_animate_command"),
    ("export3d_core.batch", "add_batch_command"),
    ("export3d_core.drive_commands", "add_drive_command"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="export3d",
        description="Export3D: one portrait photo in, an expression-controllable 3D head out.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name, function_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        getattr(module, function_name)(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help()
        return 2
    return run_handler(args)


def run_handler(args: argparse.Namespace) -> int:
    """Run a parsed sub-command: user errors print one line (exit 2), Ctrl-C exits 130."""
    try:
        return int(args.handler(args) or 0)
    except Export3DError as exc:
        print(f"export3d {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"export3d {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
