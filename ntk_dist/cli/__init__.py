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
import os
import sys
import warnings

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


#: What Ctrl-C prints: every command that writes results resumes when rerun.
INTERRUPTED = (
    "interrupted; finished work is kept: rerun the same command to resume where it stopped"
)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A deprecation (search.n_trials) reads like an error line: what, and what to write.
    warnings.formatwarning = lambda message, category, *rest, **kw: (
        f"ntk-dist {args.command}: warning: {message}\n"
    )
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return code
    except ValueError as err:  # validation errors name the field and the fix
        print(f"ntk-dist {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ntk-dist {args.command}: {INTERRUPTED}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`ntk-dist validate spec.yaml | head -1`): stop quietly, as cat
        # does. stdout is pointed at /dev/null so the interpreter's final flush cannot
        # raise the same error again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status a shell reports for a closed pipe


if __name__ == "__main__":
    raise SystemExit(main())
