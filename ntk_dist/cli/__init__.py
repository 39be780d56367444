"""The ``ntk-dist`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``. Bad input (a ValueError from validation) prints one line
naming the field and the fix, and exits with code 2; argparse's own usage errors
exit 2 as well.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommand modules, in the order they appear in ``ntk-dist --help``.
COMMANDS: tuple[str, ...] = ("check", "gram", "report", "run", "validate", "version")


class UsageError(ValueError):
    """Bad input from the user: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ntk-dist",
        description="Wide-network theory at cluster scale: kernels, Gram matrices, phase sweeps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as err:  # validation errors name the field and the fix
        print(f"ntk-dist {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ntk-dist {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
