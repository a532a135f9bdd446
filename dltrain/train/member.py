"""A member of a training population: one independently trained model with everything that is
its own — model, objective, optimizer, schedule and regularizer (from ``build``), prepared data,
seed and shuffling generator, early stopping, the epochs' rows, the run folder it writes and the
logger it reports to. A plain fit is a population of one; the k folds of a cross-validation, N
seeds or N hyperparameter points of one model shape are populations of several."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from dltrain.errors import DltrainError
from dltrain.train import metrics as task_metrics
from dltrain.train.checkpoint import (check_weights, load_checkpoint, load_optimizer_state, load_scheduler_state,
                                      real, state_shapes)
from dltrain.train.staging import length, rows, to_channels_last, to_device
from dltrain.train.stopping import EarlyStopping


# The input values of one evaluation chunk at most (16 MiB as float32): a chunk's activations grow
# with it, and 1024 images of 128x128 would take gigabytes in the first convolution alone.
EVAL_VALUES = 1 << 22


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _row(row) -> bool:
    """An epoch's row as Member saves it: metric names and numbers."""
    return isinstance(row, dict) and all(isinstance(k, str) and real(v) for k, v in row.items())


TRACKED_SCALARS = 2  # one weight and one bias: the course's y = 2x toy


def tracked(model) -> bool:
    """Whether the optimizer's path through ``model``'s parameters is recorded (few enough numbers)."""
    return sum(p.numel() for p in model.parameters()) <= TRACKED_SCALARS


def flat_parameters(model) -> list[float]:
    """Every parameter's numbers, in order (a host sync: only ever for a model of a few numbers)."""
    return torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()


def forward(model, inputs):
    return model(*inputs) if isinstance(inputs, tuple) else model(inputs)


