"""Errors that are not the user's input: work stopped, what finished is kept.

The CLI reports each in one line and exits 1 (:class:`ResumableError`) or 143
(:class:`Terminated`, as a shell reports a process ended by SIGTERM); a ValueError is bad
input (exit 2).
"""

from __future__ import annotations

#: Said after every interruption: the directory is valid and the same command resumes.
RESUME_HINT = "finished work is stored; rerun the same command to resume"


class ResumableError(RuntimeError):
    """A failure outside the user's input (a batch that failed after all its retries);
    finished work is stored and rerunning the same command resumes."""


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM, so that it shuts down
    as on Ctrl-C (context managers exit, locks are released, Ray is shut down)."""
