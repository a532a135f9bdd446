"""``dltrain fit`` (and ``dltrain.fit()``, which behaves the same): compose -> data-parallel ->
launch, or resume (resume.py) -> data-parallel -> train in the run's own folder; and the task
that trains one run in its folder."""

from __future__ import annotations

import os
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

from dltrain.commands.ensemble import train_ensemble
from dltrain.commands.launch import check_run_dir, launch
from dltrain.commands.lr_find import found_lr
from dltrain.commands.plot import write_curves
from dltrain.commands.resume import (CONFIG, fewer_epochs, fit_folder, nothing_left, refuse_in_use,
                                     resumed_config, split_resume)
from dltrain.config import compose, read_settings
from dltrain.config.compose import expand_recipe_file
from dltrain.console import EpochTable, console
from dltrain.data import load_source
from dltrain.data.preprocessing import load_saved
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.files import RunLock, console_log
from dltrain.models.custom import reading_run
from dltrain.train import parallel
from dltrain.train.determinism import deterministic
from dltrain.train.device import resolve_device
from dltrain.train.engine import Trainer
from dltrain.train.population import (banner, column_priority, columns, conclude, open_member, print_summary,
                                      train)


def fit(overrides: list[str]):
    """Train as ``dltrain fit OVERRIDES`` does; returns the FitResult (None when the run went to
    data-parallel processes started here, which print and write for themselves, or when a resumed
    run had nothing left to train)."""
    overrides = expand_recipe_file(overrides)  # recipe=PATH as settings, for Hydra's jobs too
    check_run_dir(overrides)
    if int(os.environ.get("RANK", "0")) != 0:
        parallel.quiet()  # rank 0 tells torchrun's user about a bad setting, once
    target, overrides = split_resume(overrides)
    if target is not None:
        return resume(target, overrides)
    cfg = compose(overrides)  # every config error is one sentence before a run folder exists
    task = partial(launch, run_fit, overrides)  # here, or in each data-parallel rank
    if fit_data_parallel(cfg, overrides, task):  # trainer.strategy=ddp / devices=N / torchrun
        return None
    return task()


def resume(target: str, overrides: list[str]):
    """``dltrain fit resume=TARGET OVERRIDES``: the run goes on in its own folder from its last.pt,
    with the config it was trained with (RESUMABLE overrides applied) and its own preprocessing.
    Not through Hydra: nothing the folder holds is replayed, and its .hydra/ stays as it is."""
    run_dir = fit_folder(target)
    with reading_run(run_dir):  # a custom model's class: never imported from the run folder
        cfg = resumed_config(target, run_dir, run_dir / CONFIG, overrides)
        refuse_in_use(target, [run_dir])
        reason = nothing_left(run_dir, read_settings(cfg).trainer)
        if reason is not None:
            console.print(f"Nothing to do: {run_dir} {reason}.")
            return None
        task = partial(continue_run, cfg, run_dir)
        if fit_data_parallel(cfg, [*overrides, f"resume={run_dir}"], task):
            return None
        return task()


def continue_run(cfg, run_dir: Path):
    """Train a resumed run here, holding its folder's lock (rank 0 of a data-parallel run, the
    one that writes): a second process resuming it meanwhile is refused."""
    with ExitStack() as held:
        if not parallel.secondary_rank():
            held.enter_context(RunLock(run_dir))
        return run_fit(cfg, run_dir)


