"""The training loop: batches by indexing tensors already on the device, zero_grad, forward,
loss, backward, step; metrics read once per epoch; best/last checkpoint hooks, early stopping,
stop requests that finish their step, and a state_dict for an exact resume."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from dltrain.errors import DltrainError
from dltrain.train import metrics as task_metrics
from dltrain.train.speed import compiled, configure
from dltrain.train.staging import Staged, length, rows, to_channels_last, to_device
from dltrain.train.threads import apply_threads

__all__ = ["History", "StopRequested", "Trainer", "batch_count", "rows", "to_device"]


@dataclass
class History:
    """Every epoch's row plus the early-stopping state: what a resumed run needs to go on."""

    rows: list[dict] = field(default_factory=list)
    best: dict | None = None  # the row of the best epoch
    best_epoch: int = 0
    best_value: float | None = None
    waited: int = 0  # epochs since the monitored value last improved
    stopped_early: bool = False


class StopRequested(Exception):
    """Raised out of ``Trainer.fit`` after a stop request (Ctrl-C, SIGTERM) finished its step;
    the trainer's ``state_dict()`` then holds the position inside the interrupted epoch."""

    def __init__(self, signal_number: int, epoch: int, step: int):
        super().__init__(f"stopped in epoch {epoch} after step {step}")
        self.signal_number, self.epoch, self.step = signal_number, epoch, step


