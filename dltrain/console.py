"""Console output: the shared rich Console, a live progress bar per epoch, one row per epoch."""

from __future__ import annotations

import math

from rich.console import Console

console = Console(highlight=False)
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
    """Prints a header once, then one aligned row per epoch as training goes."""

    def __init__(self, columns: list[str], out: Console = console):
        self.columns = columns
        self.widths = [max(len(c), 8) for c in columns]
        self.out = out
        self._header_printed = False

    def row(self, values: dict) -> None:
        if not self._header_printed:
            header = "  ".join(c.rjust(w) for c, w in zip(self.columns, self.widths))
            self.out.print(f"[bold]{header}[/bold]", soft_wrap=True)
            self._header_printed = True
        cells = [fmt(values.get(c)).rjust(w) for c, w in zip(self.columns, self.widths)]
        self.out.print("  ".join(cells), soft_wrap=True)


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
