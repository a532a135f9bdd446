"""A member of a training population: one independently trained model with everything that is
its own — model, objective, optimizer, schedule and regularizer (from ``build``), prepared data,
seed and shuffling generator, early stopping, the epochs' rows, the run folder it writes and the
logger it reports to. A plain fit is a population of one; the k folds of a cross-validation, N
seeds or N hyperparameter points of one model shape are populations of several."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field

import torch

from dltrain.errors import DltrainError
from dltrain.train import metrics as task_metrics
from dltrain.train.staging import length, rows, to_channels_last, to_device
from dltrain.train.stopping import EarlyStopping


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
        if self.speed is not None and self.speed.scaler is not None:
            state["scaler"] = self.speed.scaler.state_dict()
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict, where: str) -> None:
        import random

        import numpy as np

        if "stopping" not in state:
            raise DltrainError(f"{where} was saved by an older dltrain whose training state this one "
                               f"cannot continue; start a new run with the same settings.")
        self.rows = list(state["rows"])
        self.stopping.load_state_dict(state["stopping"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        name, keys, *rest = state["numpy_rng"]
        np.random.set_state((name, keys.numpy().astype("uint32"), *rest))
        python_state = state["python_rng"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.cursor = state.get("cursor")
        if self.speed is not None and self.speed.scaler is not None and state.get("scaler"):
            self.speed.scaler.load_state_dict(state["scaler"])

    def resume(self, path, out) -> None:
        """Continue from the last.pt at ``path``: model, optimizer, scheduler and training state."""
        from dltrain.train.checkpoint import load_checkpoint

        state = load_checkpoint(path)
        if "trainer" not in state or "optimizer" not in state:
            raise DltrainError(f"{str(path)!r} holds no training state to resume from; use a run "
                               f"folder's last.pt.")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            first_line = str(error).strip().splitlines()[0]
            raise DltrainError(
                f"The checkpoint {str(path)!r} does not fit this model and optimizer ({first_line}); "
                f"resume with the run's own settings."
            ) from None
        if self.schedule.scheduler is not None and state.get("scheduler") is not None:
            self.schedule.scheduler.load_state_dict(state["scheduler"])
        self.load_state_dict(state["trainer"], repr(str(path)))
        cursor = self.cursor
        where = (f"inside epoch {cursor['epoch']} at step {cursor['step']}" if cursor
                 else f"after epoch {state['epoch']}")
        out.print(f"Resuming from {path} ({where}).")
