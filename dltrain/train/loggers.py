"""The loggers a run reports to, as one: ``logger=[tensorboard,csv,mlflow]`` (any of them, or
none) behind the interface the engine calls. Each logger answers the same calls, in this order:

    start(model, optimizer, data, device, first_epoch, history)  before the first epoch
    step(step, loss)           every ``step_every`` optimizer steps (0: never)
    epoch_end(epoch, row)      each epoch's metrics row (metrics.json's history row)
    flush()                    a checkpoint was written: put what is logged so far on disk
    finish(result, data, member)  the end of a finished run
    close(status)              finished, failed or interrupted; a second close does nothing

``history`` is a resumed run's rows of the epochs its checkpoint holds (empty for a new run).
RunLogger (tensorboard.py) implements every call; the others derive from Logger and implement
the calls they use."""

from __future__ import annotations

import math

# Exceptions that mean the user stopped the run (Ctrl-C, SIGTERM), not that it failed.
_INTERRUPTIONS = ("KeyboardInterrupt", "StopRequested", "RunInterrupted")


class Logger:
    """A logger that does nothing until a subclass says otherwise."""

    step_every = 0

    def start(self, model, optimizer, data, device, first_epoch: int = 1, history=()) -> None:
        pass

    def step(self, step: int, loss) -> None:
        pass

    def epoch_end(self, epoch: int, row: dict) -> None:
        pass

    def flush(self) -> None:
        pass

    def finish(self, result, data, member) -> None:
        self.close("finished")

    def close(self, status: str) -> None:
        pass


class Loggers:
    """Several loggers as one (none with logger=none). ``with loggers:`` around training closes
    each as failed or interrupted when training raises."""

    def __init__(self, loggers: list):
        self.loggers = list(loggers)
        # The engine calls step at every multiple of this; each logger takes its own multiples.
        self.step_every = math.gcd(*(logger.step_every for logger in self.loggers))

    def start(self, model, optimizer, data, device, first_epoch: int = 1, history=()) -> None:
        for logger in self.loggers:
            logger.start(model, optimizer, data, device, first_epoch=first_epoch, history=history)

    def step(self, step: int, loss) -> None:
        for logger in self.loggers:
            if logger.step_every and step % logger.step_every == 0:
                logger.step(step, loss)

    def epoch_end(self, epoch: int, row: dict) -> None:
        for logger in self.loggers:
            logger.epoch_end(epoch, row)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def finish(self, result, data, member) -> None:
        try:
            for logger in self.loggers:
                logger.finish(result, data, member)
        finally:  # one that failed to finish leaves none of the others open
            self.close("failed")

    def close(self, status: str) -> None:
        for logger in self.loggers:
            logger.close(status)

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback):
        if kind is not None:
            interrupted = any(c.__name__ in _INTERRUPTIONS for c in kind.__mro__)
            self.close("interrupted" if interrupted else "failed")
        return False
