"""Vectorised k-fold cross-validation (``cv.vectorize``): the fold models of ``dltrain cv`` train
at once on one device instead of one after another.

Each fold keeps what makes it a fold: its own preprocessing fitted on its own training rows
(``prepare`` per fold), its own seed (initial weights and the shuffling generator of the
sequential path, so it visits exactly the batches it would visit alone), its own loss. The k
models' parameters are stacked along a new first dimension with ``torch.func.stack_module_state``;
one forward pass is ``torch.func.functional_call`` under ``torch.vmap`` over the stacked
parameters and the stacked batches ``[k, batch, ...]``. Folds whose training splits differ by a row
have batches padded with weight-0 rows, and each fold's loss is the mean over its own rows; the
sum over folds is what is back-propagated, so every fold's gradient is its own. The optimizer
steps over the stacked leaf tensors: SGD (with momentum), Adam, AdamW, RMSprop and Adagrad work
element by element, so each fold's update is the one it would get alone; the decay/no-decay
groups and the L1 penalty are those of ``train/optim.py``; step, cosine and onecycle schedules
change the one learning rate every fold shares, as they would for each; gradient clipping is
per fold (each fold's own norm). Early stopping is per fold: a fold that stops keeps its weights
(restored after every later step of the others) and the training state it had then.

What cannot be stacked is refused up front (``refusal``): batch norm and other running
statistics, lstm (no vmap batching rule; packed sequences), token inputs, augmentation,
scheduler=plateau (a per-fold learning rate), and folds whose row counts give different numbers
of batches per epoch. ``resume`` continues the unfinished folds one by one.

Every fold folder ends up as the sequential path writes it (metrics.json with the same keys and
history, best.pt/last.pt holding that fold's own state_dict, optimizer and trainer state,
preprocessor.pkl, TensorBoard events, predictions), so aggregation, ``dltrain eval``/``predict``
and ``resume`` (which continues the folds one by one) work unchanged."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dltrain.console import EpochProgress, EpochTable, console, fmt
from dltrain.errors import DltrainError, RunInterrupted

# --------------------------------------------------------------------------- the decision


def use_vectorized(cfg, settings, cv, source, folds, *, out=console) -> bool:
    """Whether these folds train together: ``cv.vectorize`` true (or auto on a CUDA device) and
    nothing in the settings, data or model refuses it. ``true`` with a refusal is one sentence."""
    from dltrain.train.device import resolve_device

    mode = cv.vectorize
    if mode == "false" or len(folds) < 2:  # one fold (cv.fold=N): nothing to stack
        return False
    if cfg.get("resume"):  # also for a vectorised run, whose fold folders are ordinary ones
        if mode == "true":
            out.print("[yellow]note:[/yellow] resume continues each unfinished fold from its own "
                      "last.pt, one by one (cv.vectorize applies to fresh cross-validations).")
        return False
    if mode == "auto" and resolve_device(settings.trainer.device).type != "cuda":
        return False  # off on the CPU, where issue 7 measured it slower (bench/cv_vectorize.py)
    reason = refusal(cfg, settings, source, folds)
    if reason is None:
        return True
    if mode == "true":
        raise DltrainError(f"cv.vectorize=true cannot train the folds together: {reason}; "
                           f"cv.vectorize=false runs the folds one by one.")
    out.print(f"[yellow]note:[/yellow] cv.vectorize=auto trains the folds one by one: {reason}.")
    return False


def refusal(cfg, settings, source, folds) -> str | None:
    """Why these folds cannot train as one stacked model (None when they can). The settings are
    checked first; then the first fold's data is prepared and its model built, once, to see
    what the settings alone cannot tell (running statistics, augmentation, input kinds)."""
    if settings.scheduler.name == "plateau":
        return "scheduler=plateau lowers each fold's learning rate on its own validation metric"
    if settings.model.name == "lstm":
        return ("model=lstm's recurrent layer (aten::lstm) and packed sequences have no torch.vmap "
                "batching rule")
    steps = {_steps(len(fold.train_index), settings.data.batch_size) for fold in folds}
    if len(steps) > 1:
        sizes = sorted({len(fold.train_index) for fold in folds})
        return (f"the folds' {' and '.join(map(str, sizes))} training rows make "
                f"{' and '.join(map(str, sorted(steps)))} batches per epoch with "
                f"data.batch_size={settings.data.batch_size}, so their optimizer steps would differ")
    from dltrain.data import prepare
    from dltrain.models import create_model
    from dltrain.train.objective import build_objective

    data = prepare(source, folds[0].train_index, None)
    objective = build_objective(settings.loss.name, settings.loss.options, data.spec)
    model = create_model(settings.model.name, data.spec, objective.output_size, **settings.model.options)
    return _model_refusal(settings, data, model)


def _model_refusal(settings, data, model) -> str | None:
    if isinstance(data.train.x, tuple):
        return "this data's inputs are token sequences with lengths, which torch.vmap cannot batch"
    if data.train.augment is not None:
        return ("data.random_crop and data.horizontal_flip augment each batch with the fold's own "
                "random draws")
    if any(True for _ in model.buffers()):
        return (f"model={settings.model.name} keeps running statistics (batch norm) that "
                f"torch.vmap cannot update per fold; set model.batch_norm=false")
    return None


def _steps(rows: int, batch_size: int) -> int:
    size = rows if batch_size <= 0 or batch_size >= rows else batch_size
    return math.ceil(rows / size)


# --------------------------------------------------------------------------- training


@dataclass
class _Fold:
    """One fold's own pieces around the shared stacked parameters."""

    fold: object
    position: int  # its place along the stacked dimension
    seed: int
    folder: Path
    data: object
    objective: object
    model: object  # its parameters are views into the stacked tensors
    trainer: object  # its generator, history, evaluate/predict and state_dict
    rows: int = 0
    size: int = 0  # batch size (the fold's row count for full-batch training)
    writer: object = None
    logger: object = None
    record: dict | None = None
    config: dict | None = None
    # Early stopping: once the fold stopped, its weights (restored after every later step of
    # the others) and its optimizer and scheduler state as they were then.
    frozen: dict | None = None
    frozen_state: dict | None = None


