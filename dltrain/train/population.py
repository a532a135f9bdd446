"""A population's life: open each member (seed, data prepared on its own training rows,
``build``, run folder, logger), train them all through the one Trainer, settle their folders
when training stops for any reason, and conclude each member into a FitResult (test metrics of
its best weights, validation scores, the finished metrics.json and TensorBoard run)."""

from __future__ import annotations

import math
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dltrain.console import EpochProgress, console, fmt, plural
from dltrain.data import prepare
from dltrain.errors import RunInterrupted, failure_sentence, note_run_folder
from dltrain.models.custom import CUSTOM, TARGET
from dltrain.train.build import build
from dltrain.train.checkpoint import check_weights, load_checkpoint, state_shapes
from dltrain.train.csv_logger import CsvLogger
from dltrain.train.device import seed_everything
from dltrain.train.engine import StopRequested, Trainer, optimizer_steps, requested_stop, stop_on_signals
from dltrain.train.loggers import Loggers
from dltrain.train.member import Member
from dltrain.train.metrics import METRICS, monitor_mode
from dltrain.train.mlflow_logger import MlflowLogger
from dltrain.train.rundir import RunFolder
from dltrain.train.stopping import EarlyStopping
from dltrain.train.tensorboard import RunLogger


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
    notes: list = field(default_factory=list)  # what the end of the run says about it (run_notes)


def open_member(cfg, settings, source, train_index, val_index, folder: Path, *, seed: int,
                label: str = "", record: dict | None = None, main: bool = True, outcome_figure: bool = True,
                preprocessor=None, target=None, out=console) -> Member:
    """A member seeded ``seed`` (initial weights and batch order, the same alone or in a
    population) on rows ``train_index`` of ``source``, validated on ``val_index`` (may be empty),
    writing ``folder`` (``main``: this process writes; a data-parallel rank other than 0 does not;
    ``outcome_figure``: the logger draws the end's confusion matrix or predicted-vs-true figure;
    ``preprocessor``, ``target``: the preprocessing and target transform a resumed run saved in
    ``folder``, applied as they are and not written again; None fits them on ``train_index``)."""
    from omegaconf import OmegaConf

    seed_everything(seed)
    data = prepare(source, train_index, val_index, preprocessor=preprocessor, target=target)
    parts = build(settings, data.spec, train_targets=data.train.y,
                  steps_per_epoch=optimizer_steps(len(data.train), settings.data.batch_size,
                                                  settings.trainer.accumulate_grad_batches))
    solve = getattr(parts.optimizer, "solve", None)
    if solve is not None and preprocessor is None:  # optimizer=closed_form; a resumed run has its weights
        solve(data.train.x, data.train.y)
    trainer = settings.trainer
    monitor = f"{'val' if data.val is not None else 'train'}_{trainer.monitor}"
    mode = monitor_mode(trainer.monitor, trainer.mode)
    run_folder = RunFolder(
        folder, config=OmegaConf.to_container(cfg, resolve=True), spec=asdict(data.spec),
        record={"task": data.spec.task, "monitor": monitor, "mode": mode, "model": settings.model.name,
                "data": settings.data.name, **({"deterministic": True} if trainer.deterministic else {}),
                **(record or {})},
        every_seconds=trainer.checkpoint_every_seconds, writes=main, resumed=preprocessor is not None,
        save_top_k=trainer.save_top_k)
    logger = open_loggers(settings.logger, folder, cfg, data.spec, monitor=monitor, seed=seed, out=out,
                          outcome_figure=outcome_figure) if main else Loggers([])
    stopping = EarlyStopping(monitor, mode, trainer.patience, trainer.min_delta)
    return Member(label, seed, data, parts, stopping, folder=run_folder, logger=logger)


def open_loggers(settings, folder: Path, cfg, spec, *, monitor: str, seed: int, out=console,
                 outcome_figure: bool = True) -> Loggers:
    """The loggers ``settings`` (LoggerSettings) chooses, for a run in ``folder``, as one."""
    loggers = []
    if settings.tensorboard is not None:
        loggers.append(RunLogger(settings.tensorboard, folder, cfg, spec, monitor=monitor, seed=seed, out=out,
                                 outcome_figure=outcome_figure))
    if settings.csv:
        loggers.append(CsvLogger(folder))
    if settings.mlflow is not None:
        loggers.append(MlflowLogger(settings.mlflow, folder, cfg, seed=seed, out=out))
    return Loggers(loggers)


def for_inference(parts, trainer_settings, device) -> Member:
    """A trained model (``parts`` from build(..., training=False) with its weights loaded) as a
    member that evaluates and predicts on ``device`` with the run's speed settings."""
    import torch

    from dltrain.train.speed import configure

    member = Member("", trainer_settings.seed, None, parts, EarlyStopping("loss", "min"))
    member.speed = configure(parts.model, trainer_settings, device)
    parts.model.to(device)
    if member.speed.channels_last:
        parts.model.to(memory_format=torch.channels_last)
    member.device = device
    return member


