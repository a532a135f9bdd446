"""``dltrain cv`` (and ``dltrain.cv()``): k-fold cross-validation. The config is composed and the
folds planned once; with Hydra's basic launcher the folds then train in this process (one by one,
or all at once as a stacked population with ``cv.vectorize``), with any other launcher each fold
is a Hydra job over ``cv.fold`` that re-plans the same folds wherever it runs. The finished fold
folders are then aggregated (cv_report.py), with the fold-averaged TensorBoard run and an
optional refit on all the data. ``resume=CV_DIR`` (resume.py) trains the unfinished folds in this
process, one by one."""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack
from pathlib import Path

from dltrain.commands.cv_report import (FINAL_MODEL, OOF_PREDICTIONS, SUMMARY_JSON, aggregate,
                                        fold_folder, objective_key, print_summary, write_fold_files)
from dltrain.commands.fit import refuse_data_parallel, train_split
from dltrain.commands.launch import (check_fold_launch, check_run_dir, launch, run_folder_overrides,
                                    settle_failed)
from dltrain.commands.plot import write_curves
from dltrain.commands.resume import (CONFIG, cv_folder, nothing_left, refuse_in_use, resumed_config,
                                     split_resume)
from dltrain.config import compose_with_hydra, read_cv_settings, read_settings
from dltrain.config.compose import expand_recipe_file
from dltrain.console import EpochTable, console, fmt, muted_copy, plural
from dltrain.data.folds import Fold, load_cv_source, plan_folds
from dltrain.errors import DltrainError
from dltrain.files import RunLock, console_log, copy_file, read_json_object, write_atomic, write_json
from dltrain.models import stacking_refusal
from dltrain.models.custom import reading_run
from dltrain.train import parallel
from dltrain.train.build import refuse_ensemble
from dltrain.train.determinism import deterministic
from dltrain.train.device import resolve_device
from dltrain.train.engine import Trainer, stack_refusal
from dltrain.train.population import (banner, conclude, open_member, stop_if_requested, stopping_as_one,
                                      train)
from dltrain.train.predictions import read_predictions, scores_of
from dltrain.train.tensorboard import write_cv_mean

# Overrides a fold's own job sets (its number, its folder).
_OWN = ("cv.fold=", "+cv.fold=", "++cv.fold=", "hydra.run.dir=", "hydra.sweep.dir=", "hydra.sweep.subdir=")


def cv(overrides: list[str]) -> dict:
    """Cross-validate as ``dltrain cv OVERRIDES`` does; returns the summary (cv_summary.json)."""
    started = time.perf_counter()
    overrides = expand_recipe_file(overrides)  # recipe=PATH as settings, for Hydra's jobs too
    check_run_dir(overrides)
    refuse_data_parallel("dltrain cv", overrides)
    target, overrides = split_resume(overrides)
    if target is not None:
        return resume(target, overrides, started)
    cfg, hydra = compose_with_hydra(overrides)  # one composition: the settings and the launcher
    in_process = check_fold_launch(hydra, overrides)  # the folds go to Hydra's launcher otherwise
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    parallel.refuse_in_one_process(settings.trainer)
    refuse_ensemble(settings.trainer, "in dltrain cv")
    source = load_cv_source(settings, plan)
    folds = plan_folds(source, plan, settings.data.name)
    selected = [f.index for f in folds] if plan.fold is None else [plan.fold]
    run_dir = _run_dir(overrides)
    # one writer: this process, for the whole cross-validation, whose output its dltrain.log keeps
    with RunLock(run_dir), console_log(console, run_dir):
        for index in selected:  # a failure noted by an earlier run in the same folder is stale
            _error_note(fold_folder(run_dir, index)).unlink(missing_ok=True)
        task_overrides = [o for o in overrides if not o.startswith(_OWN)]
        if not in_process:  # the launcher's processes or jobs stop on signals themselves
            # Each fold prints one line when it ends (its job's output is in its own log), so
            # Hydra's lines about launching them would only repeat the folder and the overrides.
            launch(run_fold_job, task_overrides + [
                f"cv.fold={','.join(map(str, selected))}", f"hydra.sweep.dir={_quoted(str(run_dir))}",
                "hydra.sweep.subdir=fold_${cv.fold}", "hydra/hydra_logging=none"], multirun=True)
        with stopping_as_one(run_dir):  # Ctrl-C or SIGTERM from here on: resume=run_dir continues
            if in_process:
                typed = [o for o in overrides if not o.startswith(_OWN[3:])]  # for dltrain runs, as a Hydra job keeps it
                _write_job_files(run_dir, cfg, typed, None)
                try:
                    train_folds(cfg, settings, plan, source, [folds[i] for i in selected], len(folds),
                                run_dir, task_overrides)
                except DltrainError:
                    if not any(run_dir.glob("**/*.pt")) and not any(run_dir.glob("*.error")):
                        shutil.rmtree(run_dir, ignore_errors=True)  # nothing trained, nothing to tell
                    raise
            _check_finished(run_dir, selected)
            return finish(cfg, settings, plan, source, selected, run_dir, started=started)


