"""Console output: the shared rich Console (which also writes what it prints into the run
folders' logs), a live progress bar per epoch, one row per epoch fitted to the width."""

from __future__ import annotations

import math
from contextlib import contextmanager

from rich.console import Console, NewLine
from rich.control import Control

from dltrain.errors import DltrainError, RunInterrupted


class RunConsole(Console):
    """rich's Console that also writes what it prints, as plain text, to the streams attached
    with ``logging_to`` (each run's dltrain.log): everything but live displays such as progress
    bars. A ``muted`` one prints into those streams only, while its live displays still show in
    the terminal (the folds of a cross-validation: one line each on the terminal, everything in
    their own logs)."""

    def __init__(self, *args, muted: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.muted = muted
        self._logs: list[Console] = []

    def print(self, *objects, **kwargs) -> None:
        # A live display's refresh (Control) and the line it ends with (NewLine, from line()).
        live = bool(objects) and all(isinstance(o, (Control, NewLine)) for o in objects)
        if live or not self.muted:
            super().print(*objects, **kwargs)
        if not live:
            for log in self._logs:
                log.print(*objects, **kwargs)

    @contextmanager
    def logging_to(self, *streams):
        """While inside, what this console prints also goes to each text stream in ``streams``
        (at this console's width, without colour), and so does the sentence of an error or stop
        that ends the block."""
        logs = [Console(file=stream, width=self.width, color_system=None, force_terminal=False,
                        force_jupyter=False, highlight=False, emoji=False, no_color=True)
                for stream in streams]
        self._logs.extend(logs)
        try:
            yield self
        except BaseException as error:
            ending = _ending(error)
            for log in logs if ending else ():
                log.print(ending, markup=False, soft_wrap=True)
            raise
        finally:
            for log in logs:
                self._logs.remove(log)

    def muted_copy(self) -> "RunConsole":
        """A muted console on the same terminal (see the class)."""
        return RunConsole(file=self.file, width=self.width, highlight=False, muted=True, quiet=self.quiet,
                          force_terminal=self.is_terminal, color_system=self.color_system)


def muted_copy(out: Console) -> RunConsole:
    """``out``'s muted copy (a plain rich Console, as a test may pass, gets one on its file)."""
    if isinstance(out, RunConsole):
        return out.muted_copy()
    return RunConsole(file=out.file, width=out.width, highlight=False, muted=True)


def _ending(error: BaseException) -> str | None:
    """How a log says why the output stopped: the error's own sentence where it has one."""
    if isinstance(error, (SystemExit, GeneratorExit)):
        return None
    if isinstance(error, DltrainError):
        return f"Error: {error}"
    if isinstance(error, RunInterrupted):
        return str(error)
    if isinstance(error, KeyboardInterrupt):
        return "Interrupted."
    return f"Error: {type(error).__name__}: {error}"


console = RunConsole(highlight=False)
error_console = Console(stderr=True, highlight=False)


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


class EpochTable:
    """Prints a header once, then one aligned row per epoch as training goes, fitted to the
    console's width: headers are abbreviated first, then the least important columns are left out
    (named once, above the header); a number is never cut. ``priority``: the columns, most
    important first (default: their order). A value that is not finite is flagged ``(!)``. A
    row's ``note`` (a small model's w and b) ends the row when it fits the width, else it takes a
    line of its own beneath the row."""

    def __init__(self, columns: list[str], out: Console = console, *, priority: list[str] | None = None):
        self.columns = list(columns)
        self.priority = [c for c in (priority or columns) if c in self.columns]
        self.priority += [c for c in self.columns if c not in self.priority]
        self.out = out
        self.shown: list[str] | None = None  # the columns that fit, in their order
        self.headers: dict[str, str] = {}
        self.widths: dict[str, int] = {}

    def layout(self, width: int) -> list[str]:
        """Choose the columns and headers that fit ``width`` characters: every column by its
        full name when they fit, else abbreviated and, least important first, left out (the
        first column always stays)."""
        self._fit(lambda column: column, width)
        if len(self.shown) < len(self.columns):
            self._fit(abbreviated, width)
        return self.shown

    def _fit(self, name, width: int) -> None:
        self.headers = {c: name(c) for c in self.columns}
        self.widths = {c: max(len(self.headers[c]), _value_width(c)) for c in self.columns}
        self.shown = list(self.columns)
        while len(self.shown) > 1 and sum(self.widths[c] for c in self.shown) + _GAP * (len(self.shown) - 1) > width:
            self.shown.remove(next(c for c in reversed(self.priority) if c in self.shown and c != self.columns[0]))

    def row(self, values: dict, note: str | None = None) -> None:
        from rich.markup import escape

        if self.shown is None:
            self.layout(self.out.width)
            left_out = [c for c in self.columns if c not in self.shown]
            if left_out:
                self.out.print(f"[dim]Not shown at {self.out.width} columns: {', '.join(left_out)} "
                               f"(all are in metrics.json).[/dim]")
            header = (" " * _GAP).join(self.headers[c].rjust(self.widths[c]) for c in self.shown)
            self.out.print(f"[bold]{escape(header)}[/bold]", soft_wrap=True)
        cells = []
        for column in self.shown:
            value, width = values.get(column), self.widths[column]
            text = cell(value, width).rjust(width)
            cells.append(f"[bold red]{text}[/bold red]" if _flagged(value) else text)
        line = (" " * _GAP).join(cells)
        if note:
            width = sum(self.widths[c] for c in self.shown) + _GAP * (len(self.shown) - 1)
            if width + _GAP + len(note) <= self.out.width:
                line += " " * _GAP + escape(note)
            else:  # beneath the row, indented past its first column
                line += "\n" + " " * (self.widths[self.shown[0]] + _GAP) + escape(note)
        self.out.print(line, soft_wrap=True)


_GAP = 2  # spaces between columns
# What a header may be shortened to when the full names do not fit.
_SHORTER = (("train_", "trn_"), ("accuracy", "acc"), ("macro_f1", "f1"), ("roc_auc", "auc"),
            ("log_rmse", "lrmse"), ("seconds", "sec"))


def abbreviated(column: str) -> str:
    for long, short in _SHORTER:
        column = column.replace(long, short)
    return column


def _value_width(column: str) -> int:
    """The characters a column's values need: a metric's 10 (-1.234e+05, 12345.6789)."""
    return {"epoch": 5, "lr": 9, "seconds": 8, "folds": 5}.get(column, 10)


def _flagged(value) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def cell(value, width: int) -> str:
    """``value`` as fmt writes it, with fewer decimals when that is longer than ``width`` (a
    number is rounded, never cut); a value that is not finite ends in ``(!)``."""
    text = fmt(value)
    if _flagged(value):
        return f"{text}(!)"
    if isinstance(value, float) and len(text) > width:
        kind = "e" if "e" in text else "f"
        for digits in (3, 2, 1, 0):
            text = f"{value:.{digits}{kind}}"
            if len(text) <= width:
                break
        if len(text) > width and kind == "f":
            text = f"{value:.2e}"
    return text


def plural(count: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class EpochProgress:
    """A transient progress bar over the batches of one epoch (silent when output is not a terminal)."""

    def __init__(self, enabled: bool, out: Console = console):
        self.enabled = enabled and out.is_terminal
        self._progress = None
        self.out = out

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
                TimeRemainingColumn(), console=self.out, transient=True,
            )
            self._progress.start()
        return self

    def start_epoch(self, epoch: int, steps: int):
        if self._progress is not None:
            for task in list(self._progress.task_ids):
                self._progress.remove_task(task)
            self._task = self._progress.add_task("train", total=steps, epoch=epoch)

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc):
        if self._progress is not None:
            self._progress.stop()
        return False