def columns(member: Member) -> list[str]:
    """The console's epoch columns for this member's task."""
    names = ["loss", *METRICS[member.objective.task]]
    splits = ["train", "val"] if member.data.val is not None else ["train"]
    return ["epoch", *(f"{split}_{n}" for split in splits for n in names), "lr", "seconds"]


def column_priority(member: Member) -> list[str]:
    """The epoch columns most important first, for a console too narrow for all of them: the
    epoch, the monitored metric, the losses, the validation metrics, lr, seconds, the rest."""
    names = columns(member)
    first = ["epoch", member.monitor, "train_loss", "val_loss", *(c for c in names if c.startswith("val_")),
             "lr", "seconds"]
    return [c for c in dict.fromkeys([*first, *names]) if c in names]


def train(trainer: Trainer, run_dir: Path, *, progress: bool, out=console, first_epoch: int = 1) -> None:
    """Train every member of ``trainer``; whatever stops the training settles every member's
    folder first: a stop request saves last.pt and marks them interrupted (then RunInterrupted,
    whose message names ``run_dir``), a second Ctrl-C marks them interrupted, anything else (a
    user error, a full disk, a bug) marks them failed with its reason."""
    members = trainer.members
    with settled_on_error(members), ExitStack() as stack:
        for m in members:
            m.folder.open(m)
        trainer.progress = stack.enter_context(EpochProgress(progress, out))
        stack.enter_context(stop_on_signals(trainer))
        try:
            for m in members:  # a logger that cannot start (an MLflow server out of reach) fails the run
                if m.logger is not None:
                    stack.enter_context(m.logger)
                    m.logger.start(m.model, m.optimizer, m.data, trainer.device, first_epoch=first_epoch,
                                   history=list(m.rows))
            trainer.fit()
        except StopRequested as stop:
            for m in members:
                m.folder.interrupted()
            raise RunInterrupted(run_dir, stop.signal_number) from None
        stack.close()  # the loggers first: what they write belongs to the run
        for m in members:
            m.folder.flush()


@contextmanager
def settled_on_error(members: list[Member]):
    """Whatever escapes the block marks the folders of ``members`` still ``running``: a second
    Ctrl-C as interrupted, anything else as failed with its reason (``failure_sentence``), each
    written where the disk still allows it; the error goes on, knowing its run folder."""
    try:
        yield
    except KeyboardInterrupt:  # a second Ctrl-C stops at once
        for m in members:
            m.folder.failed("interrupted by the user", status="interrupted")
        raise
    except Exception as error:
        for m in members:
            m.folder.failed(failure_sentence(error))
        if len(members) == 1:
            note_run_folder(error, members[0].folder.path)
        raise


@contextmanager
def stopping_as_one(run_dir: Path):
    """Several trainings in ``run_dir`` that resume as one (a cross-validation's folds, then its
    summary and refit): Ctrl-C or SIGTERM at any moment inside ends them with RunInterrupted
    naming ``run_dir``, whose resume continues them all. The training under way stops after its
    step; between trainings the request waits for the next ``stop_if_requested`` (at the latest,
    the end of the block); a second Ctrl-C stops at once."""
    import signal
    from types import SimpleNamespace

    try:
        with stop_on_signals(SimpleNamespace(stop_requested=0)):
            yield
            stop_if_requested(run_dir)
    except RunInterrupted as stopped:  # a fold's or the refit's own folder: resume the whole
        raise RunInterrupted(run_dir, stopped.signal_number) from None
    except KeyboardInterrupt:
        raise RunInterrupted(run_dir, signal.SIGINT) from None


def stop_if_requested(run_dir: Path) -> None:
    """Between two trainings inside ``stopping_as_one``: stop here if Ctrl-C or SIGTERM came."""
    signal_number = requested_stop()
    if signal_number:
        raise RunInterrupted(run_dir, signal_number)


def conclude(member: Member, started: float) -> FitResult:
    """The member's result: test metrics of its best weights (the last ones are kept in memory
    meanwhile), scores for its validation rows, its finished metrics.json and TensorBoard run
    (or, should any of that fail, its folder marked failed)."""
    with settled_on_error([member]):
        return _conclude(member, started)