def run_fit(cfg, run_dir: Path, out=console):
    """The task (a Hydra job's, or a resume's in the run's own folder): load the data, split off
    validation rows, train, write the run folder; what it prints is also appended to the run's
    dltrain.log (rank 0's, in a data-parallel fit; a resume's once its checks passed)."""
    started = time.perf_counter()
    resume = cfg.get("resume")
    with console_log(out, *([] if parallel.secondary_rank() else [run_dir]), held=bool(resume)) as logs:
        settings = read_settings(cfg)
        with parallel.rank_zero_first():  # data-parallel ranks: no two downloads into one folder
            source = load_source(settings.data)
        train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
        if settings.trainer.ensemble > 1:
            if resume or parallel.current_shard() is not None:
                raise DltrainError("trainer.ensemble trains its seeds in one process from the start; it cannot "
                                   "be resumed or run data-parallel (start it again, with trainer.strategy=auto).")
            result = train_ensemble(cfg, settings, source, train_index, val_index, run_dir, out=out)
        else:
            result = train_split(cfg, settings, source, train_index, val_index, run_dir, out=out, started=started,
                                 resume_from=Path(resume) / "last.pt" if resume else None, logs=logs)
        if settings.trainer.plot and not parallel.secondary_rank():
            write_curves(run_dir, out)
        return result


def train_split(cfg, settings, source, train_index, val_index, run_dir: Path, *, out=console,
                seed: int | None = None, title: str = "dltrain fit", started: float | None = None,
                resume_from: Path | None = None, callbacks=(), outcome_figure: bool = True, logs=None):
    """One fit (or one fold of a cross-validation, ``seed`` then differs per fold): a population
    of one member trained on rows ``train_index`` (preprocessing fitted on them only), validated on
    ``val_index`` (may be empty), written to ``run_dir``; ``resume_from``: a last.pt to continue
    exactly (down to the step inside an interrupted epoch); ``callbacks``: called (epoch, row)
    at every epoch's end; ``outcome_figure``: see open_member; ``logs``: the run's held logs
    (files.console_log), released once a resume's checks passed."""
    started = time.perf_counter() if started is None else started
    # trainer.deterministic from here on, before any CUDA work: the lr test, training and the test split
    with deterministic(settings.trainer):
        parallel.refuse_in_one_process(settings.trainer)  # a sweep point with data-parallel settings
        shard = parallel.current_shard()  # a rank of a data-parallel fit, or None
        main = shard is None or shard.rank == 0  # only rank 0 writes the run folder and prints
        device = resolve_device(settings.trainer.device)
        device = shard.device(device) if shard is not None else device
        # A resumed run goes on with the preprocessing (and target transform) it was trained with,
        # never refitted ones.
        preprocessor, target = load_saved(resume_from.parent) if resume_from is not None else (None, None)
        seed = settings.trainer.seed if seed is None else seed
        record = None
        if settings.trainer.lr_find:  # the range test, seeded as the model; what fit trains then differs only in lr
            cfg, settings, lr = found_lr(cfg, settings, source, train_index, run_dir, seed=seed, device=device,
                                         resume=resume_from is not None, data_parallel=shard is not None,
                                         main=main, out=out)
            record = {"lr_find": {"lr": lr, "file": "lr_find.json"}}
        member = open_member(cfg, settings, source, train_index, val_index, run_dir, seed=seed, main=main,
                             record=record, outcome_figure=outcome_figure, preprocessor=preprocessor,
                             target=target, out=out)
        member.callbacks.extend(callbacks)
        if shard is not None:
            shard.check_rows(len(member.data.train))
        for note in source.notes:
            out.print(f"[yellow]note:[/yellow] {note}")
        trainer = Trainer([member], settings=settings.trainer, device=device,
                          batch_size=settings.data.batch_size, shuffle=settings.data.shuffle,
                          table=EpochTable(columns(member), out, priority=column_priority(member)), shard=shard)
        ddp = f" x {shard.world_size} processes (DDP, global batch {settings.data.batch_size})" if shard else ""
        out.print(banner(title, settings, member, device, extra=ddp, threads=trainer.threads_note))
        out.print(f"run folder: {run_dir}")
        if resume_from is not None:
            member.resume(resume_from, out)
            trained = member.cursor["epoch"] if member.cursor else len(member.rows)
            if settings.trainer.epochs < trained:
                raise fewer_epochs(resume_from.parent, settings.trainer.epochs, trained)
            if shard is not None and member.cursor is not None:
                raise DltrainError(
                    f"resume={resume_from.parent}: its last.pt was saved inside epoch {member.cursor['epoch']} "
                    f"by a single-process run, which only a single process continues exactly; resume it "
                    f"with trainer.devices=1 (data-parallel runs stop and resume at epoch ends)."
                )
        if logs is not None:  # from here on the run writes its folder
            logs.release()
        first_epoch = member.cursor["epoch"] if member.cursor else len(member.rows) + 1
        train(trainer, run_dir, progress=settings.trainer.progress and main, out=out, first_epoch=first_epoch)
        result = conclude(member, started)
        print_summary(result, out)
        return result


