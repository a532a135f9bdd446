"""``dltrain fit trainer.ensemble=N``: N seeds (trainer.seed, seed+1, ...) trained at once as the
members of one population, each an ordinary run in member_N/ (its own checkpoints, metrics,
TensorBoard run), on the same training and validation rows. The run folder's best.pt is then
their ensemble (train/ensemble.py: the members' best weights, averaged probabilities or mean
prediction), which eval, predict and export use; ensemble.json holds the members' mean ± std of
every metric and the ensemble's metrics on the validation and test rows."""

from __future__ import annotations

import time
from pathlib import Path

from dltrain.config import read_settings
from dltrain.console import EpochTable, console, fmt, muted_copy, plural
from dltrain.errors import DltrainError
from dltrain.files import copy_file, write_json
from dltrain.models import stacking_refusal
from dltrain.train.build import Parts, build
from dltrain.train.checkpoint import load_checkpoint, save_checkpoint
from dltrain.train.device import resolve_device
from dltrain.train.engine import Trainer, stack_refusal
from dltrain.train.population import FitResult, banner, conclude, for_inference, open_member, train

ENSEMBLE_JSON = "ensemble.json"


def member_folder(run_dir: Path, index: int) -> Path:
    return Path(run_dir) / f"member_{index}"


def train_ensemble(cfg, settings, source, train_index, val_index, run_dir: Path, *, out=console) -> FitResult:
    """Train the seeds of ``settings.trainer.ensemble`` together (one by one where the model
    cannot be stacked, said in one line), then write the ensemble's best.pt and ensemble.json."""
    import statistics

    from omegaconf import OmegaConf, open_dict

    started = time.perf_counter()
    count, seed = settings.trainer.ensemble, settings.trainer.seed
    if settings.trainer.lr_find:
        raise DltrainError("trainer.ensemble trains its seeds with one optimizer.lr; use trainer.lr_find=false "
                           "(dltrain lr-find suggests one first).")
    member_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    with open_dict(member_cfg):
        member_cfg.trainer.ensemble = 1  # each member's folder is an ordinary run
    member_settings = read_settings(member_cfg)
    quiet = muted_copy(out)
    members = [open_member(member_cfg, member_settings, source, train_index, val_index, member_folder(run_dir, i),
                           seed=seed + i, label=f"seed {seed + i}", record={"ensemble_member": i},
                           outcome_figure=False, out=quiet)
               for i in range(count)]
    device = resolve_device(settings.trainer.device)
    refusal = stack_refusal(members, settings.data.batch_size, stacking_refusal(settings.model.name))
    monitor = members[0].monitor
    columns = ["epoch", "train_loss", *(["val_loss"] if members[0].data.val is not None else []),
               *([monitor] if monitor not in ("val_loss", "train_loss") else []), "lr", "seconds"]
    trainers = ([Trainer(members, settings=member_settings.trainer, device=device, stacked=True,
                         batch_size=settings.data.batch_size, shuffle=settings.data.shuffle,
                         table=EpochTable(columns, out), count_column="members")]
                if refusal is None else
                [Trainer([m], settings=member_settings.trainer, device=device, batch_size=settings.data.batch_size,
                         shuffle=settings.data.shuffle, table=EpochTable(columns, out)) for m in members])
    out.print(banner(f"dltrain fit  ensemble of {count} seeds ({seed} to {seed + count - 1})", settings,
                     members[0], device, per=" per member", threads=trainers[0].threads_note))
    out.print(f"run folder: {run_dir} (members in member_N/)")
    out.print("Each row: the mean over the members." if refusal is None else
              f"[yellow]note:[/yellow] the members train one by one: {refusal}.")
    for trainer in trainers:
        train(trainer, run_dir, progress=settings.trainer.progress, out=out)
    results = [conclude(m, started) for m in members]
    names = [k for k in results[0].best if k not in ("epoch", "lr", "seconds")]
    rows = [r.best for r in results]  # the epochs whose weights the ensemble takes (best.pt)
    mean = {k: statistics.fmean(row[k] for row in rows) for k in names}
    std = {k: statistics.pstdev(row[k] for row in rows) for k in names}
    ensemble, val, test = _ensemble(cfg, settings, members, run_dir, device)
    summary = {"ensemble": count, "seeds": [m.seed for m in members],
               "members": [member_folder(run_dir, i).name for i in range(count)],
               "mean": mean, "std": std, "ensemble_val": val, "ensemble_test": test,
               "seconds": time.perf_counter() - started, "status": "finished"}
    write_json(run_dir / ENSEMBLE_JSON, summary)
    for name in names:
        out.print(f"{name:>16}  {fmt(mean[name])} ± {fmt(std[name])}")
    for split, metrics in (("val", val), ("test", test)):
        if metrics:
            out.print(f"ensemble {split}: " + "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items()))
    out.print(f"{plural(count, 'member')} in {time.perf_counter() - started:.1f} s; eval, predict and export on "
              f"{run_dir} use their ensemble (best.pt).")
    first = results[0]
    return FitResult(run_dir=run_dir, task=first.task, monitor=first.monitor, best_epoch=first.best_epoch,
                     best={"epoch": first.best_epoch, **mean}, final={"epoch": first.epochs_run, **mean},
                     test=test, epochs_run=max(r.epochs_run for r in results), stopped_early=False,
                     seconds=time.perf_counter() - started, model_summary=None, model=ensemble)


def _ensemble(cfg, settings, members, run_dir: Path, device):
    """The ensemble of the members' best weights, saved as the run's best.pt (with the members'
    preprocessing, the same for all), and its metrics on the validation and test rows."""
    from omegaconf import OmegaConf

    data = members[0].data
    parts = build(settings, data.spec, training=False)
    weights = {}
    payload = None
    for i, member in enumerate(members):
        payload = load_checkpoint(member.folder.path / "best.pt", map_location="cpu")
        weights.update({f"members.{i}.{k}": v for k, v in payload["model"].items()})
    parts.model.load_state_dict(weights)
    save_checkpoint(run_dir / "best.pt", {"model": parts.model.state_dict(), "epoch": payload["epoch"],
                                          "metrics": payload["metrics"],
                                          "config": OmegaConf.to_container(cfg, resolve=True),
                                          "spec": payload["spec"]})
    for saved in sorted(members[0].folder.path.glob("preprocessing.*")):  # the same fitted rows for every member
        copy_file(saved, run_dir / saved.name)
    inference = for_inference(Parts(parts.objective.to(device), parts.model), settings.trainer, device)
    val = inference.evaluate(data.val.x, data.val.y) if data.val is not None else None
    test = inference.evaluate(data.test.x, data.test.y) if data.test is not None else None
    return parts.model, val, test
