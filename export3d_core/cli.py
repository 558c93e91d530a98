"""The `export3d` command: one entry point, one sub-command per job (docs/architecture.md, "The staged API").

Each sub-command lives with the code it drives and registers itself here. `run_handler` is the one
place that turns failures into a one-line message: a user error (`Export3DError`) or a bad argument
exits 2, what the system refuses (`OSError`: a read-only or full disk, a path under a file, a
symlink loop) exits 1 with the path and the reason, and Ctrl-C exits 130 after the command's own
cleanup.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from export3d_core.errors import EXIT_INTERRUPTED, EXIT_SYSTEM_ERROR, EXIT_USER_ERROR, Export3DError

# (module, registration function): each adds its sub-commands to the parser.
COMMAND_MODULES = (
    ("export3d_core.view_commands", "add_view_commands"),
    ("export3d_core.data.intake", "add_crop_command"),
    ("export3d_core.data.synth_command", "add_synth_command"),
    ("export3d_core.data.demo_portraits", "add_demo_portraits_command"),
    ("export3d_core.data.prepare", "add_prepare_command"),
    ("export3d_core.train.commands", "add_train_commands"),
    ("export3d_core.eval.commands", "add_eval_command"),
    ("export3d_core.eval.real_command", "add_eval_real_command"),
    ("export3d_core.bench", "add_bench_command"),
    ("export3d_core.train.expression_reader", "add_expression_reader_command"),
    ("export3d_core.mesh_command", "add_mesh_command"),
    ("export3d_core.fit_command", "add_fit_command"),
    ("export3d_core.animation_commands", "add_animate_command"),
    ("export3d_core.batch", "add_batch_command"),
    ("export3d_core.drive_commands", "add_drive_command"),
)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (its default adds the whole usage); sub-parsers inherit it."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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


def describe_os_error(exc: OSError) -> str:
    """`path: reason` (both paths for a rename), the way a shell tool says it."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(paths)}: {reason}" if paths else reason


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_handler(args: argparse.Namespace) -> int:
    """Run a parsed sub-command; every failure a user can cause becomes one line on stderr."""
    prefix = f"export3d {args.command}: error:"
    try:
        return int(args.handler(args) or 0)
    except Export3DError as exc:
        print(f"{prefix} {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except OSError as exc:
        print(f"{prefix} {_one_line(describe_os_error(exc))}", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except MemoryError:
        print(f"{prefix} not enough memory for this command", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except KeyboardInterrupt:
        print(f"export3d {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