@dataclass(eq=False)
class Member:
    label: str  # "" for a plain fit; "fold 3", "member 2" in a population (for messages)
    seed: int
    data: object  # Prepared: spec and train/val/test splits, preprocessing fitted on train only
    parts: object  # Parts from build(): objective, model, optimizer, regularizer, schedule
    stopping: EarlyStopping
    folder: object = None  # RunFolder
    logger: object = None  # Loggers (train/loggers.py), or None
    rows: list = field(default_factory=list)
    callbacks: list = field(default_factory=list)  # called (epoch, row) at every epoch's end
    cursor: dict | None = None  # position inside an interrupted epoch, for an exact resume
    # A model of at most TRACKED_SCALARS numbers: its parameters at the start and after every
    # optimizer step (flattened), which dltrain landscape draws as the optimizer's path; else None.
    trajectory: list | None = None
    generator: torch.Generator = None
    # Set by the Trainer: where the steps run and how, and the splits staged for that device.
    device: torch.device = None
    train: object = None  # Staged training split
    val: tuple | None = None  # (inputs, targets) of the validation split, staged
    speed: object = None
    eval_model: object = None
    eval_batch_size: int = 1024

    def __post_init__(self):
        if self.generator is None:
            self.generator = torch.Generator().manual_seed(self.seed)

    @property
    def model(self):
        return self.parts.model

    @property
    def objective(self):
        return self.parts.objective

    @property
    def optimizer(self):
        return self.parts.optimizer

    @property
    def schedule(self):
        return self.parts.schedule

    @property
    def regularizer(self):
        return self.parts.regularizer

    @property
    def monitor(self) -> str:
        return self.stopping.key

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self, x, y: torch.Tensor) -> dict:
        """Loss and metrics on inputs ``x`` (on the device or in host memory: they go over in
        chunks) against targets ``y``."""
        self.model.eval()
        outputs = self._outputs(x)
        loss = self.objective.loss(outputs, y.to(outputs.device)).item()
        return self.summarise(loss, outputs, y)

    @torch.no_grad()
    def predict_scores(self, x) -> torch.Tensor:
        self.model.eval()
        return self.objective.scores(self._outputs(x)).cpu()

    def _outputs(self, x) -> torch.Tensor:
        model = self.eval_model if self.eval_model is not None else self.model
        size = self.eval_batch_size
        if not isinstance(x, tuple) and len(x.shape) > 1:  # large images: chunks of at most EVAL_VALUES inputs
            size = max(1, min(size, EVAL_VALUES // math.prod(x.shape[1:])))
        device = self.device or next(self.model.parameters()).device
        layout = self.speed is not None and self.speed.channels_last
        autocast = self.speed.autocast if self.speed is not None else nullcontext
        chunks = []
        with autocast():
            for i in range(0, length(x), size):
                inputs = to_device(rows(x, slice(i, i + size)), device)
                chunks.append(forward(model, to_channels_last(inputs) if layout else inputs).float())
        return torch.cat(chunks)

    def summarise(self, loss: float, outputs: torch.Tensor, targets: torch.Tensor) -> dict:
        scores = self.objective.scores(outputs).float().cpu().numpy()
        truth = self.objective.targets(targets).cpu().numpy()
        return {"loss": loss, **task_metrics.compute(self.objective.task, scores, truth)}

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything besides model, optimizer and scheduler that an exact resume needs."""
        import random

        import numpy as np

        numpy_state = np.random.get_state()
        state = {
            "rows": self.rows,
            "stopping": self.stopping.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": [numpy_state[0], torch.from_numpy(numpy_state[1].astype("int64")),
                          *numpy_state[2:]],
            "python_rng": random.getstate(),
            "cursor": self.cursor,
        }
        if self.trajectory:
            state["trajectory"] = torch.tensor(self.trajectory, dtype=torch.float64)
        if self.speed is not None and self.speed.scaler is not None:
            state["scaler"] = self.speed.scaler.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict, where: str) -> None:
        """Restore what ``state_dict`` saved, once it is checked: a last.pt may be corrupted or
        edited, and a value of the wrong form would otherwise fail deep inside training."""
        import random

        import numpy as np

        if not isinstance(state, dict) or "stopping" not in state:
            raise DltrainError(f"{where} was saved by an older dltrain whose training state this one "
                               f"cannot continue; start a new run with the same settings.")
        problem = self._state_problem(state)
        if problem is None:
            try:  # the generators check their own states: size, version, range
                self.generator.set_state(state["generator"])
                torch.set_rng_state(state["torch_rng"])
                name, keys, *rest = state["numpy_rng"]
                np.random.set_state((name, keys.numpy().astype("uint32"), *rest))
                python_state = state["python_rng"]
                random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
                if torch.cuda.is_available() and state.get("cuda_rng") is not None:
                    torch.cuda.set_rng_state_all(state["cuda_rng"][:torch.cuda.device_count()])
            except (RuntimeError, TypeError, ValueError, OverflowError, IndexError, KeyError) as error:
                problem = f"a random generator's state is not one ({type(error).__name__})"
        if problem:
            raise DltrainError(f"{where} holds a training state this run cannot continue from ({problem}); "
                               f"it is corrupted or not this run's checkpoint.")
        self.rows = list(state["rows"])
        self.stopping.load_state_dict(state["stopping"])
        self.cursor = state.get("cursor")
        trajectory = state.get("trajectory")
        self.trajectory = trajectory.tolist() if trajectory is not None else None
        if self.speed is not None and self.speed.scaler is not None and state.get("scaler"):
            self.speed.scaler.load_state_dict(state["scaler"])

    def _state_problem(self, state: dict) -> str | None:
        """What is wrong with a saved training state's rows, early stopping, cursor and generator
        states (None when they have the form this member saves)."""
        rows, stopping, cursor = state.get("rows"), state.get("stopping"), state.get("cursor")
        if not isinstance(rows, list) or not all(
                _row(row) and row.get("epoch") == epoch and self.monitor in row
                for epoch, row in enumerate(rows, start=1)):
            return f"its rows are not epochs 1 to {len(rows) if isinstance(rows, list) else 'N'} with {self.monitor}"
        if not self._stopping_fits(stopping, len(rows)):
            return "its early-stopping state"
        if cursor is not None and not self._cursor_fits(cursor, len(rows)):
            return "its position inside an epoch"
        numpy_state, python_state = state.get("numpy_rng"), state.get("python_rng")
        if not all(isinstance(state.get(key), torch.Tensor) for key in ("generator", "torch_rng")) \
                or not (isinstance(numpy_state, (list, tuple)) and len(numpy_state) == 5
                        and isinstance(numpy_state[1], torch.Tensor) and numpy_state[1].shape == (624,)) \
                or not (isinstance(python_state, (list, tuple)) and len(python_state) == 3
                        and isinstance(python_state[1], (list, tuple))):
            return "its random generators' states"
        cuda = state.get("cuda_rng")
        if cuda is not None and not (isinstance(cuda, list) and all(isinstance(t, torch.Tensor) for t in cuda)):
            return "its CUDA generators' states"
        trajectory = state.get("trajectory")
        if trajectory is not None and not (
                isinstance(trajectory, torch.Tensor) and trajectory.is_floating_point() and trajectory.dim() == 2
                and trajectory.shape[1] == sum(p.numel() for p in self.model.parameters()) <= TRACKED_SCALARS):
            return "its record of the optimizer's path"
        scaler = state.get("scaler")
        if scaler is not None and not (isinstance(scaler, dict) and "scale" in scaler
                                       and all(real(v) for v in scaler.values())):
            return "its gradient scaler's state"
        return None

    def _stopping_fits(self, stopping, epochs_done: int) -> bool:
        """The early-stopping state after ``epochs_done`` epochs: a best row (with the monitored
        metric) from one of them, or none before the first."""
        if not isinstance(stopping, dict) or not {"best", "best_epoch", "best_value", "waited", "stopped"} <= set(stopping):
            return False
        best, best_epoch, best_value = stopping["best"], stopping["best_epoch"], stopping["best_value"]
        return ((best is None) == (epochs_done == 0)
                and (best is None or (_row(best) and self.monitor in best))
                and (best_value is None or real(best_value))
                and _count(best_epoch) is not None and best_epoch <= epochs_done
                and _count(stopping.get("waited")) is not None and isinstance(stopping.get("stopped"), bool))

    def _cursor_fits(self, cursor, epochs_done: int) -> bool:
        """A position inside the epoch after the last finished one: its step, this member's rows
        in some order, and the losses and outputs of the steps before it."""
        if not isinstance(cursor, dict) or cursor.get("epoch") != epochs_done + 1 or not _count(cursor.get("step")):
            return False
        order, losses, outputs = cursor.get("order"), cursor.get("losses"), cursor.get("outputs")
        rows = len(self.data.train)
        return (isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.shape == (rows,)
                and torch.equal(order.sort().values, torch.arange(rows))
                and isinstance(losses, torch.Tensor) and losses.is_floating_point()
                and losses.shape == (cursor["step"],)
                and isinstance(outputs, torch.Tensor) and outputs.is_floating_point() and outputs.dim() >= 1)

    def load_training(self, state: dict, where, fix: str, label: str | None = None) -> None:
        """A checkpoint's model, optimizer, scheduler and training state (``where`` it was read,
        ``fix`` the advice when its weights do not fit this model) loaded into this member."""
        check_weights(state.get("model"), state_shapes(self.model), where, "this model and optimizer", fix)
        self.model.load_state_dict(state["model"])
        load_optimizer_state(self.optimizer, state["optimizer"], where)
        if self.schedule.scheduler is not None and state.get("scheduler") is not None:
            load_scheduler_state(self.schedule.scheduler, state["scheduler"], where)
        self.load_state_dict(state["trainer"], label or where)

    def resume(self, path, out) -> None:
        """Continue from the last.pt at ``path``: model, optimizer, scheduler and training state."""
        state = load_checkpoint(path)
        if "trainer" not in state or "optimizer" not in state:
            raise DltrainError(f"{str(path)!r} holds no training state to resume from; use a run "
                               f"folder's last.pt.")
        self.load_training(state, path, "resume with the run's own settings", repr(str(path)))
        cursor = self.cursor
        where = (f"inside epoch {cursor['epoch']} at step {cursor['step']}" if cursor
                 else f"after epoch {len(self.rows)}")
        out.print(f"Resuming from {path} ({where}).")
