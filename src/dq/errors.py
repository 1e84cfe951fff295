"""The one exception type for mistakes a user can fix (bad config, missing data package).

The CLI prints such an error as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""

import re


class DQUserError(ValueError):
    """A problem with the user's input: the message says what was wrong and what is allowed."""


class RunInterrupted(Exception):
    """A stop signal stopped training after a batch (or, a second Ctrl-C, at once); last.pt
    holds where it can go on from, ``at`` (epoch, batch, signal) where it stopped.

    ``dq-train`` exits with ``EXIT_TRY_AGAIN`` (75, EX_TEMPFAIL) so a scheduler's requeue
    hook can tell "continue me with resume=<run dir>" from a failure, or with
    ``EXIT_BY_USER`` (130, as a shell reports Ctrl-C) when a person pressed Ctrl-C.
    """

    def __init__(self, message: str, *, by_user: bool = False, at: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.exit_code = EXIT_BY_USER if by_user else EXIT_TRY_AGAIN
        self.at = at or {}


class RunFailed(RuntimeError):
    """The run cannot go on, for a reason the message says in one line (exit 1, run.json
    ``failed``); what it finished before stays on disk as it was."""


class TrainingDiverged(RunFailed):
    """A batch's loss, one of its terms or a gradient was NaN or infinite (or, with
    ``trainer.nonfinite=skip_batch``, every batch of an epoch was skipped).

    The message is one line naming the epoch, the batch and the culprit; the optimizer did
    not step on that batch and the checkpoints of earlier epochs stay as they were.
    """


class DiskFull(RunFailed):
    """A write found no room: full filesystem, spent quota or file-size limit (ENOSPC,
    EDQUOT, EFBIG). The message names the file; the file it would have replaced is intact."""


EXIT_TRY_AGAIN = 75  # EX_TEMPFAIL from sysexits.h: "temporary failure, try again"
EXIT_BY_USER = 130  # 128 + SIGINT: what a shell reports for a program stopped by Ctrl-C


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character a terminal or a viewer would act on written as its
    escape (``\\x1b``): C0 and C1 controls, line and paragraph separators, bidi overrides
    and other format characters. A value quoted in a message stays one line, and a metric
    name from a hostile metrics.json cannot move the cursor or reorder a report's text.
    Characters in ``keep`` (a page's ``"\\n"``) pass as they are."""
    return "".join(char if char.isprintable() or char in keep else repr(char)[1:-1] for char in text)


def first_line(text: str) -> str:
    """The first non-blank line of a (library's multi-line) message, for a one-line report."""
    # Split at line breaks only: str.splitlines also splits at \x1c-\x1e, \x85 and \u2028,
    # which a value quoted in the message may hold (found by tests/test_fuzz_config.py).
    return next((line.strip() for line in re.split(r"[\r\n]+", text) if line.strip()), text.strip())
