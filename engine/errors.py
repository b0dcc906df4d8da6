"""Errors a user can cause.

Anything raised as :class:`UserError` names the bad input and what would be
valid; the CLI prints its message on one line and exits with status 2, the app
shows it as a message. Everything else is a bug and keeps its traceback.
"""


class UserError(ValueError):
    """A bad path, value, file or checkpoint given by the user."""