def _conclude(member: Member, started: float) -> FitResult:
    model, data, stopping = member.model, member.data, member.stopping
    test_metrics = test_scores = None
    best_path = member.folder.path / "best.pt"
    if data.test is not None and member.folder.writes:  # best.pt is rank 0's file
        last_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        best = load_checkpoint(best_path, map_location=member.device)  # a resumed run's may be old
        check_weights(best.get("model"), state_shapes(model), best_path, "this model",
                      "it is not this run's best checkpoint")
        model.load_state_dict(best["model"])
        test_metrics = member.evaluate(data.test.x, data.test.y)  # in chunks, wherever x lives
        test_scores = member.predict_scores(data.test.x).numpy()
        model.load_state_dict(last_weights)
    val_scores = member.predict_scores(data.val.x).numpy() if data.val is not None else None
    describe = getattr(model, "describe", None)
    result = FitResult(
        run_dir=member.folder.path, task=data.spec.task, monitor=member.monitor,
        best_epoch=stopping.best_epoch, best=stopping.best, final=member.rows[-1], test=test_metrics,
        epochs_run=len(member.rows), stopped_early=stopping.stopped,
        seconds=time.perf_counter() - started,
        model_summary=describe(target=data.target) if callable(describe) else None,
        model=model, val_scores=val_scores, test_scores=test_scores, notes=run_notes(member.rows),
    )
    if member.logger is not None:
        member.logger.finish(result, data, member)
    member.folder.finished(result)
    return result


def run_notes(rows: list[dict]) -> list[str]:
    """What a run's end says beyond its numbers (one sentence each): validation losses that were
    not finite numbers, and a validation R² that stayed below 0 (a model worse than
    predicting the mean)."""
    notes = []
    losses = [(row["epoch"], row["val_loss"]) for row in rows if isinstance(row.get("val_loss"), float)]
    bad = [(epoch, value) for epoch, value in losses if not math.isfinite(value)]
    if bad:
        kinds = " or ".join(dict.fromkeys(fmt(value) for _, value in bad))
        notes.append(f"val_loss was {kinds} in {plural(len(bad), 'epoch')} of {len(losses)} (first in epoch "
                     f"{bad[0][0]}): the model's outputs on the validation rows were not finite numbers "
                     f"there (weights that diverge, or inputs far outside the training rows').")
    scores = [row["val_r2"] for row in rows if isinstance(row.get("val_r2"), float) and math.isfinite(row["val_r2"])]
    if scores and max(scores) < 0:
        notes.append(f"val_r2 stayed below 0 (at best {fmt(max(scores))}): the model predicts the validation "
                     f"rows worse than their mean would; look at the features, optimizer.lr and "
                     f"data.target_transform (standardize suits a target of any scale).")
    return notes


def banner(title: str, settings, member: Member, device, *, extra: str = "", per: str = "",
           threads: str = "") -> str:
    """The first line of a run: what trains on what, where."""
    from dltrain.models import count_parameters

    data, spec = member.data, member.data.spec
    sizes = f"{len(data.train)} train" + (f" / {len(data.val)} val" if data.val is not None else "")
    sizes += f" / {len(data.test)} test" if data.test is not None else ""
    target = settings.model.options.get(TARGET) if settings.model.name == CUSTOM else None
    return (f"[bold]{title}[/bold]  model={settings.model.name} ({f'{target}, ' if target else ''}"
            f"{count_parameters(member.model):,} "
            f"parameters{per})  data={settings.data.name} ({sizes}, {spec.task}"
            + (f", {spec.num_classes} classes" if spec.num_classes else "")
            + f")  loss={member.objective.loss_name}  optimizer={settings.optimizer.name}  device={device}"
            + extra + ("  deterministic" if settings.trainer.deterministic else "") + (f"  {threads}" if threads else ""))


def print_summary(result: FitResult, out=console) -> None:
    """The Result table (each metric at the best and the last epoch; the test split's, of the
    best model, as test_* rows), the run's notes, and the line with the best value."""
    from rich.table import Table

    table = Table(title="Result", show_header=True, header_style="bold")
    table.add_column("metric", no_wrap=True)
    table.add_column(f"best (epoch {result.best_epoch})", justify="right", no_wrap=True)
    table.add_column(f"final (epoch {result.epochs_run})", justify="right", no_wrap=True)
    for key in result.final:
        if key in ("epoch", "seconds"):
            continue
        table.add_row(key, fmt(result.best.get(key)), fmt(result.final.get(key)))
    for name, value in (result.test or {}).items():  # the best model on the test split
        table.add_row(f"test_{name}", fmt(value), "")
    out.print(table)
    if result.stopped_early:
        out.print(f"Stopped early after epoch {result.epochs_run}: {result.monitor} stopped improving.")
    if result.model_summary:
        out.print(f"Learned parameters: {result.model_summary}")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    out.print(
        f"Best {result.monitor} = {fmt(result.best[result.monitor])} at epoch {result.best_epoch}; "
        f"{plural(result.epochs_run, 'epoch')} in {result.seconds:.1f} s. Run folder: {result.run_dir}"
    )

