"""One training run, start to end: settings -> data -> objective -> model -> trainer -> run folder."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dltrain.console import EpochProgress, EpochTable, console, fmt
from dltrain.errors import DltrainError


@dataclass
class FitResult:
    run_dir: Path
    task: str
    monitor: str  # e.g. val_loss
    best_epoch: int
    best: dict  # metrics of the best epoch
    final: dict  # metrics of the last epoch
    test: dict | None  # metrics of the best model on the test split, when the data has one
    epochs_run: int
    stopped_early: bool
    seconds: float
    model_summary: str | None
    model: object = field(default=None, repr=False)  # the trained nn.Module (weights of the last epoch)
    val_scores: object = field(default=None, repr=False)  # scores for the validation rows, in order
    test_scores: object = field(default=None, repr=False)  # scores of the best model for the test rows


def run_fit(cfg, run_dir: Path, out=console) -> FitResult:
    """``dltrain fit``: load the data, split off validation rows, train, write the run folder."""
    from dltrain.config import read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices
    from dltrain.distributed import rank_zero_first
    from dltrain.train.device import seed_everything

    started = time.perf_counter()
    settings = read_settings(cfg)
    seed_everything(settings.trainer.seed)
    with rank_zero_first():  # data-parallel ranks: no two downloads into one folder
        source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    resume = cfg.get("resume")
    return train_split(cfg, settings, source, train_index, val_index, run_dir, out=out,
                       started=started, resume_from=Path(resume) / "last.pt" if resume else None)


def train_split(cfg, settings, source, train_index, val_index, run_dir: Path, *, out=console,
                seed: int | None = None, title: str = "dltrain fit", started: float | None = None,
                callbacks=(), resume_from: Path | None = None) -> FitResult:
    """Train a fresh model on rows ``train_index`` of ``source``, validating on ``val_index``
    (may be empty), with preprocessing fitted on the training rows only; write ``run_dir``.
    This is one fit, or one fold of a cross-validation (``seed`` then differs per fold).
    ``resume_from``: a last.pt whose model, optimizer, scheduler, RNG and epoch state (down to
    the step inside an interrupted epoch) the run continues from exactly."""
    from omegaconf import OmegaConf

    from dltrain.data import prepare
    from dltrain.distributed import current_shard, local_processes, world_size
    from dltrain.models import count_parameters, create_model
    from dltrain.tb import RunLogger
    from dltrain.train.checkpoint import CheckpointWriter, load_checkpoint, save_pickle, write_json
    from dltrain.train.device import resolve_device, seed_everything
    from dltrain.train.loop import StopRequested, Trainer, batch_count
    from dltrain.train.metrics import check_monitor, monitor_mode
    from dltrain.train.objective import build_objective
    from dltrain.train.optim import build_optimizer, build_schedule

    started = time.perf_counter() if started is None else started
    trainer_settings = settings.trainer
    if seed is not None:
        trainer_settings = replace(trainer_settings, seed=seed)
    device = resolve_device(trainer_settings.device)
    shard = current_shard()  # a rank of a data-parallel fit, or None
    if shard is None and (world_size() > 1 or local_processes(trainer_settings) > 1):
        raise DltrainError(
            "Data-parallel training (trainer.strategy=ddp, trainer.devices above 1, or torchrun) runs "
            "only as dltrain fit without -m; dltrain cv and sweeps train one process per run, so drop "
            "trainer.strategy and trainer.devices there."
        )
    main = shard is None or shard.rank == 0  # only rank 0 writes the run folder and prints
    if shard is not None:
        device = shard.device(device)
    seed_everything(trainer_settings.seed)

    data = prepare(source, train_index, val_index)
    if shard is not None:
        shard.check_rows(len(data.train))
    spec = data.spec
    objective = build_objective(settings.loss.name, settings.loss.options, spec)
    check_monitor(trainer_settings.monitor, spec.task)
    mode = monitor_mode(trainer_settings.monitor, trainer_settings.mode)
    monitor = f"{'val' if data.val is not None else 'train'}_{trainer_settings.monitor}"

    model = create_model(settings.model.name, spec, objective.output_size, **settings.model.options)
    optimizer, regularizer = build_optimizer(model, settings.optimizer, settings.regularization)
    steps_per_epoch = batch_count(len(data.train), settings.data.batch_size)
    schedule = build_schedule(optimizer, settings.scheduler, epochs=trainer_settings.epochs,
                              steps_per_epoch=steps_per_epoch, mode=mode)

    run_dir.mkdir(parents=True, exist_ok=True)
    # The fitted preprocessing travels with the run: eval and predict apply it, never refit it.
    if main:
        save_pickle(run_dir / "preprocessor.pkl", data.preprocessor)
    for note in source.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    sizes = f"{len(data.train)} train" + (f" / {len(data.val)} val" if data.val is not None else "")
    sizes += f" / {len(data.test)} test" if data.test is not None else ""
    out.print(
        f"[bold]{title}[/bold]  model={settings.model.name} ({count_parameters(model):,} parameters)  "
        f"data={settings.data.name} ({sizes}, {spec.task}"
        + (f", {spec.num_classes} classes" if spec.num_classes else "")
        + f")  loss={objective.loss_name}  optimizer={settings.optimizer.name}  device={device}"
        + (f" x {shard.world_size} processes (DDP, global batch {settings.data.batch_size})" if shard else "")
    )
    out.print(f"run folder: {run_dir}")

    plain_config = OmegaConf.to_container(cfg, resolve=True)
    spec_record = asdict(spec)
    metrics_path = run_dir / "metrics.json"
    record = {"status": "running", "task": spec.task, "monitor": monitor, "mode": mode,
              "model": settings.model.name, "data": settings.data.name}

    def checkpoint(epoch: int, row: dict, with_training_state: bool) -> dict:
        payload = {"model": model.state_dict(), "epoch": epoch, "metrics": row,
                   "config": plain_config, "spec": spec_record}
        if with_training_state:
            payload["optimizer"] = optimizer.state_dict()
            payload["scheduler"] = (schedule.scheduler.state_dict()
                                    if schedule.scheduler is not None else None)
            payload["trainer"] = trainer.state_dict()
        return payload

    def checkpointed(epoch: int, row: dict) -> None:
        # metrics.json stays small while running: the whole history is written once, at the end.
        record.update(epochs_run=epoch, final=row, best_epoch=trainer.history.best_epoch)
        write_json(metrics_path, record)
        logger.flush()

    if not main:  # the other ranks of a data-parallel fit write nothing
        write_json = _discard
    writer = (CheckpointWriter(run_dir, trainer_settings.checkpoint_every_seconds, checkpoint,
                               on_write=checkpointed) if main else _NoCheckpoints())

    # TensorBoard events in run_dir (logger=none: every call is a no-op).
    logger = RunLogger(settings.logger if main else replace(settings.logger, name="none"), run_dir, cfg,
                       spec, monitor=monitor, seed=trainer_settings.seed, out=out)
    columns = ["epoch", *(c for c in _columns(objective.task, data.val is not None)), "lr", "seconds"]
    trainer = Trainer(
        model, objective, optimizer, schedule, regularizer, settings=trainer_settings, device=device,
        batch_size=settings.data.batch_size, shuffle=settings.data.shuffle,
        table=EpochTable(columns, out), on_epoch_end=[*callbacks, logger.epoch_end],
        on_step=logger.step, step_every=logger.step_every, shard=shard,
    )
    if resume_from is not None:
        _resume(resume_from, model, optimizer, schedule, trainer, out)
        if shard is not None and trainer.cursor is not None:
            raise DltrainError(
                f"resume={resume_from.parent}: its last.pt was saved inside epoch {trainer.cursor['epoch']} "
                f"by a single-process run, which only a single process continues exactly; resume it "
                f"with trainer.devices=1 (data-parallel runs stop and resume at epoch ends)."
            )
    write_json(metrics_path, record)  # after a resume was checked: a failed one changes nothing
    first_epoch = trainer.cursor["epoch"] if trainer.cursor else len(trainer.history.rows) + 1
    logger.start(model, optimizer, data, device, first_epoch=first_epoch)
    with EpochProgress(trainer_settings.progress and main, out) as progress, stop_on_signals(trainer), logger:
        trainer.progress = progress
        try:
            history = trainer.fit(data, monitor=trainer_settings.monitor, mode=mode,
                                  save_best=writer.best, save_last=writer.last)
        except DltrainError:
            writer.flush(include_last=False)
            raise
        except StopRequested as stop:
            writer.flush()  # last.pt now holds the position inside the interrupted epoch
            record.update(status="interrupted", history=trainer.history.rows)
            write_json(metrics_path, record)
            from dltrain.errors import RunInterrupted

            raise RunInterrupted(run_dir, stop.signal_number) from None
    writer.flush()

    test_metrics = test_scores = None
    if data.test is not None and main:  # best.pt is rank 0's file
        # The test split judges the best model; the last weights are kept in memory meanwhile.
        last_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(load_checkpoint(run_dir / "best.pt", map_location=device)["model"])
        test_metrics = trainer.evaluate(data.test.x, data.test.y)  # in chunks, wherever x lives
        test_scores = trainer.predict_scores(data.test.x).numpy()
        model.load_state_dict(last_weights)

    val_scores = trainer.predict_scores(data.val.x).numpy() if data.val is not None else None
    describe = getattr(model, "describe", None)
    result = FitResult(
        run_dir=run_dir, task=spec.task, monitor=monitor, best_epoch=history.best_epoch,
        best=history.best, final=history.rows[-1], test=test_metrics,
        epochs_run=len(history.rows), stopped_early=history.stopped_early,
        seconds=time.perf_counter() - started,
        model_summary=describe() if callable(describe) else None,
        model=model, val_scores=val_scores, test_scores=test_scores,
    )
    logger.finish(result, data, trainer)
    record.update(status="finished", best_epoch=result.best_epoch, best=result.best,
                  final=result.final, test=test_metrics, epochs_run=result.epochs_run,
                  stopped_early=result.stopped_early, seconds=result.seconds,
                  model_summary=result.model_summary, history=history.rows)
    write_json(metrics_path, record)
    _print_summary(result, out)
    return result


@contextmanager
def stop_on_signals(trainer):
    """Ctrl-C or SIGTERM asks the trainer to stop after its current step (it then saves a
    checkpoint); a second Ctrl-C stops at once."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request_stop(signal_number, frame):
        if trainer.stop_requested and signal_number == signal.SIGINT:
            raise KeyboardInterrupt
        trainer.stop_requested = signal_number

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _NoCheckpoints:
    """The checkpoint writer of a data-parallel rank other than 0: rank 0 writes for all."""

    def best(self, epoch: int, row: dict) -> None:
        pass

    def last(self, epoch: int, row: dict) -> None:
        pass

    def flush(self, include_last: bool = True) -> None:
        pass


