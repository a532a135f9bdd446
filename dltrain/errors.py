"""The one error type for mistakes a user can make (a config value, a file, a shape)."""


class DltrainError(Exception):
    """A user-caused error: its message is one sentence naming the bad value and what is valid.

    The command line prints it without a traceback and exits with ``exit_code``.
    """

    exit_code = 2