class _StopFlag:
    stop_requested = 0


def train_folds(cfg, settings, source, folds, fold_count: int, run_dir: Path, *, out=console) -> list:
    """Train ``folds`` together in their fold_N folders under ``run_dir`` and write each folder as
    ``crossval.train_fold`` does; returns their FitResults."""
    from contextlib import ExitStack

    from torch.func import functional_call, stack_module_state

    from dltrain.crossval import fold_folder, fold_seed
    from dltrain.data import prepare
    from dltrain.models import count_parameters, create_model
    from dltrain.run import stop_on_signals
    from dltrain.train.device import resolve_device, seed_everything
    from dltrain.train.loop import Trainer
    from dltrain.train.metrics import check_monitor, monitor_mode
    from dltrain.train.objective import build_objective
    from dltrain.train.optim import OPTIMIZERS, Regularizer, build_optimizer, build_schedule

    started = time.perf_counter()
    device = resolve_device(settings.trainer.device)
    batch_size = settings.data.batch_size

    # ---- every fold's data, objective, model and trainer, seeded as the sequential path does
    parts: list[_Fold] = []
    for fold in folds:
        seed = fold_seed(settings, fold)
        trainer_settings = replace(settings.trainer, seed=seed)
        seed_everything(seed)
        data = prepare(source, fold.train_index, fold.val_index)
        objective = build_objective(settings.loss.name, settings.loss.options, data.spec)
        check_monitor(trainer_settings.monitor, data.spec.task)
        model = create_model(settings.model.name, data.spec, objective.output_size,
                             **settings.model.options).to(device)
        reason = _model_refusal(settings, data, model)
        if reason is not None:
            raise DltrainError(f"cv.vectorize cannot train the folds together: {reason}; "
                               f"cv.vectorize=false runs the folds one by one.")
        rows = len(data.train)
        size = rows if batch_size <= 0 or batch_size >= rows else batch_size
        trainer = Trainer(model, objective, None, None, None, settings=trainer_settings,
                          device=device, batch_size=batch_size, shuffle=settings.data.shuffle)
        parts.append(_Fold(fold, len(parts), seed, fold_folder(run_dir, fold.index), data, objective, model,
                           trainer, rows=rows, size=size))
    steps = {math.ceil(p.rows / p.size) for p in parts}
    if len(steps) > 1:  # refusal() checked the planned rows; prepared rows must agree
        raise DltrainError("cv.vectorize cannot train the folds together: their prepared training "
                           "splits make different numbers of batches per epoch; cv.vectorize=false "
                           "runs the folds one by one.")
    steps = steps.pop()
    k, first = len(parts), parts[0]
    mode = monitor_mode(settings.trainer.monitor, settings.trainer.mode)
    monitor = f"val_{settings.trainer.monitor}"

    # ---- the stacked parameters; each fold model's parameters become views into them
    template_optimizer, template_regularizer = build_optimizer(
        first.model, settings.optimizer, settings.regularization)
    names = {id(p): name for name, p in first.model.named_parameters()}
    params, _ = stack_module_state([p.model for p in parts])
    for f, part in enumerate(parts):
        for name, parameter in part.model.named_parameters():
            parameter.data = params[name].data[f]
    base = copy.deepcopy(first.model).to("meta")  # the structure functional_call runs
    # The stacked optimizer: the same class, options and decay/no-decay groups as build_optimizer.
    options = {key: tuple(v) if isinstance(v, list) else v for key, v in settings.optimizer.options.items()}
    groups = [{"params": [params[names[id(p)]] for p in group["params"]],
               "weight_decay": group["weight_decay"]} for group in template_optimizer.param_groups]
    optimizer = OPTIMIZERS[settings.optimizer.name](groups, lr=settings.optimizer.lr, **options)
    regularizer = Regularizer(l1=template_regularizer.l1,
                              weights=[params[names[id(w)]] for w in template_regularizer.weights])
    schedule = build_schedule(optimizer, settings.scheduler, epochs=settings.trainer.epochs,
                              steps_per_epoch=steps, mode=mode)
    for part in parts:
        part.trainer.optimizer, part.trainer.schedule, part.trainer.regularizer = optimizer, schedule, regularizer

    criterion = copy.deepcopy(first.objective.criterion)
    criterion.reduction = "none"
    squeeze, binary = first.objective.output_size == 1, first.objective.task == "binary"

    def fold_loss(fold_params, x, y, weight):
        outputs = functional_call(base, fold_params, (x,))
        predicted = outputs.squeeze(-1) if squeeze else outputs
        target = y.to(predicted.dtype) if binary and squeeze else y
        per_row = criterion(predicted, target)
        return (per_row * weight).sum() / weight.sum(), outputs

    train_loss = torch.vmap(fold_loss, randomness="different")
    forward = torch.vmap(lambda fold_params, x: functional_call(base, fold_params, (x,)),
                         randomness="different")

    train_x = _stack([p.data.train.x for p in parts]).to(device)
    train_y = _stack([p.data.train.y for p in parts]).to(device)
    val_x = _stack([p.data.val.x for p in parts]).to(device)
    val_y = [p.data.val.y.to(device) for p in parts]
    folds_axis = torch.arange(k, device=device)[:, None]

    # ---- the fold folders, each as train_split starts it
    from dltrain.train.checkpoint import write_json

    parameters = count_parameters(first.model)
    train_rows = sorted({p.rows for p in parts})
    val_rows = sorted({len(p.data.val) for p in parts})
    spec = first.data.spec
    for note in source.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print(
        f"[bold]dltrain cv  folds {folds[0].index}-{folds[-1].index} together ({k} of {fold_count}, "
        f"cv.vectorize)[/bold]  model={settings.model.name} ({parameters:,} parameters per fold)  "
        f"data={settings.data.name} ({'-'.join(map(str, train_rows))} train / "
        f"{'-'.join(map(str, val_rows))} val per fold, {spec.task}"
        + (f", {spec.num_classes} classes" if spec.num_classes else "")
        + f")  loss={first.objective.loss_name}  optimizer={settings.optimizer.name}  device={device}"
    )
    out.print(f"fold folders: {first.folder.parent}/fold_N")
    for part in parts:
        _open_fold(part, cfg, settings, optimizer, schedule, device, monitor, mode, out)

    # ---- the epochs
    table_columns = ["epoch", "train_loss", "val_loss",
                     *([monitor] if monitor != "val_loss" else []), "lr", "seconds",
                     *(["folds"] if settings.trainer.patience else [])]
    table = EpochTable(table_columns, out)
    out.print(f"Each row: the mean over the {k} folds"
              + (" still training (early stopping)." if settings.trainer.patience else "."))
    flag = _StopFlag()
    step_every = first.logger.step_every
    with ExitStack() as stack:
        progress = stack.enter_context(EpochProgress(settings.trainer.progress, out))
        stack.enter_context(stop_on_signals(flag))
        for part in parts:
            stack.enter_context(part.logger)
        try:
            for epoch in range(1, settings.trainer.epochs + 1):
                active = [part for part in parts if part.frozen is None]
                if not active:  # every fold stopped early
                    break
                began = time.perf_counter()
                lr = optimizer.param_groups[0]["lr"]
                index, weight, orders = _epoch_batches(parts, steps, device)
                progress.start_epoch(epoch, steps)
                losses, outputs = [], []
                for step in range(steps):
                    rows, mask = index[step], weight[step]
                    optimizer.zero_grad(set_to_none=True)
                    step_loss, step_outputs = train_loss(params, train_x[folds_axis, rows],
                                                         train_y[folds_axis, rows], mask)
                    total = step_loss.sum()
                    if regularizer.l1:  # the sum of every fold's own penalty
                        total = total + regularizer.penalty()
                    total.backward()
                    if settings.trainer.grad_clip > 0:
                        _clip_per_fold(list(params.values()), settings.trainer.grad_clip)
                    optimizer.step()
                    if len(active) < k:
                        _restore_stopped(parts, params)
                    schedule.after_batch()
                    losses.append(step_loss.detach())
                    outputs.append(step_outputs.detach())
                    if step_every:
                        global_step = (epoch - 1) * steps + step + 1
                        if global_step % step_every == 0:
                            for part in active:
                                part.logger.step(global_step, losses[-1][part.position])
                    progress.advance()
                rows_seen = _train_rows(parts, active, epoch, steps, torch.stack(losses), weight, optimizer)
                with torch.no_grad():
                    base.eval()
                    val_outputs = torch.cat([forward(params, val_x[:, i:i + 1024])
                                             for i in range(0, val_x.shape[1], 1024)], dim=1)
                    base.train()
                stacked_outputs = torch.stack(outputs)
                rows = []
                for part in active:
                    f = part.position
                    visited = stacked_outputs[:, f][weight[:, f] > 0]
                    train = part.trainer._summarise(rows_seen[f], visited, train_y[f, :part.rows][orders[f]])
                    val_out = val_outputs[f, :len(val_y[f])]
                    val = part.trainer._summarise(part.objective.loss(val_out, val_y[f]).item(), val_out, val_y[f])
                    row = {"epoch": epoch, **{f"train_{key}": v for key, v in train.items()},
                           **{f"val_{key}": v for key, v in val.items()}, "lr": lr}
                    rows.append(row)
                seconds = time.perf_counter() - began  # the epoch of every fold, metrics included
                for row in rows:
                    row["seconds"] = seconds
                schedule.after_epoch(rows[0][monitor])  # plateau (per fold) is refused
                for part, row in zip(active, rows):
                    _end_epoch(part, epoch, row, monitor, mode, settings.trainer)
                mean = {c: sum(r[c] for r in rows) / len(rows) for c in table_columns if c in rows[0]}
                table.row({**mean, "epoch": epoch, "folds": len(rows)})
                for part, row in zip(active, rows):
                    part.logger.epoch_end(epoch, row)
                    part.writer.last(epoch, row)
                    if part.trainer.history.stopped_early:
                        _freeze(part, params, optimizer, schedule)
                still = any(part.frozen is None for part in parts)
                if flag.stop_requested and epoch < settings.trainer.epochs and still:
                    for part in parts:
                        part.writer.flush()
                        part.record.update(status="interrupted", history=part.trainer.history.rows)
                        write_json(part.folder / "metrics.json", part.record)
                    raise RunInterrupted(run_dir, flag.stop_requested)
        except (DltrainError, KeyboardInterrupt) as error:  # a second Ctrl-C stops at once
            failed = isinstance(error, DltrainError)
            for part in parts:
                part.writer.flush(include_last=False)
                part.record.update(status="failed" if failed else "interrupted",
                                   error=str(error) if failed else "interrupted by the user",
                                   history=part.trainer.history.rows)
                write_json(part.folder / "metrics.json", part.record)
            raise
        for part in parts:
            part.writer.flush()
        results = [_finish_fold(part, source, monitor, device, started) for part in parts]
    for part, result in zip(parts, results):
        out.print(f"fold_{part.fold.index}: best {monitor} {fmt(result.best[monitor])} at epoch "
                  f"{result.best_epoch}, final {fmt(result.final[monitor])}")
    out.print(f"{k} folds trained together in {time.perf_counter() - started:.1f} s.")
    return results


