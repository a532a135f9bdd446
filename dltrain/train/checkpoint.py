"""Checkpoint files: written atomically (dltrain.files), read with weights_only. A checkpoint may
come from anyone (a shared run folder, a download), so what it holds is checked before it is
used: its config as plain data, its data description as a DataSpec, its weights against the
model's own names, shapes and dtypes, its optimizer and scheduler state against the live ones.
Each problem is one sentence; nothing in a checkpoint is run or passed to Hydra."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import torch

from dltrain.data.spec import INPUT_KINDS, TASKS, DataSpec
from dltrain.errors import DltrainError
from dltrain.files import remove_file, write_atomic

# A saved config is a few hundred values; more, or deeper, is not one dltrain wrote (and a
# pickle can share one list many times over, so a walk without a bound could take forever).
_MOST_VALUES = 10_000
_DEEPEST = 32
# The dimensions of input_shape for each input kind: (features,), (steps,), (steps, features),
# (channels, height, width); and the largest size of one, and of a vocabulary, a checkpoint may
# name (torch cannot even describe much larger ones).
_DIMENSIONS = {"tabular": 1, "tokens": 1, "sequence": 2, "image": 3}
_LARGEST = 2**31


def save_checkpoint(path: Path, payload: dict) -> None:
    write_atomic(Path(path), lambda stream: torch.save(payload, stream))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """The checkpoint's parts (a dict: model, config, spec, ...), as far as torch can read them;
    each part is checked by the function that uses it."""
    path = Path(path)
    if not path.is_file():
        raise DltrainError(f"No checkpoint at {str(path)!r}.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # a truncated or foreign file fails in many ways inside torch
        raise DltrainError(f"The checkpoint {str(path)!r} cannot be read ({type(error).__name__}); it is corrupted or not a dltrain checkpoint.") from None
    if not isinstance(state, dict):
        raise DltrainError(f"The checkpoint {str(path)!r} holds a {type(state).__name__}, not the parts of a "
                           f"dltrain checkpoint; it is corrupted or not a dltrain checkpoint.")
    return state


class CheckpointWriter:
    """Writes best.pt and last.pt at most every ``every_seconds`` (and always on ``flush``):
    short epochs would otherwise spend more time writing files than training. The best
    weights are snapshotted in memory when they improve, so a late write is still exact; so are
    the other checkpoints kept by name (``keep``), and those no longer wanted (``drop``) go at
    the same write."""

    def __init__(self, run_dir: Path, every_seconds: float, make_payload, on_write=None):
        import time

        self.run_dir = Path(run_dir)
        self.every_seconds = every_seconds
        self.make_payload = make_payload  # (epoch, row, with_training_state) -> dict
        self.on_write = on_write
        self._clock = time.monotonic
        self._last_write = self._clock()
        self._pending_best = None
        self._pending_named: dict[str, dict] = {}
        self._unwanted: set[str] = set()
        self._last_epoch = None

    def _snapshot(self, epoch: int, row: dict) -> dict:
        payload = self.make_payload(epoch, row, False)
        payload["model"] = {k: v.detach().clone() for k, v in payload["model"].items()}
        return payload

    def best(self, epoch: int, row: dict) -> None:
        self._pending_best = self._snapshot(epoch, row)

    def keep(self, name: str, epoch: int, row: dict) -> None:
        """Write this epoch's weights as ``name`` (in the run folder) at the next write."""
        self._pending_named[name] = self._snapshot(epoch, row)
        self._unwanted.discard(name)

    def drop(self, name: str) -> None:
        """Delete ``name`` at the next write (or never write it, when it is still pending)."""
        if self._pending_named.pop(name, None) is None:
            self._unwanted.add(name)

    def last(self, epoch: int, row: dict) -> None:
        self._last_epoch = (epoch, row)
        if self._clock() - self._last_write >= self.every_seconds:
            self.flush()

    def flush(self, include_last: bool = True) -> None:
        """Write what is pending; ``include_last=False`` after a failed epoch, whose live
        weights are not worth keeping (the best snapshot still is)."""
        if self._pending_best is not None:
            save_checkpoint(self.run_dir / "best.pt", self._pending_best)
            self._pending_best = None
        for name in list(self._pending_named):
            save_checkpoint(self.run_dir / name, self._pending_named.pop(name))
        for name in sorted(self._unwanted):
            remove_file(self.run_dir / name)
        self._unwanted.clear()
        if include_last:
            epoch, row = self._last_epoch or (0, {})  # epoch 0: stopped inside the first epoch
            save_checkpoint(self.run_dir / "last.pt", self.make_payload(epoch, row, True))
            if self.on_write is not None:
                self.on_write(epoch, row)
        self._last_write = self._clock()


def _refuse(path: Path, what: str, problem: str):
    return DltrainError(f"The checkpoint {str(path)!r} holds {what} dltrain cannot use ({problem}); it is "
                        f"corrupted or not a dltrain checkpoint.")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def real(value) -> bool:
    """A number a float holds (NaN and infinity too; not an integer beyond any float)."""
    try:
        return _number(value) and isinstance(float(value), float)
    except OverflowError:
        return False