def resume(target: str, overrides: list[str], started: float) -> dict:
    """``dltrain cv resume=CV_DIR OVERRIDES``: with the config the cross-validation was started
    with (RESUMABLE overrides applied, resume.py), every unfinished fold goes on from its own
    last.pt (or starts), one by one in this process; finished folds stay as they are unless a
    larger trainer.epochs trains them on. Nothing to do leaves the folder as it is."""
    run_dir = cv_folder(target)
    with reading_run(run_dir):  # a custom model's class: never imported from the cv folder
        return _resume(target, run_dir, overrides, started)


def _resume(target: str, run_dir: Path, overrides: list[str], started: float) -> dict:
    saved = run_dir / CONFIG
    if not saved.is_file():  # its folds ran under a launcher: each fold's config
        saved = min(run_dir.glob(f"fold_*/{CONFIG}"), key=lambda p: _fold_number(p.parent.parent))
    cfg = resumed_config(target, run_dir, saved, overrides, cv=True)
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    parallel.refuse_in_one_process(settings.trainer)
    selected = list(range(plan.fold_count)) if plan.fold is None else [plan.fold]
    refuse_in_use(target, [run_dir, *(fold_folder(run_dir, i) for i in selected)])
    to_run = [i for i in selected if nothing_left(fold_folder(run_dir, i), settings.trainer) is None]
    summary = _read_summary(run_dir)
    if not to_run and summary.get("status") == "finished":
        console.print(f"Nothing to do: {run_dir} has finished, with no epoch left to train in any fold "
                      f"(a larger trainer.epochs trains them on).")
        return summary
    source = load_cv_source(settings, plan)
    folds = plan_folds(source, plan, settings.data.name)
    # one writer: this process, for the whole cross-validation; Ctrl-C prints resume=run_dir again
    with RunLock(run_dir), console_log(console, run_dir), stopping_as_one(run_dir):
        console.print(f"Resuming {run_dir}: folds {', '.join(map(str, to_run)) or 'none'} to run, "
                      f"{len(selected) - len(to_run)} finished.")
        for index in to_run:  # a failure noted by an earlier run in the same folder is stale
            _error_note(fold_folder(run_dir, index)).unlink(missing_ok=True)
        if to_run:
            train_folds(cfg, settings, plan, source, [folds[i] for i in to_run], len(folds), run_dir,
                        _started_with(saved))
        _check_finished(run_dir, selected)
        return finish(cfg, settings, plan, source, selected, run_dir, started=started)


def run_cv(cfg, run_dir: Path) -> float:
    """Hydra task for a whole cross-validation in one job (``dltrain cv -m``: each sweep job is a
    cross-validation); returns the mean validation metric, for a sweeper to optimise."""
    from hydra.core.hydra_config import HydraConfig

    task_overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith(_OWN)]
    return cross_validate(cfg, run_dir, task_overrides=task_overrides)["objective"]["mean"]


def cross_validate(cfg, run_dir: Path, *, source=None, task_overrides=(), out=console) -> dict:
    """Every selected fold in this process, then the summary (``source``: the loaded data, when
    the caller has it already)."""
    started = time.perf_counter()
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    parallel.refuse_in_one_process(settings.trainer)
    source = load_cv_source(settings, plan) if source is None else source
    folds = plan_folds(source, plan, settings.data.name)
    selected = folds if plan.fold is None else [folds[plan.fold]]
    with console_log(out, run_dir), stopping_as_one(run_dir):
        train_folds(cfg, settings, plan, source, selected, len(folds), run_dir, list(task_overrides), out=out)
        return finish(cfg, settings, plan, source, [f.index for f in selected], run_dir, out=out,
                      started=started)