def _open_fold(part, cfg, settings, optimizer, schedule, device, monitor, mode, out) -> None:
    """The fold folder as train_split starts it: preprocessor.pkl, metrics.json (running), the
    checkpoint writer with this fold's own payload, its TensorBoard events."""
    from dataclasses import asdict

    from omegaconf import OmegaConf

    from dltrain.tb import RunLogger
    from dltrain.train.checkpoint import CheckpointWriter, save_pickle, write_json

    part.folder.mkdir(parents=True, exist_ok=True)
    save_pickle(part.folder / "preprocessor.pkl", part.data.preprocessor)
    fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.update(fold_cfg, "cv.fold", part.fold.index, force_add=True)
    part.config = OmegaConf.to_container(fold_cfg)
    spec_record = asdict(part.data.spec)
    part.record = {"status": "running", "task": part.data.spec.task, "monitor": monitor, "mode": mode,
                   "model": settings.model.name, "data": settings.data.name, "vectorized": True}
    model, trainer = part.model, part.trainer

    def payload(epoch: int, row: dict, with_training_state: bool) -> dict:
        state = {"model": {key: v.detach().clone() for key, v in model.state_dict().items()},
                 "epoch": epoch, "metrics": row, "config": part.config, "spec": spec_record}
        if with_training_state:
            state.update(part.frozen_state or _training_state(part, optimizer, schedule))
            state["trainer"] = trainer.state_dict()
        return state

    def written(epoch: int, row: dict) -> None:
        part.record.update(epochs_run=epoch, final=row, best_epoch=trainer.history.best_epoch)
        write_json(part.folder / "metrics.json", part.record)
        part.logger.flush()

    part.writer = CheckpointWriter(part.folder, settings.trainer.checkpoint_every_seconds, payload,
                                   on_write=written)
    part.logger = RunLogger(settings.logger, part.folder, fold_cfg, part.data.spec, monitor=monitor,
                            seed=part.seed, out=out)
    write_json(part.folder / "metrics.json", part.record)
    part.logger.start(model, optimizer, part.data, device)


