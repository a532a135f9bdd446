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


# What the machine throws (a full disk, a read-only or deleted folder, no memory) is not a user's
# mistake nor a bug: one sentence naming the path and the cause, then exit 1.
ENVIRONMENT_EXIT_CODE = 1

_CAUSES = {  # errno name -> the sentence, {path} filled in
    "ENOSPC": "No space is left on the device to write {path}; free some space and try again",
    "EDQUOT": "The disk quota is used up, so {path} cannot be written; free some space and try again",
    "EROFS": "{path} is on a read-only file system; use a folder you can write to",
    "EACCES": "Permission denied for {path}; use a folder you can write to, or change its permissions",
    "EPERM": "The operating system does not permit writing {path}; use a folder you can write to",
    "ENOENT": "{path} does not exist (any more): was it deleted or moved while dltrain used it?",
    "EIO": "Input/output error on {path}: the disk or the network share holding it failed",
    "ENOTDIR": "{path} cannot be made: a folder on its way is a file",
}


def environment_sentence(error: BaseException) -> str | None:
    """One sentence for what the machine threw (an OSError, or running out of memory) naming the
    path and the cause; None for anything else (a bug, or a user's mistake)."""
    import errno

    if _out_of_memory(error):
        lines = str(error).strip().splitlines()
        detail = f" ({lines[0][:200].rstrip('.')})" if lines else ""
        return (f"Out of memory{detail}; use a smaller model or data.batch_size, or a machine with "
                f"more memory.")
    if not isinstance(error, OSError):
        return None
    path = error.filename
    template = _CAUSES.get(errno.errorcode.get(error.errno, ""))
    if path is None:
        cause = error.strerror or str(error) or type(error).__name__
        return f"The operating system refused an operation: {cause}."
    shown = repr(str(path))
    if template is None:
        return f"{shown} cannot be used: {error.strerror or type(error).__name__}."
    return template.format(path=shown) + ("." if not template.endswith("?") else "")


def _out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":  # torch's, CUDA or not
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)


def failure_sentence(error: BaseException) -> str:
    """Why a run failed, as its metrics.json records it: a user error's own sentence, what the
    machine threw, or an unexpected error (a bug: its type and first line)."""
    if isinstance(error, DltrainError):
        return str(error)
    sentence = environment_sentence(error)
    if sentence is not None:
        return sentence
    lines = str(error).strip().splitlines()
    return f"unexpected {type(error).__name__}" + (f": {lines[0][:300]}" if lines else "")


def note_run_folder(error: BaseException, folder) -> None:
    """Remember on ``error`` the run folder it escaped from (the innermost one, a fold's rather
    than its cross-validation's): where the command line writes a bug's traceback."""
    if run_folder_of(error) is None:
        try:
            error.dltrain_run_folder = folder
        except AttributeError:  # an exception type without a __dict__
            pass


def run_folder_of(error: BaseException):
    """The run folder ``error`` escaped from (note_run_folder), None when it came from elsewhere."""
    return getattr(error, "dltrain_run_folder", None)