def run_fold_job(cfg, run_dir: Path) -> float:
    """Hydra task for one fold (``cv.fold=N``) under a launcher that may run it in another
    process or on another machine: it re-plans the same folds from the same data and seed."""
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, plan)
    folds = plan_folds(source, plan, settings.data.name)
    try:
        result = train_fold(cfg, settings, source, folds[plan.fold], len(folds), run_dir)
    except DltrainError as error:
        failure = DltrainError(f"Fold {plan.fold} of the cross-validation failed: {error}")
        # Leave the sentence where the aggregating process finds it, even when the fold folder
        # itself is removed.
        write_atomic(_error_note(run_dir), str(failure))
        raise failure from None
    return result.final.get(objective_key(settings))


# --------------------------------------------------------------------------- training folds


def fold_seed(settings, fold: Fold) -> int:
    """Each fold's model starts from its own seed, the same whether it runs alone or with the rest."""
    return settings.trainer.seed + fold.index


def train_folds(cfg, settings, plan, source, folds: list[Fold], fold_count: int, run_dir: Path,
                task_overrides: list[str], *, out=console) -> None:
    """Train ``folds`` in their fold_N folders under ``run_dir`` (each with the .hydra/ a fold's
    job would have: ``task_overrides`` plus its cv.fold): stacked as one population when
    ``cv.vectorize`` asks for it and allows it, else one after another."""
    members = _stacked_members(cfg, settings, plan, source, folds, run_dir, out)
    if members is not None:
        with ExitStack() as held:  # every fold's folder, while its member trains with the others
            for fold in folds:
                held.enter_context(RunLock(fold_folder(run_dir, fold.index)))
            for fold in folds:
                _write_job_files(fold_folder(run_dir, fold.index), cfg, task_overrides, fold.index)
            _train_stacked(settings, source, folds, fold_count, run_dir, members, out)
        return
    out.print(f"[bold]dltrain cv[/bold]  {plural(len(folds), 'fold')} of {fold_count} one by one: "
              f"model={settings.model.name} data={settings.data.name}; each fold's epochs are in "
              f"{run_dir}/fold_N/dltrain.log")
    for note in source.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    for fold in folds:
        folder = fold_folder(run_dir, fold.index)
        with RunLock(folder):
            if not cfg.get("resume") or not (folder / CONFIG).is_file():  # a resumed fold's .hydra stays
                _write_job_files(folder, cfg, task_overrides, fold.index)
            stop_if_requested(run_dir)  # Ctrl-C as the previous fold ended: stop before this one
            try:
                train_fold(cfg, settings, source, fold, fold_count, folder, out=out)
            except DltrainError as error:
                settle_failed(folder, "failed", str(error))
                failure = f"Fold {fold.index} of the cross-validation failed: {error}"
                write_atomic(_error_note(folder), failure)  # as a fold's job under a launcher leaves it
                raise DltrainError(failure) from None


def train_fold(cfg, settings, source, fold: Fold, fold_count: int, folder: Path, *, out=console):
    """One fold alone in ``folder`` (from its own last.pt under ``dltrain cv resume=``): its
    whole output (banner, epoch rows, result) goes to its own dltrain.log, one line to ``out``
    (its progress bar too, in a terminal)."""
    seed = fold_seed(settings, fold)
    resume_from = folder / "last.pt" if cfg.get("resume") and (folder / "last.pt").exists() else None
    fold_out = muted_copy(out)
    with console_log(fold_out, folder, held=resume_from is not None) as logs:
        result = train_split(cfg, settings, source, fold.train_index, fold.val_index, folder, out=fold_out,
                             seed=seed, title=f"dltrain cv  fold_{fold.index} ({fold.index + 1} of {fold_count})",
                             resume_from=resume_from, outcome_figure=False, logs=logs)
    write_fold_files(folder, source, fold, seed, result)
    print_fold(fold.index, fold_count, result, out)
    return result


def print_fold(index: int, fold_count: int, result, out) -> None:
    """A fold's one line on the console (and its notes, such as a val_loss that was not finite)."""
    monitor = result.monitor
    out.print(f"fold_{index} ({index + 1} of {fold_count}): {plural(result.epochs_run, 'epoch')}, best "
              f"{monitor} {fmt(result.best[monitor])} at epoch {result.best_epoch}, final "
              f"{fmt(result.final[monitor])} ({result.seconds:.1f} s)")
    for note in result.notes:
        out.print(f"[yellow]note:[/yellow] fold_{index}: {note}")