def fold_optimizer_state(optimizer, f: int) -> dict:
    """Fold ``f``'s optimizer state_dict, as its own optimizer over its own parameters would save
    it (so that ``resume`` continues the fold alone): every per-parameter state tensor (momentum,
    exp_avg, sum, ...) is stacked like its parameter and sliced; scalars (the step) are shared."""
    state = optimizer.state_dict()
    return {
        "state": {i: {key: (v[f].clone() if torch.is_tensor(v) and v.ndim > 0 else copy.deepcopy(v))
                      for key, v in entry.items()} for i, entry in state["state"].items()},
        "param_groups": copy.deepcopy(state["param_groups"]),
    }


def _stack(tensors: list) -> torch.Tensor:
    """``[k, rows, ...]``: the folds' splits, the shorter ones padded with zero rows."""
    longest = max(len(t) for t in tensors)
    stacked = tensors[0].new_zeros((len(tensors), longest, *tensors[0].shape[1:]))
    for f, tensor in enumerate(tensors):
        stacked[f, :len(tensor)] = tensor
    return stacked


def _epoch_batches(parts, steps: int, device):
    """Every step's row indices ``[steps, k, width]`` and weights (1 for a real row, 0 for
    padding), from each fold's own generator: the batches the fold visits alone."""
    width = max(p.size for p in parts)
    index = torch.zeros((steps, len(parts), width), dtype=torch.long)
    weight = torch.zeros((steps, len(parts), width))
    orders = []
    for f, part in enumerate(parts):
        trainer = part.trainer
        # a fold that stopped early draws nothing: its generator stays where its last.pt has it
        shuffled = trainer.shuffle and part.frozen is None
        order = torch.randperm(part.rows, generator=trainer.generator) if shuffled else torch.arange(part.rows)
        orders.append(order.to(device))
        positions = torch.arange(steps)[:, None] * part.size + torch.arange(width)[None, :]
        valid = (torch.arange(width)[None, :] < part.size) & (positions < part.rows)
        index[:, f] = torch.where(valid, order[positions.clamp(max=part.rows - 1)], 0)
        weight[:, f] = valid.float()
    return index.to(device), weight.to(device), orders