def _discard(path, data) -> None:
    pass


def _resume(path: Path, model, optimizer, schedule, trainer, out) -> None:
    from dltrain.train.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if "trainer" not in state or "optimizer" not in state:
        raise DltrainError(f"{str(path)!r} holds no training state to resume from; use a run folder's last.pt.")
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise DltrainError(
            f"The checkpoint {str(path)!r} does not fit this model and optimizer ({first_line}); "
            f"resume with the run's own settings."
        ) from None
    if schedule.scheduler is not None and state.get("scheduler") is not None:
        schedule.scheduler.load_state_dict(state["scheduler"])
    trainer.load_state_dict(state["trainer"])
    cursor = state["trainer"].get("cursor")
    where = f"inside epoch {cursor['epoch']} at step {cursor['step']}" if cursor else f"after epoch {state['epoch']}"
    out.print(f"Resuming from {path} ({where}).")


def _columns(task: str, has_val: bool) -> list[str]:
    from dltrain.train.metrics import METRICS

    names = ["loss", *METRICS[task]]
    columns = [f"train_{n}" for n in names]
    if has_val:
        columns += [f"val_{n}" for n in names]
    return columns


def _print_summary(result: FitResult, out) -> None:
    from rich.table import Table

    table = Table(title="Result", show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column(f"best (epoch {result.best_epoch})", justify="right")
    table.add_column(f"final (epoch {result.epochs_run})", justify="right")
    if result.test is not None:
        table.add_column("test (best model)", justify="right")
    for key in result.final:
        if key in ("epoch", "seconds"):
            continue
        cells = [key, fmt(result.best.get(key)), fmt(result.final.get(key))]
        if result.test is not None:
            split, _, name = key.partition("_")
            cells.append(fmt(result.test.get(name)) if split == "val" else "")
        table.add_row(*cells)
    out.print(table)
    if result.stopped_early:
        out.print(f"Stopped early after epoch {result.epochs_run}: {result.monitor} stopped improving.")
    if result.model_summary:
        out.print(f"Learned parameters: {result.model_summary}")
    out.print(
        f"Best {result.monitor} = {fmt(result.best[result.monitor])} at epoch {result.best_epoch}; "
        f"{result.epochs_run} epochs in {result.seconds:.1f} s. Run folder: {result.run_dir}"
    )