def _stacked_members(cfg, settings, plan, source, folds, run_dir, out):
    """The folds as members of one stacked population, or None for one after another:
    ``cv.vectorize`` true (or auto on a CUDA device) with nothing that refuses stacking; true
    with a refusal is one sentence."""
    mode = plan.vectorize
    if mode == "false" or len(folds) < 2:  # one fold (cv.fold=N): nothing to stack
        return None
    if cfg.get("resume"):  # also for a vectorised run, whose fold folders are ordinary ones
        if mode == "true":
            out.print("[yellow]note:[/yellow] resume continues each unfinished fold from its own "
                      "last.pt, one by one (cv.vectorize applies to fresh cross-validations).")
        return None
    if settings.trainer.lr_find:  # each fold finds its own lr, which a stacked population cannot hold
        if mode == "true":
            raise DltrainError("trainer.lr_find=true finds each fold's own lr, which cv.vectorize=true cannot "
                               "train together; use cv.vectorize=false (or auto), or give optimizer.lr.")
        return None
    if mode == "auto" and resolve_device(settings.trainer.device).type != "cuda":
        return None  # off on the CPU, where it measured slower (bench/cv_vectorize.py)
    members = [open_member(cfg_with_fold(cfg, fold.index), settings, source, fold.train_index,
                           fold.val_index, fold_folder(run_dir, fold.index), seed=fold_seed(settings, fold),
                           label=f"fold {fold.index}", record={"vectorized": True}, outcome_figure=False,
                           out=out)
               for fold in folds]
    reason = stack_refusal(members, settings.data.batch_size, stacking_refusal(settings.model.name))
    if reason is None:
        return members
    if mode == "true":
        raise DltrainError(f"cv.vectorize=true cannot train the folds together: {reason}; "
                           f"cv.vectorize=false runs the folds one by one.")
    out.print(f"[yellow]note:[/yellow] cv.vectorize=auto trains the folds one by one: {reason}.")
    return None


def _train_stacked(settings, source, folds, fold_count: int, run_dir: Path, members, out) -> None:
    started = time.perf_counter()
    device = resolve_device(settings.trainer.device)
    for note in source.notes:
        out.print(f"[yellow]note:[/yellow] {note}")
    monitor = members[0].monitor
    columns = ["epoch", "train_loss", "val_loss", *([monitor] if monitor != "val_loss" else []), "lr",
               "seconds", *(["folds"] if settings.trainer.patience else [])]
    trainer = Trainer(members, settings=settings.trainer, device=device, stacked=True,
                      batch_size=settings.data.batch_size, shuffle=settings.data.shuffle,
                      table=EpochTable(columns, out), count_column="folds")
    title = (f"dltrain cv  folds {folds[0].index}-{folds[-1].index} together ({len(folds)} of "
             f"{fold_count}, cv.vectorize)")
    # the one table is every fold's; trainer.deterministic for the training and the test split
    with console_log(out, *(member.folder.path for member in members)), deterministic(settings.trainer):
        out.print(banner(title, settings, members[0], device, per=" per fold", threads=trainer.threads_note))
        out.print(f"fold folders: {run_dir}/fold_N")
        out.print(f"Each row: the mean over the {len(members)} folds"
                  + (" still training (early stopping)." if settings.trainer.patience else "."))
        try:
            train(trainer, run_dir, progress=settings.trainer.progress, out=out)
        except DltrainError:
            for member in members:
                settle_failed(member.folder.path, "failed", member.folder.record.get("error", ""))
            raise
        for fold, member in zip(folds, members):
            result = conclude(member, started)
            write_fold_files(member.folder.path, source, fold, member.seed, result)
            print_fold(fold.index, fold_count, result, out)
    out.print(f"{plural(len(members), 'fold')} trained together in {time.perf_counter() - started:.1f} s.")


def cfg_with_fold(cfg, index: int):
    """The config a fold's job would have: the composed one with its cv.fold."""
    from omegaconf import OmegaConf

    fold_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    OmegaConf.update(fold_cfg, "cv.fold", index, force_add=True)
    return fold_cfg


def _write_job_files(folder: Path, cfg, task_overrides: list[str], index: int | None) -> None:
    """The .hydra/ a Hydra job writes (its config and the overrides typed), for ``dltrain runs``
    and ``resume``: of a fold (``index``, its cv.fold added) or of the whole cross-validation."""
    import yaml
    from omegaconf import OmegaConf

    hydra_dir = folder / ".hydra"
    config = cfg if index is None else cfg_with_fold(cfg, index)
    overrides = task_overrides if index is None else [*task_overrides, f"cv.fold={index}"]
    write_atomic(hydra_dir / "config.yaml", OmegaConf.to_yaml(config))
    write_atomic(hydra_dir / "overrides.yaml", yaml.safe_dump(overrides, default_flow_style=False))


# --------------------------------------------------------------------------- the end