# --------------------------------------------------------------------------- data-parallel


def fit_data_parallel(cfg, overrides: list[str], task) -> bool:
    """``dltrain fit`` as data-parallel processes when the config (or torchrun) asks for them: in
    a rank started by torchrun, join the process group and run ``task`` (which trains); otherwise
    start the ranks here, each ``dltrain fit OVERRIDES`` (with ``resume=`` resolved). False: a
    plain fit, ``task`` not run."""
    settings = read_settings(cfg)
    trainer = settings.trainer
    processes = parallel.check(trainer)
    ranks = max(parallel.world_size(), processes)
    if ranks > 1 and 0 < settings.data.batch_size < ranks:
        raise DltrainError(
            f"data.batch_size={settings.data.batch_size} is smaller than the {ranks} data-parallel processes; "
            f"it is the global batch, split across them: use at least {ranks} (or 0 for all rows)."
        )
    if parallel.launched():  # a rank started by torchrun (or by spawn below), one process or more
        with parallel.process_group(trainer):
            task()
        return True
    if processes == 1:
        return False
    spawn(overrides, processes)
    return True


def refuse_data_parallel(command: str, overrides: list[str]) -> None:
    """One sentence, before any run folder, for data-parallel settings where they cannot run:
    ``dltrain cv`` and sweeps train one process per run (a setting that a recipe brings in is
    refused by train_split instead)."""
    asked = parallel.world_size() > 1 or any(
        (key.lstrip("+") == "trainer.strategy" and "ddp" in value)
        or (key.lstrip("+") == "trainer.devices" and value.strip() not in ("auto", "1", "null"))
        for key, _, value in (o.partition("=") for o in overrides)
    )
    if asked:
        raise DltrainError(
            f"{command} does not run data-parallel (trainer.strategy=ddp, trainer.devices above 1, or "
            f"torchrun): it trains one process per run; drop those settings, or train with dltrain fit alone."
        )


def spawn(overrides: list[str], processes: int) -> None:
    """Run ``python -m dltrain fit OVERRIDES`` as ``processes`` ranks on this machine with torch's
    elastic launcher, as ``torchrun --standalone --nproc_per_node=N`` would, and wait for them.
    The ranks print for themselves (rank 0 only); a failed rank ends this process with its exit
    code, a Ctrl-C is passed on to the ranks (they stop at the end of their epoch)."""
    import logging
    import sys
    import uuid

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0)
    # The ranks already said what went wrong, in one sentence; the launcher's own report of a
    # failed child (a page of text) would bury it.
    for name in list(logging.Logger.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads is None:  # as torchrun: N processes of one thread each, not N x all cores
        os.environ["OMP_NUM_THREADS"] = "1"  # the ranks inherit this process's environment
    try:
        elastic_launch(config, sys.executable)("-m", "dltrain", "fit", *overrides)
    except ChildFailedError as failed:
        failure = failed.failures.get(0) or failed.get_first_failure()[1]
        code = failure.exitcode
        raise SystemExit(code if code > 0 else 128 - code) from None
    except SignalException as stopped:
        raise SystemExit(128 + int(stopped.sigval)) from None
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
