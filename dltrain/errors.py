"""The one error type for mistakes a user can make (a config value, a file, a shape)."""


class DltrainError(Exception):
    """A user-caused error: its message is one sentence naming the bad value and what is valid.

    The command line prints it without a traceback and exits with ``exit_code``.
    """

    exit_code = 2


class RunInterrupted(BaseException):
    """A run stopped on Ctrl-C (exit 130) or SIGTERM (exit 143) after saving a checkpoint that
    ``resume=RUN_DIR`` continues from. A BaseException, like KeyboardInterrupt, so that it stops
    a whole sweep (Hydra's job runner catches only Exception) and reaches the command line."""

    def __init__(self, run_dir, signal_number: int):
        import signal

        self.run_dir = run_dir
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number
        name = signal.Signals(signal_number).name
        super().__init__(f"Stopped by {name}; a checkpoint to resume from is saved in {run_dir}.")
