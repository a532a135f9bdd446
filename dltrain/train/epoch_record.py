"""What an epoch keeps of each training step for its metrics: the step's loss and the batch's
outputs, copied into two buffers allocated at the first step. A list of the steps' own tensors
would keep a small block alive after every step, between the step's freed temporaries of several
MiB, and the C heap could reuse none of those holes: the resident memory of a one-epoch CNN fit
on 128x128 images grew by about 200 MiB that way (bench/README.md, "Image folders")."""

from __future__ import annotations

import torch


class EpochRecord:
    """One member's losses (one per step, ``steps`` of them) and outputs (a row per training row
    visited, ``rows`` of them) over one epoch, in visiting order."""

    def __init__(self, steps: int, rows: int):
        self.steps, self.rows = steps, rows
        self._losses: torch.Tensor | None = None
        self._outputs: torch.Tensor | None = None
        self._step = self._row = 0

    @classmethod
    def resumed(cls, steps: int, rows: int, losses: torch.Tensor, outputs: torch.Tensor) -> "EpochRecord":
        """A record that goes on from a saved position (a stop request's cursor)."""
        record = cls(steps, rows)
        for loss in losses.unbind():
            record.add_loss(loss)
        if len(outputs):
            record.add_outputs(outputs)
        return record

    def add_loss(self, loss: torch.Tensor) -> None:
        if self._losses is None:
            self._losses = torch.empty(self.steps, dtype=loss.dtype, device=loss.device)
        self._losses[self._step] = loss.detach()
        self._step += 1

    def add_outputs(self, outputs: torch.Tensor) -> None:
        end = self._row + len(outputs)
        if self._outputs is None:
            self._outputs = torch.empty((max(self.rows, end), *outputs.shape[1:]), dtype=outputs.dtype,
                                        device=outputs.device)
        elif end > len(self._outputs):  # more rows than counted on: grow once, never lose any
            grown = torch.empty((end, *self._outputs.shape[1:]), dtype=self._outputs.dtype, device=self._outputs.device)
            grown[:self._row] = self._outputs[:self._row]
            self._outputs = grown
        self._outputs[self._row:end] = outputs.detach()
        self._row = end

    @property
    def losses(self) -> torch.Tensor:
        """The steps' losses so far (a view of the buffer)."""
        return self._losses[:self._step]

    @property
    def outputs(self) -> torch.Tensor:
        """The visited rows' outputs so far (a view of the buffer)."""
        return self._outputs[:self._row]

    def last_loss(self) -> torch.Tensor:
        return self._losses[self._step - 1]

    def saved(self) -> dict:
        """Losses and outputs so far as CPU copies of their own (a view would save the whole buffer)."""
        return {"outputs": self.outputs.to("cpu", copy=True), "losses": self.losses.to("cpu", copy=True)}
