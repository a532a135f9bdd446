"""The training loop: batches by indexing tensors already on the device, zero_grad, forward,
loss, backward, step; metrics read once per epoch; best/last checkpoints and early stopping."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from dltrain.errors import DltrainError
from dltrain.train import metrics as task_metrics


@dataclass
class History:
    rows: list[dict] = field(default_factory=list)
    best: dict | None = None  # the row of the best epoch
    best_epoch: int = 0
    stopped_early: bool = False


def _rows(x, index):
    """Rows of the inputs: a tensor, or a tuple of tensors (such as tokens and lengths)."""
    return tuple(part[index] for part in x) if isinstance(x, tuple) else x[index]


def _length(x) -> int:
    return len(x[0]) if isinstance(x, tuple) else len(x)


def _forward(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def to_device(x, device):
    return tuple(part.to(device) for part in x) if isinstance(x, tuple) else x.to(device)


def batch_count(num_samples: int, batch_size: int) -> int:
    size = num_samples if batch_size <= 0 or batch_size >= num_samples else batch_size
    return math.ceil(num_samples / size)


class Trainer:
    """Runs epochs over prepared splits. Pure PyTorch, no framework between you and the steps."""

    def __init__(self, model, objective, optimizer, schedule, regularizer, *, settings, device,
                 batch_size: int, shuffle: bool, eval_batch_size: int = 1024,
                 on_epoch_end: list[Callable] | None = None, progress=None, table=None,
                 on_step: Callable | None = None, step_every: int = 0):
        self.model = model.to(device)
        self.objective = objective
        self.optimizer = optimizer
        self.schedule = schedule
        self.regularizer = regularizer
        self.settings = settings
        self.device = device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.eval_batch_size = eval_batch_size
        self.on_epoch_end = on_epoch_end or []
        # on_step(global_step, loss tensor) every step_every optimizer steps (0: never); reading
        # the loss is the callback's host-device sync, so the other steps stay free of one.
        self.on_step, self.step_every = on_step, step_every
        self.progress = progress
        self.table = table
        self.generator = torch.Generator().manual_seed(settings.seed)
        self.history = History()
        self.augment = None

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> dict:
        model, objective, optimizer = self.model, self.objective, self.optimizer
        model.train()
        n = len(y)
        size = n if self.batch_size <= 0 or self.batch_size >= n else self.batch_size
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        order = order.to(self.device)
        loss_sum = torch.zeros((), device=self.device)
        outputs_all = None
        if self.progress is not None:
            self.progress.start_epoch(epoch, math.ceil(n / size))
        for start in range(0, n, size):
            index = order[start:start + size]
            inputs, targets = _rows(x, index), y[index]
            if self.augment is not None:
                inputs = self.augment(inputs)
            optimizer.zero_grad(set_to_none=True)
            outputs = _forward(model, inputs)
            loss = objective.loss(outputs, targets)
            total = loss + self.regularizer.penalty() if self.regularizer.l1 else loss
            total.backward()
            if self.settings.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), self.settings.grad_clip)
            optimizer.step()
            self.schedule.after_batch()
            loss_sum += loss.detach() * len(index)
            if self.step_every and ((epoch - 1) * math.ceil(n / size) + start // size + 1) % self.step_every == 0:
                self.on_step((epoch - 1) * math.ceil(n / size) + start // size + 1, loss.detach())
            detached = outputs.detach()
            if outputs_all is None:
                outputs_all = torch.empty((n, *detached.shape[1:]), dtype=detached.dtype, device=self.device)
            outputs_all[index] = detached
            if self.progress is not None:
                self.progress.advance()
        return self._summarise(loss_sum.item() / n, outputs_all, y)

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict:
        self.model.eval()
        outputs = self._outputs(x)
        loss = self.objective.loss(outputs, y).item()
        return self._summarise(loss, outputs, y)

    @torch.no_grad()
    def predict_scores(self, x) -> torch.Tensor:
        self.model.eval()
        return self.objective.scores(self._outputs(x)).cpu()

    def _outputs(self, x) -> torch.Tensor:
        n = _length(x)
        return torch.cat([_forward(self.model, _rows(x, slice(i, i + self.eval_batch_size)))
                          for i in range(0, n, self.eval_batch_size)])

    def _summarise(self, loss: float, outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        scores = self.objective.scores(outputs).float().cpu().numpy()
        truth = self.objective.targets(targets).cpu().numpy()
        return {"loss": loss, **task_metrics.compute(self.objective.task, scores, truth)}

    # ------------------------------------------------------------------ the run

    def fit(self, data, *, monitor: str, mode: str, save_best: Callable | None = None,
            save_last: Callable | None = None) -> History:
        device = self.device
        self.augment = data.train.augment
        train_x, train_y = to_device(data.train.x, device), data.train.y.to(device)
        val = (to_device(data.val.x, device), data.val.y.to(device)) if data.val is not None else None
        key = f"{'val' if val else 'train'}_{monitor}"
        history = self.history = History()
        best_value, waited = None, 0
        for epoch in range(1, self.settings.epochs + 1):
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"epoch": epoch}
            row.update({f"train_{k}": v for k, v in self.train_epoch(train_x, train_y, epoch).items()})
            if not math.isfinite(row["train_loss"]):
                raise DltrainError(
                    f"The training loss became {row['train_loss']} in epoch {epoch}; lower optimizer.lr "
                    f"(now {lr:g}) or check the data for extreme values."
                )
            if val:
                row.update({f"val_{k}": v for k, v in self.evaluate(*val).items()})
            row["lr"] = lr
            row["seconds"] = time.perf_counter() - started
            value = row[key]
            self.schedule.after_epoch(value)
            history.rows.append(row)
            improved = best_value is None or (
                value < best_value - self.settings.min_delta if mode == "min"
                else value > best_value + self.settings.min_delta
            ) or (isinstance(best_value, float) and math.isnan(best_value))
            if improved:
                best_value, waited = value, 0
                history.best, history.best_epoch = row, epoch
                if save_best is not None:
                    save_best(epoch, row)
            else:
                waited += 1
            if save_last is not None:
                save_last(epoch, row)
            if self.table is not None:
                self.table.row(row)
            for callback in self.on_epoch_end:
                callback(epoch, row)
            if self.settings.patience and waited >= self.settings.patience:
                history.stopped_early = True
                break
        return history