def finish(cfg, settings, plan, source, selected: list[int], run_dir: Path, *, out=console,
           started: float | None = None) -> dict:
    """Aggregate the finished fold folders, refit when asked, write and print the summary."""
    stop_if_requested(run_dir)  # Ctrl-C as the last fold ended
    summary = aggregate(run_dir, selected, settings, plan, source)
    # TensorBoard: the fold-averaged curves and the out-of-fold figure as run cv_mean
    scores, truth = scores_of(read_predictions(run_dir / OOF_PREDICTIONS), source.task, source.class_names)
    mean_run = write_cv_mean(cfg, settings, [fold_folder(run_dir, i) for i in selected], run_dir,
                             outcome=(source.task, scores, truth, source.class_names))
    summary["tensorboard_mean_run"] = mean_run.name if mean_run is not None else None
    if plan.refit and plan.fold is None:
        summary["refit"] = refit(cfg, settings, source, run_dir, out=out)
    summary["seconds"] = None if started is None else time.perf_counter() - started
    summary["status"] = "finished"
    stop_if_requested(run_dir)  # a cv_summary.json is the mark of a cross-validation that ended
    write_json(run_dir / SUMMARY_JSON, summary)
    print_summary(summary, run_dir, out)
    if settings.trainer.plot:
        write_curves(run_dir, out)
    return summary


def refit(cfg, settings, source, run_dir: Path, *, out=console) -> dict:
    """Train once on every row with the same settings (the textbook's last step before
    predicting new data); its last weights become the run's final.pt."""
    import numpy as np

    folder = Path(run_dir) / "refit"
    refit_out = muted_copy(out)  # like a fold: one line here, the whole output in its own log
    with RunLock(folder), console_log(refit_out, folder):
        result = train_split(cfg, settings, source, np.arange(len(source)), np.arange(0), folder,
                             out=refit_out, seed=settings.trainer.seed, title="dltrain cv  refit on all data")
    out.print(f"refit on all {len(source)} rows: {plural(result.epochs_run, 'epoch')}, final "
              f"{result.monitor} {fmt(result.final[result.monitor])} ({result.seconds:.1f} s)")
    copy_file(folder / "last.pt", Path(run_dir) / FINAL_MODEL)
    return {"folder": "refit", "final_model": FINAL_MODEL, "epochs": result.epochs_run,
            "final": {k: v for k, v in result.final.items() if k not in ("epoch", "lr", "seconds")},
            "test": result.test}


# --------------------------------------------------------------------------- folders


def _read_summary(run_dir: Path) -> dict:
    return read_json_object(run_dir / SUMMARY_JSON) or {}


def _status(fold_dir: Path) -> str:
    status = (read_json_object(fold_dir / "metrics.json") or {}).get("status")
    return status if isinstance(status, str) else ""


def _fold_number(folder: Path) -> int:
    digits = folder.name.removeprefix("fold_")
    return int(digits) if digits.isdigit() else 1 << 30


def _started_with(saved: Path) -> list[str]:
    """What the cross-validation was started with, as its .hydra/overrides.yaml beside ``saved``
    lists it: read as text for the .hydra/ of a fold that a resume starts (dltrain runs shows
    it), never replayed."""
    import yaml

    try:
        words = yaml.safe_load((saved.parent / "overrides.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    if not isinstance(words, list):
        return []
    return [w for w in words if isinstance(w, str) and not w.startswith(_OWN)]


def _run_dir(overrides: list[str]) -> Path:
    """The cross-validation's folder, absolute so that launcher processes in any working
    directory agree on it: hydra.run.dir (or hydra.sweep.dir) when given, else a new one."""
    for prefix in ("hydra.run.dir=", "hydra.sweep.dir="):
        for override in overrides:
            if override.startswith(prefix):
                return Path(override[len(prefix):].strip("'\"")).resolve()
    fresh = next(o for o in run_folder_overrides([]) if o.startswith("hydra.run.dir="))
    return Path(fresh.split("=", 1)[1]).resolve()


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _error_note(fold_dir: Path) -> Path:
    return fold_dir.parent / f"{fold_dir.name}.error"


def _check_finished(run_dir: Path, selected: list[int]) -> None:
    for index in selected:
        folder = fold_folder(run_dir, index)
        status = _status(folder)
        if status == "finished":
            continue
        note = _error_note(folder)
        if note.exists():
            raise DltrainError(note.read_text())
        raise DltrainError(f"Fold {index} of the cross-validation did not finish "
                           f"(status {status or 'unknown'}); see {folder}.")