def _finite(value) -> bool:
    return real(value) and math.isfinite(value)


# ------------------------------------------------------------------------------ config and spec


def saved_config(state: dict, path: Path) -> dict:
    """The composed config the checkpoint was trained with: names mapped to numbers, strings,
    lists and mappings, resolved (dltrain saves it so: an interpolation is never in one), without
    Hydra's own settings."""
    config = state.get("config")
    problem = _plain_config_problem(config)
    if problem:
        raise _refuse(path, "a config", problem)
    return config


def _plain_config_problem(config) -> str | None:
    if not isinstance(config, dict):
        return f"a {type(config).__name__}, not a mapping of settings"
    if "hydra" in config:
        return "Hydra's own settings, which dltrain never saves with a model"
    stack, seen = [(config, "", 1)], 0
    while stack:  # a walk, not a recursion: a deep value cannot exhaust Python's stack
        value, where, depth = stack.pop()
        seen += 1
        if seen > _MOST_VALUES or depth > _DEEPEST:
            return f"more than {_MOST_VALUES} values or {_DEEPEST} levels"
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    return f"the key {_short(key)}{' under ' + where if where else ''} is not a name"
                stack.append((item, f"{where}.{key}" if where else key, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            if "${" in value:
                return f"{where} is the interpolation {_short(value)}"
        elif value is not None and not isinstance(value, (bool, int, float)):
            return f"{where} is a {type(value).__name__}"
    return None


def saved_spec(state: dict, path: Path) -> DataSpec:
    """The DataSpec the checkpoint's model was sized from, checked field by field."""
    spec = state.get("spec")
    problem = _spec_problem(spec)
    if problem:
        raise _refuse(path, "a data description", problem)
    return DataSpec(**{**spec, **{key: tuple(spec[key]) for key in ("input_shape", "class_names", "feature_names")
                                  if key in spec}})


def _spec_problem(spec) -> str | None:
    if not isinstance(spec, dict):
        return f"a {type(spec).__name__}, not a mapping"
    known = {f.name for f in fields(DataSpec)}
    unknown = [key for key in spec if key not in known]
    if unknown:
        return f"the unknown field {_short(unknown[0])}"
    task, kind = spec.get("task"), spec.get("kind", "tabular")
    if task not in TASKS:
        return f"task is {_short(task)}, not {', '.join(TASKS)}"
    if kind not in tuple(INPUT_KINDS):
        return f"kind is {_short(kind)}, not {', '.join(INPUT_KINDS)}"
    shape = spec.get("input_shape")
    if (not isinstance(shape, (list, tuple)) or len(shape) != _DIMENSIONS[kind]
            or not all(_whole(size) and 1 <= size < _LARGEST for size in shape) or math.prod(shape) >= _LARGEST):
        return f"input_shape is {_short(shape)}, not {_DIMENSIONS[kind]} positive sizes for {kind} data"
    for key in ("class_names", "feature_names"):
        names = spec.get(key, ())
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            return f"{key} is {_short(names)}, not a list of names"
    classes, num_classes = spec.get("class_names", ()), spec.get("num_classes", 0)
    expected = 0 if task == "regression" else len(classes)
    enough = task == "regression" or (len(set(classes)) == len(classes) >= 2 and (task != "binary" or expected == 2))
    if not _whole(num_classes) or num_classes != expected or not enough:
        return f"num_classes is {_short(num_classes)} for a {task} task with the classes {_short(classes)}"
    vocab_size = spec.get("vocab_size", 0)
    if not _whole(vocab_size) or not 0 <= vocab_size < _LARGEST:
        return f"vocab_size is {_short(vocab_size)}, not a size"
    mean, std = spec.get("target_mean", 0.0), spec.get("target_std", 1.0)
    if not (_finite(mean) and _finite(std) and std > 0):
        return f"target_mean and target_std are {_short(mean)} and {_short(std)}, not a finite mean and a positive scale"
    return None


# ------------------------------------------------------------------------------ weights


def state_shapes(model) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Each state_dict entry of ``model``: its shape and dtype."""
    return {name: (tuple(value.shape), value.dtype) for name, value in model.state_dict().items()}


def planned_shapes(make_model, path: Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """``state_shapes`` of the model ``make_model()`` builds from the checkpoint at ``path``'s
    settings, built on the meta device: no memory is taken, whatever sizes they name (and sizes
    beyond what torch can describe are one sentence)."""
    try:
        with torch.device("meta"):
            return state_shapes(make_model())
    except (TypeError, OverflowError, RuntimeError) as error:  # torch refusing a size
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise DltrainError(f"The checkpoint {str(path)!r} names sizes no model can have ({_short(first)}); it is "
                           f"corrupted or not a dltrain checkpoint.") from None


def check_weights(weights, shapes: dict, path: Path, what: str, advice: str) -> None:
    """Whether ``weights`` (a checkpoint's ``model``) has every tensor of ``shapes``
    (``planned_shapes`` or ``state_shapes`` of the model) with that name, shape and kind of dtype,
    and no other; one sentence (naming the model as ``what``, ending in ``advice``) when not.
    Then ``model.load_state_dict(weights)`` loads them."""
    problem = _weights_problem(weights, shapes)
    if problem:
        raise DltrainError(f"The checkpoint {str(path)!r} does not fit {what} ({problem}); {advice}.")


def _weights_problem(weights, shapes: dict) -> str | None:
    if not isinstance(weights, dict):
        return f"its weights are a {type(weights).__name__}, not named tensors"
    missing = [name for name in shapes if name not in weights]
    if missing:
        return f"it has no {missing[0]}"
    unexpected = [name for name in weights if name not in shapes]
    if unexpected:
        return f"the model has no {_short(unexpected[0])}"
    for name, (shape, dtype) in shapes.items():
        tensor = weights[name]
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or tensor.is_meta:
            return f"{name} is not a plain tensor"
        if tuple(tensor.shape) != shape:
            return f"{name} is {_size(tensor.shape)}, the model's {_size(shape)}"
        if tensor.dtype != dtype and not (tensor.dtype.is_floating_point and dtype.is_floating_point):
            return f"{name} holds {tensor.dtype}, the model's {dtype}"
    return None


def _size(shape) -> str:
    return "x".join(map(str, shape)) or "a scalar"


# ------------------------------------------------------------------------------ optimizer and scheduler


def load_optimizer_state(optimizer, saved, path: Path) -> None:
    """The optimizer's state from a last.pt, once it has the live optimizer's groups, option types
    and, per parameter, tensors of that parameter's shape (or single numbers, such as steps)."""
    problem = _optimizer_problem(optimizer, saved)
    if problem:
        raise DltrainError(f"The checkpoint {str(path)!r} holds an optimizer state this run cannot continue "
                           f"({problem}); resume with the run's own settings.")
    optimizer.load_state_dict(saved)


def _optimizer_problem(optimizer, saved) -> str | None:
    fresh = optimizer.state_dict()
    if not isinstance(saved, dict) or not isinstance(saved.get("param_groups"), list) \
            or not isinstance(saved.get("state"), dict):
        return "not a mapping with state and param_groups"
    groups = saved["param_groups"]
    if len(groups) != len(fresh["param_groups"]):
        return f"{len(groups)} parameter groups, the optimizer's {len(fresh['param_groups'])}"
    for group, live in zip(groups, fresh["param_groups"]):
        if not isinstance(group, dict) or group.get("params") != live["params"]:
            return "its parameter groups hold other parameters"
        # Flags newer than the checkpoint torch fills in itself; numbers (lr, betas, ...) must be there.
        wrong = [key for key, value in live.items() if key != "params" and (
            key in group and not _like(group[key], value)
            or key not in group and (_number(value) or isinstance(value, (list, tuple))))]
        if wrong:
            return f"{wrong[0]} is {_short(group.get(wrong[0], 'missing'))}"
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    for index, per_parameter in saved["state"].items():
        if not _whole(index) or not 0 <= index < len(parameters) or not isinstance(per_parameter, dict):
            return f"the state of parameter {_short(index)}"
        for key, value in per_parameter.items():
            if isinstance(value, torch.Tensor):
                if value.numel() != 1 and tuple(value.shape) != tuple(parameters[index].shape):
                    return f"{_short(key)} of parameter {index} is {_size(value.shape)}"
            elif value is not None and not real(value):
                return f"{_short(key)} of parameter {index} is {_short(value)}"
    return None


def load_scheduler_state(scheduler, saved, path: Path) -> None:
    """A learning-rate scheduler's state (which torch copies into the scheduler's attributes as
    they come), once its keys are the live scheduler's and its values of their types."""
    fresh = scheduler.state_dict()
    if not isinstance(saved, dict):
        problem = f"a {type(saved).__name__}, not a mapping"
    else:
        wrong = [key for key in saved if key not in fresh or not _like(saved[key], fresh[key])]
        problem = f"{_short(wrong[0])} is {_short(saved.get(wrong[0]))}" if wrong else None
    if problem:
        raise DltrainError(f"The checkpoint {str(path)!r} holds a scheduler state this run cannot continue "
                           f"({problem}); resume with the run's own settings.")
    scheduler.load_state_dict(saved)


def _like(saved, live, depth: int = 0) -> bool:
    """Whether a saved value has the type (and, for lists and mappings, the form) of the live one."""
    if depth > _DEEPEST:
        return False
    if isinstance(live, bool):
        return isinstance(saved, bool)
    if _number(live):
        return real(saved)
    if isinstance(live, str):
        return isinstance(saved, str)
    if live is None:
        return saved is None or isinstance(saved, (bool, int, float, str))
    if isinstance(live, torch.Tensor):
        return isinstance(saved, torch.Tensor) and saved.shape == live.shape
    if isinstance(live, (list, tuple)):
        return (isinstance(saved, (list, tuple)) and len(saved) == len(live)
                and all(_like(s, v, depth + 1) for s, v in zip(saved, live)))
    if isinstance(live, dict):
        return (isinstance(saved, dict) and set(saved) <= set(live)
                and all(_like(saved[k], live[k], depth + 1) for k in saved))
    return False