def _forward(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


def batch_count(num_samples: int, batch_size: int) -> int:
    size = num_samples if batch_size <= 0 or batch_size >= num_samples else batch_size
    return math.ceil(num_samples / size)


class Trainer:
    """Runs epochs over prepared splits. Pure PyTorch, no framework between you and the steps."""

    def __init__(self, model, objective, optimizer, schedule, regularizer, *, settings, device,
                 batch_size: int, shuffle: bool, eval_batch_size: int = 1024,
                 on_epoch_end: list[Callable] | None = None, progress=None, table=None,
                 on_step: Callable | None = None, step_every: int = 0, shard=None):
        self.model = model.to(device)
        self.speed = configure(model, settings, device)
        if self.speed.channels_last:
            model.to(memory_format=torch.channels_last)
        # Data-parallel (dltrain.distributed.Shard): training steps go through the DDP wrapper,
        # evaluation through the plain model; None for a single process.
        self.shard = shard
        trained = shard.wrap(self.model) if shard is not None else self.model
        # What the steps call: that module, or its torch.compile wrapper sharing its parameters.
        self.step_model = compiled(trained, settings)
        self.eval_model = self.step_model if shard is None else self.model
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
        self.cursor = None  # position inside an interrupted epoch, for an exact resume
        self.stop_requested = 0  # the signal number once Ctrl-C or SIGTERM asked to stop
        self.threads_note = ""  # what trainer.threads chose, e.g. "threads=1 (auto: ...)", set by fit

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything besides model/optimizer/scheduler that an exact resume needs."""
        import random

        import numpy as np

        numpy_state = np.random.get_state()
        state = {
            "history": {k: v for k, v in vars(self.history).items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [numpy_state[0], torch.from_numpy(numpy_state[1].astype("int64")),
                          *numpy_state[2:]],
            "python_rng": random.getstate(),
            "cursor": self.cursor,
        }
        if self.speed.scaler is not None:
            state["scaler"] = self.speed.scaler.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        import random

        import numpy as np

        self.history = History(**state["history"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        name, keys, *rest = state["numpy_rng"]
        np.random.set_state((name, keys.numpy().astype("uint32"), *rest))
        python_state = state["python_rng"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.cursor = state.get("cursor")
        if self.speed.scaler is not None and state.get("scaler"):
            self.speed.scaler.load_state_dict(state["scaler"])

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, split: Staged, epoch: int) -> dict:
        model, objective, optimizer, shard = self.step_model, self.objective, self.optimizer, self.shard
        autocast, scaler = self.speed.autocast, self.speed.scaler
        self.model.train()
        n = len(split)
        size = n if self.batch_size <= 0 or self.batch_size >= n else self.batch_size
        steps = math.ceil(n / size)
        cursor, self.cursor = self.cursor, None
        if cursor is not None:  # continue an epoch that a stop request interrupted
            order, first_step = cursor["order"], cursor["step"]
            outputs = [cursor["outputs"].to(self.device)]
            losses = list(cursor["losses"].to(self.device).unbind())
        else:
            order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
            first_step, outputs, losses = 0, [], []
        device_order = order.to(split.index_device)
        spans = shard.spans(n, size, steps) if shard is not None else None
        if self.progress is not None:
            self.progress.start_epoch(epoch, steps)
        # Per step, only what the step needs: outputs and losses are kept as they are (no sync,
        # no scatter) and summarised once at the end of the epoch.
        for step in range(first_step, steps):
            if spans is None:
                index = device_order[step * size:(step + 1) * size]
            else:  # this rank's part of the step's global batch, its loss weighted by its share
                start, stop, weight = spans[step]
                index = device_order[start:stop]
            inputs, targets = split.batch(index)
            if self.augment is not None:
                inputs = self.augment(inputs)
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                batch_outputs = _forward(model, inputs)
                loss = objective.loss(batch_outputs, targets)
                total = loss if spans is None else loss * weight
                total = total + self.regularizer.penalty() if self.regularizer.l1 else total
            if scaler is None:
                total.backward()
                if self.settings.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
                optimizer.step()
            else:  # fp16: scale the loss so small gradients survive, unscale before clipping
                scaler.scale(total).backward()
                if self.settings.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)
                scaler.step(optimizer)
                scaler.update()
            self.schedule.after_batch()
            losses.append(loss.detach())
            if self.step_every:
                global_step = (epoch - 1) * steps + step + 1
                if global_step % self.step_every == 0:
                    self.on_step(global_step, losses[-1])
            if spans is None or weight:
                outputs.append(batch_outputs.detach())
            if self.progress is not None:
                self.progress.advance()
            # Data-parallel ranks stop only at an epoch's end, where they agree on it (fit).
            if self.stop_requested and step + 1 < steps and shard is None:
                self.cursor = {"epoch": epoch, "step": step + 1, "order": order,
                               "outputs": torch.cat(outputs).cpu(), "losses": torch.stack(losses).cpu()}
                raise StopRequested(self.stop_requested, epoch, step + 1)
        step_losses = torch.stack(losses)
        if shard is None:
            sizes = torch.full((steps,), float(size), device=step_losses.device)
            sizes[-1] = n - size * (steps - 1)
            mean_loss = float((step_losses * sizes).sum() / n)
        else:
            mean_loss = shard.epoch_loss(step_losses, spans, n)
        if not math.isfinite(mean_loss):
            bad = torch.nonzero(~torch.isfinite(step_losses)).flatten()
            bad_step = int(bad[0]) + 1 if len(bad) else steps
            raise DltrainError(
                f"The training loss became {float(step_losses[bad_step - 1]) if len(bad) else mean_loss} "
                f"in epoch {epoch} at step {bad_step} of {steps}; lower optimizer.lr (now "
                f"{optimizer.param_groups[0]['lr']:g}) or check the data for extreme values."
            )
        # outputs are in visiting order: compare them with the targets in that order
        if shard is not None:
            everything, visited = shard.gather(torch.cat(outputs), device_order, n, size, steps)
            return self._summarise(mean_loss, everything, split.targets(visited))
        return self._summarise(mean_loss, torch.cat(outputs), split.targets(device_order))

    @torch.no_grad()
    def evaluate(self, x, y: torch.Tensor) -> dict:
        """Loss and metrics of the model on inputs ``x`` (on the device or in host memory: they
        go over in chunks) against targets ``y``."""
        self.model.eval()
        outputs = self._outputs(x)
        loss = self.objective.loss(outputs, y.to(outputs.device)).item()
        return self._summarise(loss, outputs, y)

    @torch.no_grad()
    def predict_scores(self, x) -> torch.Tensor:
        self.model.eval()
        return self.objective.scores(self._outputs(x)).cpu()

    def _outputs(self, x) -> torch.Tensor:
        model, device, size = self.eval_model, self.device, self.eval_batch_size
        layout = self.speed.channels_last
        chunks = []
        with self.speed.autocast():
            for i in range(0, length(x), size):
                inputs = to_device(rows(x, slice(i, i + size)), device)
                chunks.append(_forward(model, to_channels_last(inputs) if layout else inputs).float())
        return torch.cat(chunks)

    def _summarise(self, loss: float, outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        scores = self.objective.scores(outputs).float().cpu().numpy()
        truth = self.objective.targets(targets).cpu().numpy()
        return {"loss": loss, **task_metrics.compute(self.objective.task, scores, truth)}

    # ------------------------------------------------------------------ the run

    def fit(self, data, *, monitor: str, mode: str, save_best: Callable | None = None,
            save_last: Callable | None = None) -> History:
        """Train until ``settings.epochs`` (continuing a loaded state), early stopping or a stop
        request (raises StopRequested after finishing the step it was in)."""
        device = self.device
        # trainer.threads, before the first step: one thread for a small model, torch's default else
        example = to_device(rows(data.train.x, slice(0, 64)), device)
        self.threads_note = apply_threads(self.settings.threads, self.model, example, self.batch_size, device)
        self.augment = data.train.augment
        max_bytes = self.settings.device_data_max_mb * 2**20
        train = Staged(data.train.x, data.train.y, device, max_bytes, self.speed.channels_last)
        val = None
        if data.val is not None:
            staged = Staged(data.val.x, data.val.y, device, max_bytes, self.speed.channels_last)
            val = (staged.x, staged.y)
        key = f"{'val' if val else 'train'}_{monitor}"
        history = self.history
        first_epoch = self.cursor["epoch"] if self.cursor else len(history.rows) + 1
        for epoch in range(first_epoch, self.settings.epochs + 1):
            if history.stopped_early:
                break
            started = time.perf_counter()
            lr = self.optimizer.param_groups[0]["lr"]
            row = {"epoch": epoch}
            row.update({f"train_{k}": v for k, v in self.train_epoch(train, epoch).items()})
            if val:
                row.update({f"val_{k}": v for k, v in self.evaluate(*val).items()})
            row["lr"] = lr
            row["seconds"] = time.perf_counter() - started
            stop = self.stop_requested
            if self.shard is not None:
                row, stop = self.shard.agree(row, stop)
            value = row[key]
            self.schedule.after_epoch(value)
            history.rows.append(row)
            best = history.best_value
            improved = best is None or math.isnan(best) or (
                value < best - self.settings.min_delta if mode == "min"
                else value > best + self.settings.min_delta
            )
            if improved:
                history.best_value, history.waited = value, 0
                history.best, history.best_epoch = row, epoch
                if save_best is not None:
                    save_best(epoch, row)
            else:
                history.waited += 1
            if self.settings.patience and history.waited >= self.settings.patience:
                history.stopped_early = True
            if self.table is not None:
                self.table.row(row)
            for callback in self.on_epoch_end:
                callback(epoch, row)
            if save_last is not None:  # after the callbacks: a checkpoint covers what they logged
                save_last(epoch, row)
            if stop and epoch < self.settings.epochs and not history.stopped_early:
                raise StopRequested(stop, epoch, 0)
        return history