def _train_rows(parts, active, epoch: int, steps: int, losses, weight, optimizer) -> list[float]:
    """Each fold's mean training loss over the epoch (its batches' means weighted by their
    rows), or one sentence when a training fold's loss stopped being finite."""
    counts = weight.sum(-1)  # [steps, k]
    means = ((losses * counts).sum(0) / torch.tensor([p.rows for p in parts], device=losses.device)).tolist()
    for part in active:
        f, mean = part.position, means[part.position]
        if not math.isfinite(mean):
            bad = torch.nonzero(~torch.isfinite(losses[:, f])).flatten()
            step = int(bad[0]) + 1 if len(bad) else steps
            raise DltrainError(
                f"The training loss of fold {part.fold.index} became "
                f"{float(losses[step - 1, f]) if len(bad) else mean} in epoch {epoch} at step {step} of "
                f"{steps}; lower optimizer.lr (now {optimizer.param_groups[0]['lr']:g}) or check the "
                f"data for extreme values."
            )
    return means


def _clip_per_fold(stacked: list, max_norm: float) -> None:
    """clip_grad_norm_ for every fold on its own: each fold's total gradient norm over its
    parameters, and its gradients scaled down when that norm exceeds ``max_norm``."""
    grads = [p.grad for p in stacked if p.grad is not None]
    if not grads:
        return
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)  # [k]
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(scale.view(-1, *([1] * (g.ndim - 1))))


