"""The ``ntk-dist`` command line.

Each subcommand lives in its own module of this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``. Bad input (a ValueError from validation) prints one line
naming the field and the fix, and exits with code 2; argparse's own usage errors
exit 2 as well. A batch that failed after all its retries exits 1; Ctrl-C exits 130 and
SIGTERM 143, both after a clean shutdown, saying that rerunning resumes.
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


def handle_sigterm() -> None:
    """Turn SIGTERM into :class:`ntk_dist.core.errors.Terminated` in the main thread (a
    clean shutdown, like Ctrl-C). Called again after Ray starts, which installs its own."""
    import signal
    import threading

    from ntk_dist.core.errors import Terminated

    def terminate(signum, frame):
        raise Terminated

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, terminate)


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    args = build_parser().parse_args(argv)
    # A deprecation (search.n_trials) reads like an error line: what, and what to write.
    warnings.formatwarning = lambda message, category, *rest, **kw: (
        f"ntk-dist {args.command}: warning: {message}\n"
    )
    previous = signal.getsignal(signal.SIGTERM)
    handle_sigterm()
    prefix = f"ntk-dist {args.command}"
    try:
        return _dispatch(args, prefix)
    finally:
        main_thread = threading.current_thread() is threading.main_thread()
        if previous is not None and main_thread:  # a caller's handler comes back
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args, prefix: str) -> int:
    from ntk_dist.core.errors import RESUME_HINT, ResumableError, Terminated

    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
        return code
    except ValueError as err:  # validation errors name the field and the fix
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 2
    except PermissionError as err:
        print(
            f"{prefix}: error: permission denied: {err.filename}; make it writable and rerun "
            "the same command to resume",
            file=sys.stderr,
        )
        return 2
    except ResumableError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted; {RESUME_HINT}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader left (`ntk-dist validate spec.yaml | head -1`): stop quietly, as cat
        # does. stdout is pointed at /dev/null so the interpreter's final flush cannot
        # raise the same error again at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status a shell reports for a closed pipe
    except BaseException as err:
        # SIGTERM can land inside a library's cleanup (Optuna releasing its journal lock),
        # which then fails in turn: the Terminated is that error's context.
        if not _terminated(err, Terminated):
            raise
        print(f"{prefix}: terminated (SIGTERM); {RESUME_HINT}", file=sys.stderr)
        return 143


def _terminated(err: BaseException | None, kind) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return True
        seen.add(id(err))
        err = err.__context__
    return False


if __name__ == "__main__":
    raise SystemExit(main())
