"""The one exception type for mistakes a user can fix (bad config, missing data package).

The CLI prints such an error as a single line and exits non-zero; anything else is a bug
and keeps its traceback.
"""


class DQUserError(ValueError):
    """A problem with the user's input: the message says what was wrong and what is allowed."""