def _end_epoch(part, epoch: int, row: dict, monitor: str, mode: str, settings) -> None:
    """The history, best.pt and early-stopping bookkeeping of Trainer.fit, for one fold."""
    history = part.trainer.history
    history.rows.append(row)
    value, best = row[monitor], history.best_value
    improved = best is None or math.isnan(best) or (
        value < best - settings.min_delta if mode == "min" else value > best + settings.min_delta)
    if improved:
        history.best_value, history.waited = value, 0
        history.best, history.best_epoch = row, epoch
        part.writer.best(epoch, row)
    else:
        history.waited += 1
    if settings.patience and history.waited >= settings.patience:
        history.stopped_early = True


def _training_state(part, optimizer, schedule) -> dict:
    return {"optimizer": fold_optimizer_state(optimizer, part.position),
            "scheduler": schedule.scheduler.state_dict() if schedule.scheduler is not None else None}


def _freeze(part, params: dict, optimizer, schedule) -> None:
    """A fold that stopped early keeps its weights and training state from now on; the other
    folds go on (its rows still pass through the stacked model, their updates are undone)."""
    part.frozen = {name: stacked.detach()[part.position].clone() for name, stacked in params.items()}
    part.frozen_state = _training_state(part, optimizer, schedule)


@torch.no_grad()
def _restore_stopped(parts, params: dict) -> None:
    for part in parts:
        if part.frozen is not None:
            for name, value in part.frozen.items():
                params[name][part.position].copy_(value)


def _finish_fold(part, source, monitor: str, device, started: float):
    """Test metrics of the best model, validation scores of the last, metrics.json finished: as
    train_split ends a run; then the fold's predictions and fold.json as train_fold writes them."""
    from dltrain.crossval import write_fold_files
    from dltrain.run import FitResult
    from dltrain.train.checkpoint import load_checkpoint, write_json
    from dltrain.train.loop import to_device

    model, trainer, data, history = part.model, part.trainer, part.data, part.trainer.history
    test_metrics = test_scores = None
    if data.test is not None:
        last_weights = {key: v.detach().clone() for key, v in model.state_dict().items()}
        model.load_state_dict(load_checkpoint(part.folder / "best.pt", map_location=device)["model"])
        test_metrics = trainer.evaluate(to_device(data.test.x, device), data.test.y.to(device))
        test_scores = trainer.predict_scores(to_device(data.test.x, device)).numpy()
        model.load_state_dict(last_weights)
    val_scores = trainer.predict_scores(to_device(data.val.x, device)).numpy()
    describe = getattr(model, "describe", None)
    result = FitResult(
        run_dir=part.folder, task=data.spec.task, monitor=monitor, best_epoch=history.best_epoch,
        best=history.best, final=history.rows[-1], test=test_metrics, epochs_run=len(history.rows),
        stopped_early=history.stopped_early, seconds=time.perf_counter() - started,
        model_summary=describe() if callable(describe) else None,
        model=model, val_scores=val_scores, test_scores=test_scores,
    )
    part.logger.finish(result, data, trainer)
    part.record.update(status="finished", best_epoch=result.best_epoch, best=result.best,
                       final=result.final, test=test_metrics, epochs_run=result.epochs_run,
                       stopped_early=result.stopped_early, seconds=result.seconds,
                       model_summary=result.model_summary, history=history.rows)
    write_json(part.folder / "metrics.json", part.record)
    write_fold_files(part.folder, source, part.fold, part.seed, result)
    return result
