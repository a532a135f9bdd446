"""``dltrain tune`` (and ``dltrain.tune()``): hyperparameter points of ``tune.space`` trained at
once. Every point's k folds are members of one population with the other points of its model
shape (each member its own learning rate, weight decay, dropout rate, loss and target
transform), trained by the one engine rung by rung; after each rung successive halving keeps the
best floor(n / eta) points of each population. The points are then ranked together by their
fold-mean score (as ``dltrain cv`` reports it), written to tune.csv, TensorBoard's HParams and
best_recipe.yaml, which ``dltrain cv recipe=PATH`` reruns. With a launcher other than Hydra's
basic one, each population is one job of it (run_population_job); Ctrl-C at a rung's end leaves
tune_state.pt, which ``resume=`` continues."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from dltrain.commands.cv import fold_seed
from dltrain.commands.launch import check_fold_launch, check_run_dir, launch, run_folder_overrides
from dltrain.commands.resume import resumed_config, split_resume
from dltrain.config import (apply_overrides, compose_with_hydra, parse_overrides, read_cv_settings, read_settings,
                            read_tune_settings)
from dltrain.config.groups import SETTING_GROUPS
from dltrain.config.settings import option_label
from dltrain.config.space import Sampler, parse_space, searched
from dltrain.console import console, fmt, plural
from dltrain.data import prepare
from dltrain.data.folds import load_cv_source, plan_folds
from dltrain.errors import DltrainError, RunInterrupted
from dltrain.files import RunLock, console_log, read_json_object, remove_file, write_atomic, write_csv, write_json
from dltrain.models import stacking_refusal
from dltrain.train.build import build, refuse_ensemble
from dltrain.train.device import resolve_device, seed_everything
from dltrain.train.checkpoint import load_checkpoint, save_checkpoint
from dltrain.train.engine import Trainer, batch_count, optimizer_steps, stack_refusal, stop_on_signals
from dltrain.train.halving import rung_ends, survivors
from dltrain.train.member import Member
from dltrain.train.metrics import check_monitor, monitor_mode
from dltrain.train.stopping import EarlyStopping

TUNE_CSV = "tune.csv"
TUNE_JSON = "tune.json"
BEST_RECIPE = "best_recipe.yaml"
POPULATION_JSON = "population.json"  # a launcher job's rows of its population's members
LAUNCHER_WORDS = ("hydra/launcher", "hydra.launcher")  # what a tune passes on to its populations' jobs
STATE = "tune_state.pt"  # where Ctrl-C at a rung's end leaves the search, for resume=
# The groups a recipe sets (the loggers and the search itself stay the caller's).
RECIPE_GROUPS = tuple(g for g in SETTING_GROUPS if g not in ("logger", "tune"))


@dataclass(eq=False)
class Point:
    """One hyperparameter point: its overrides, settings, and one member per fold."""

    number: int
    overrides: list[str]
    cfg: object = None
    settings: object = None
    members: list = field(default_factory=list)
    population: int = 0
    alive: bool = True
    batch: int = 0  # the batch it was asked in (tune.sampler=tpe asks tune.batches of them)

    @property
    def epochs(self) -> int:
        return min(len(m.rows) for m in self.members)

    def scores(self) -> list[float]:
        return [m.rows[-1][m.monitor] if m.rows else math.nan for m in self.members]

    @property
    def score(self) -> float:
        scores = self.scores()
        return sum(scores) / len(scores)

    @property
    def std(self) -> float:
        scores = self.scores()
        mean = sum(scores) / len(scores)
        return math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))  # as dltrain cv reports it


def split_space(overrides: list[str]) -> tuple[dict[str, str], list[str]]:
    """The space typed on the command line, as ``-m`` with Hydra's Optuna sweeper takes it
    (``optimizer.lr='tag(log, interval(1e-4, 1e-1))'``, ``loss=mse,huber``) or as
    ``tune.space.KEY=EXPR``, apart from the other overrides."""
    space, rest = {}, []
    for word, override in zip(overrides, parse_overrides(overrides)):
        key = override.key_or_group
        expression = word.split("=", 1)[1] if "=" in word else ""
        if key.startswith(("tune.space.", "tune.regression_space.")):
            space[key.split(".", 2)[2]] = None if expression.strip() == "null" else expression
        elif override.is_sweep_override():
            space[key] = expression
        else:
            rest.append(word)
    return space, rest


def tune(overrides: list[str]) -> list[dict]:
    """Tune as ``dltrain tune OVERRIDES`` does; returns the ranked points (as tune.csv holds them).
    ``resume=TUNE_DIR`` continues a tune stopped by Ctrl-C or SIGTERM at a rung's end."""
    import yaml
    from omegaconf import open_dict

    started = time.perf_counter()
    check_run_dir(overrides)
    target, overrides = split_resume(overrides)
    if target is not None:
        run_dir = Path(target).expanduser().resolve()
        if not (run_dir / STATE).is_file():
            raise DltrainError(f"resume={target} holds no {STATE} to continue from; give the folder of a tune "
                               f"that Ctrl-C stopped at a rung's end.")
        cfg = resumed_config(target, run_dir, run_dir / ".hydra" / "config.yaml", overrides, cv=True)
        with RunLock(run_dir), console_log(console, run_dir):
            return _search(cfg, run_dir, started, load_checkpoint(run_dir / STATE))
    typed = list(overrides)  # as written: .hydra/overrides.yaml, for dltrain runs and plot
    typed_space, overrides = split_space(overrides)
    cfg, hydra = compose_with_hydra(overrides)
    in_process = check_fold_launch(hydra, overrides)  # else each population is a job of Hydra's launcher
    search = read_tune_settings(cfg)
    refuse_ensemble(read_settings(cfg).trainer, "in dltrain tune")
    with open_dict(cfg):
        if not any(o.lstrip("+").startswith("k=") for o in overrides):  # tune's own default number of folds
            cfg.k = search.k
        cfg.tune.space = {**search.space, **typed_space}  # as resume= reads it back
    run_dir = _run_dir(overrides)
    with RunLock(run_dir), console_log(console, run_dir):
        write_atomic(run_dir / ".hydra" / "config.yaml", _yaml(cfg))
        write_atomic(run_dir / ".hydra" / "overrides.yaml", yaml.safe_dump(typed, default_flow_style=False))
        launcher = None if in_process else [o for o in overrides if o.lstrip("+").startswith(LAUNCHER_WORDS)]
        return _search(cfg, run_dir, started, None, launcher)


def _plan(cfg):
    """What a tune (and each population's job) derives from its config: settings, data, folds,
    the space's dimensions, the metric and its direction, the rungs' ends."""
    from types import SimpleNamespace

    search = read_tune_settings(cfg)
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    if settings.trainer.strategy == "ddp" or settings.trainer.lr_find:
        raise DltrainError("dltrain tune trains its points in one process with the learning rates it samples; "
                           "leave trainer.strategy=auto and trainer.lr_find=false.")
    source = load_cv_source(settings, plan)
    folds = plan_folds(source, plan, settings.data.name)
    if plan.fold is not None:
        folds = [folds[plan.fold]]
    space = {**search.space, **(search.regression_space if source.task == "regression" else {})}
    metric = ("mse" if source.task == "regression" else "loss") if search.metric == "auto" else search.metric
    check_monitor(metric, source.task)
    return SimpleNamespace(search=search, settings=settings, plan=plan, source=source, folds=folds, metric=metric,
                           dimensions=parse_space({k: v for k, v in space.items() if v is not None}),
                           mode=monitor_mode(metric, settings.trainer.mode),
                           ends=rung_ends(settings.trainer.epochs, search.rungs, search.eta, search.min_epochs))


def _search(cfg, run_dir: Path, started: float, state: dict | None, launcher: list[str] | None = None) -> list[dict]:
    """The search in ``run_dir``, from its start or (``state``) from a rung's end; ``launcher``:
    the hydra/launcher words that send each population to Hydra's launcher as a job."""
    from types import SimpleNamespace

    run = _plan(cfg)
    search, settings, plan, source, folds = run.search, run.settings, run.plan, run.source, run.folds
    dimensions, metric, mode, ends = run.dimensions, run.metric, run.mode, run.ends
    if launcher is not None and search.sampler == "tpe":
        raise DltrainError("tune.sampler=tpe asks its batches in this process, one after another; with a "
                           "launcher use tune.sampler=sobol or random.")
    console.print(f"[bold]dltrain tune[/bold]  {plural(search.points, 'point')} of "
                  f"{len(searched(dimensions))} searched settings ({search.sampler}), each on "
                  f"{plural(len(folds), 'fold')}; model={settings.model.name} data={settings.data.name} "
                  f"({source.task}); score: mean val_{metric} of the last epoch ({mode}); rungs end at "
                  f"epochs {', '.join(map(str, ends))} (eta={search.eta}). Folder: {run_dir}")
    sampler = Sampler(dimensions, search.sampler, search.seed, minimize=mode == "min")
    batches = search.batches if search.sampler == "tpe" else 1
    points: list[Point] = []
    first_batch, first_rung = 0, 0
    if state is not None:
        points, first_batch, first_rung = _restored(cfg, source, folds, state, metric, mode)
        for batch in range(first_batch + 1):  # the sampler where it was: each batch asked (and told)
            count = _batch_size(search.points, batches, batch)
            sampler.ask(count)
            if batch < first_batch:
                sampler.tell([p.score for p in points if p.batch == batch])
        console.print(f"Resuming {run_dir}: batch {first_batch + 1} of {batches}, after rung {first_rung} of {len(ends)}.")
    deadline = None if search.seconds is None else started + search.seconds
    listener = SimpleNamespace(stop_requested=0)
    with stop_on_signals(listener):
        for batch in range(first_batch, batches):
            if batch == first_batch and state is not None:
                batch_points = [p for p in points if p.batch == batch]
            else:
                asked = sampler.ask(_batch_size(search.points, batches, batch))
                batch_points = [Point(len(points) + i, [*o, f"trainer.monitor={metric}"], batch=batch)
                                for i, o in enumerate(asked)]
                points += batch_points
                _open_points(cfg, source, folds, batch_points, metric, mode)

            def stop_here(rung_done: int) -> None:
                if listener.stop_requested:
                    save_checkpoint(run_dir / STATE, _state(points, batch, rung_done))
                    raise RunInterrupted(run_dir, listener.stop_requested)

            first_population = max((p.population for p in points if p.batch < batch), default=-1) + 1
            if launcher is not None:
                _launch_populations(batch_points, run_dir, launcher)
            else:
                _train_points(batch_points, metric, mode, ends, search.eta, deadline, first_population,
                              first_rung=first_rung if batch == first_batch else 0, after_rung=stop_here)
            sampler.tell([p.score for p in batch_points])  # a point dropped early: its last rung's
            if deadline is not None and time.perf_counter() > deadline:
                break
        if listener.stop_requested:  # Ctrl-C as the last rung ended: the results are complete
            listener.stop_requested = 0
    ranked = _rank(points, mode)
    rows = [_row(point, rank, metric) for rank, point in enumerate(ranked, start=1)]
    write_csv(run_dir / TUNE_CSV, _frame(rows))
    best = ranked[0]
    recipe = run_dir / BEST_RECIPE
    write_atomic(recipe, best_recipe(best, metric, len(folds), run_dir, plan))
    _write_hparams(run_dir, points, metric)
    write_json(run_dir / TUNE_JSON, {"status": "finished", "metric": f"val_{metric}", "mode": mode,
                                     "folds": len(folds), "rung_ends": ends, "points": rows,
                                     "seconds": time.perf_counter() - started})
    remove_file(run_dir / STATE)
    _print_table(rows, metric)
    console.print(f"Best: point {best.number}, val_{metric} {fmt(best.score)} ± {fmt(best.std)} over "
                  f"{plural(len(folds), 'fold')} in {time.perf_counter() - started:.1f} s. Rerun it with: "
                  f"dltrain cv recipe={recipe}")
    return rows


def _launch_populations(points: list[Point], run_dir: Path, launcher: list[str]) -> None:
    """Each population of ``points`` as one job of Hydra's launcher (population_N/, which may run
    in another process or on another machine: it derives the same points from the tune's saved
    config); their members' rows come back in each job's population.json."""
    groups = _populations(points)
    console.print(f"{plural(len(groups), 'population')} as jobs of Hydra's launcher: {run_dir}/population_N")
    launch(run_population_job, [*launcher, f"+tune.population={','.join(map(str, range(len(groups))))}",
                                f"hydra.sweep.dir={_quoted(str(run_dir))}",
                                "hydra.sweep.subdir=population_${tune.population}", "hydra/hydra_logging=none"],
           multirun=True)
    for number, group in enumerate(groups):
        record = read_json_object(run_dir / f"population_{number}" / POPULATION_JSON) or {}
        saved = {entry.get("number"): entry for entry in record.get("points", []) if isinstance(entry, dict)}
        for point in group:
            entry = saved.get(point.number)
            if entry is None or len(entry.get("rows", [])) != len(point.members):
                raise DltrainError(f"The job of population {number} left no rows for point {point.number} in "
                                   f"{run_dir}/population_{number}; see its dltrain.log.")
            point.population, point.alive = number, bool(entry.get("alive"))
            for member, rows in zip(point.members, entry["rows"]):
                member.rows = [dict(row) for row in rows]


def run_population_job(cfg, run_dir: Path) -> int:
    """Hydra task for one population (``tune.population=N``) under a launcher: the tune's points
    again from its saved config (the same sampler and seed), population N of them trained rung
    by rung, every member's rows written to population.json."""
    tune_dir = Path(run_dir).parent
    number = int(cfg.tune.population)
    saved = resumed_config(str(tune_dir), tune_dir, tune_dir / ".hydra" / "config.yaml", [], cv=True)
    run = _plan(saved)
    with console_log(console, run_dir):
        asked = Sampler(run.dimensions, run.search.sampler, run.search.seed, run.mode == "min").ask(run.search.points)
        points = [Point(i, [*o, f"trainer.monitor={run.metric}"]) for i, o in enumerate(asked)]
        _open_points(saved, run.source, run.folds, points, run.metric, run.mode)
        mine = _populations(points)[number]
        _train_points(mine, run.metric, run.mode, run.ends, run.search.eta, None, number)
        write_json(Path(run_dir) / POPULATION_JSON,
                   {"population": number, "points": [{"number": p.number, "alive": p.alive,
                                                      "rows": [m.rows for m in p.members]} for p in mine]})
    return number


def _populations(points: list[Point]) -> list[list[Point]]:
    """The points grouped by population_key, in the order of their first point."""
    groups: dict[str, list[Point]] = {}
    for point in points:
        groups.setdefault(population_key(point), []).append(point)
    return list(groups.values())


def _quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _batch_size(points: int, batches: int, batch: int) -> int:
    return points * (batch + 1) // batches - points * batch // batches


def _state(points: list[Point], batch: int, rung_done: int) -> dict:
    """What resume= needs at a rung's end: every point's overrides and standing, and each of
    its members' weights, optimizer, schedule and training state (rows, early stopping, seeds)."""
    return {"batch": batch, "rung": rung_done,
            "points": [{"number": p.number, "overrides": p.overrides, "batch": p.batch, "alive": p.alive,
                        "members": [{"model": m.model.state_dict(), "optimizer": m.optimizer.state_dict(),
                                     "scheduler": (m.schedule.scheduler.state_dict()
                                                   if m.schedule.scheduler is not None else None),
                                     "trainer": m.state_dict()} for m in p.members]}
                       for p in points]}


def _restored(cfg, source, folds, state: dict, metric: str, mode: str) -> tuple[list[Point], int, int]:
    """The points of a saved state, their members rebuilt and loaded (one sentence for a state
    that is not one this tune saved)."""
    try:
        points = [Point(int(p["number"]), [str(o) for o in p["overrides"]], batch=int(p["batch"]),
                        alive=bool(p["alive"])) for p in state["points"]]
        saved = [p["members"] for p in state["points"]]
        batch, rung = int(state["batch"]), int(state["rung"])
    except (KeyError, TypeError, ValueError):
        raise DltrainError(f"The tune's {STATE} is not one dltrain tune saved; start the tune again.") from None
    _open_points(cfg, source, folds, points, metric, mode)
    for point, members in zip(points, saved):
        if len(members) != len(point.members):
            raise DltrainError(f"The tune's {STATE} holds {len(members)} folds for point {point.number}, "
                               f"this data {len(point.members)}; resume with the data it was started on.")
        for member, member_state in zip(point.members, members):
            member.load_training(member_state, f"{STATE} (point {point.number}, {member.label})",
                                 "resume with the tune's own settings")
    return points, batch, rung


def _run_dir(overrides: list[str]) -> Path:
    for override in overrides:
        if override.startswith("hydra.run.dir="):
            return Path(override.split("=", 1)[1].strip("'\"")).resolve()
    fresh = next(o for o in run_folder_overrides([]) if o.startswith("hydra.run.dir="))
    return Path(fresh.split("=", 1)[1]).resolve()


def _yaml(cfg) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(cfg, resolve=True)


# --------------------------------------------------------------------------- training


def _open_points(cfg, source, folds, points: list[Point], metric: str, mode: str) -> None:
    """Each point's settings and its members (one per fold, seeded as that fold of
    ``dltrain cv``: trainer.seed + fold index, the model made after the fold's data). Points of
    one target transform share each fold's prepared data; a point may not change the data
    otherwise (its rows and folds are the tune's)."""
    import copy

    base = _data_key(read_settings(cfg).data)
    prepared = {}
    for point in points:
        try:
            point.cfg = apply_overrides(copy.deepcopy(cfg), point.overrides)
            point.settings = read_settings(point.cfg)
        except DltrainError as error:
            raise DltrainError(f"tune point {' '.join(point.overrides)}: {error}") from None
        settings = point.settings
        if _data_key(settings.data) != base:
            raise DltrainError(f"tune point {' '.join(point.overrides)} changes the data; tune.space may search "
                               f"data.target_transform, data.batch_size and data.shuffle, the rest of data is the "
                               f"tune's own (its rows and folds).")
        transform = settings.data.options.get("target_transform", source.target_transform)
        point_source = replace(source, target_transform=transform) if source.task == "regression" else source
        trainer = settings.trainer
        for fold in folds:
            seed = fold_seed(settings, fold)
            if (fold.index, transform) not in prepared:
                seed_everything(seed)
                prepared[fold.index, transform] = prepare(point_source, fold.train_index, fold.val_index)
            data = prepared[fold.index, transform]
            seed_everything(seed)  # as dltrain cv seeds its fold: the same initial weights
            parts = build(settings, data.spec, train_targets=data.train.y,
                          steps_per_epoch=optimizer_steps(len(data.train), settings.data.batch_size,
                                                          trainer.accumulate_grad_batches))
            stopping = EarlyStopping(f"val_{metric}", mode, trainer.patience, trainer.min_delta)
            point.members.append(Member(f"point {point.number} fold {fold.index}", seed, data, parts, stopping))


def _data_key(data) -> str:
    options = {k: v for k, v in data.options.items() if k != "target_transform"}
    return json.dumps([data.name, data.val_fraction, options], sort_keys=True, default=str)


def population_key(point: Point) -> str:
    """What the points of one population share: the model's parameter shapes (dropout layers
    included) and the settings the engine applies to every member alike."""
    from dataclasses import asdict

    settings, model = point.settings, point.members[0].model
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    layers = [type(module).__name__ for module in model.modules()]
    return json.dumps([shapes, layers, asdict(settings.trainer), settings.data.batch_size, settings.data.shuffle,
                       settings.model.name], default=str)


def _train_points(points: list[Point], metric: str, mode: str, ends: list[int], eta: int,
                  deadline: float | None, first_population: int = 0, *, first_rung: int = 0,
                  after_rung=None) -> None:
    """Train the opened ``points`` rung by rung from rung ``first_rung`` (those before it done),
    halving each population after every rung but the last; ``after_rung(rungs_done)`` is called
    at each rung's end (a stop request saves the state there)."""
    populations = {number: group for number, group in enumerate(_populations(points), start=first_population)}
    for number, group in populations.items():
        for point in group:
            point.population = number
    device = resolve_device(points[0].settings.trainer.device)
    refusals = {}
    for number, group in populations.items():
        settings = group[0].settings
        # What stops these members training at once, asked of one fold's (the same rows): folds
        # whose batch counts differ are no reason, each count trains as its own stack.
        sample = [p.members[0] for p in group]
        refusals[number] = stack_refusal(sample, settings.data.batch_size, stacking_refusal(settings.model.name)) \
            if len(group) * len(group[0].members) > 1 else None
        console.print(f"population {number}: {plural(len(group), 'point')} x {plural(len(group[0].members), 'fold')}, "
                      f"model={settings.model.name} {_shape(group[0])}"
                      + (f"; one by one: {refusals[number]}" if refusals[number] else "; trained at once"))
    for rung, end in enumerate(ends):
        if rung < first_rung:
            continue
        rung_started = time.perf_counter()
        for number, group in populations.items():
            alive = [p for p in group if p.alive]
            _train_until(alive, end, device, refusals[number])
            if rung + 1 < len(ends):
                kept = set(survivors([p.score for p in alive], eta, mode))
                for index, point in enumerate(alive):
                    point.alive = index in kept
        best = _rank([p for p in points if p.epochs == end], mode)
        console.print(f"rung {rung + 1} of {len(ends)} (epoch {end}): {plural(sum(p.epochs == end for p in points), 'point')} "
                      f"trained, best val_{metric} {fmt(best[0].score) if best else '-'}"
                      + (f"; {sum(p.alive for p in points)} go on" if rung + 1 < len(ends) else "")
                      + f" ({time.perf_counter() - rung_started:.1f} s)")
        if deadline is not None and time.perf_counter() > deadline and rung + 1 < len(ends):
            console.print(f"tune.seconds reached: no new rung; the points are ranked at epoch {end}.")
            break
        if after_rung is not None and rung + 1 < len(ends):
            after_rung(rung + 1)


def _train_until(points: list[Point], end: int, device, refusal: str | None) -> None:
    """Train the members of ``points`` to epoch ``end``: stacked as one population where they can
    be (split by their batches per epoch, which stacked members must share), else one by one."""
    settings = points[0].settings
    members = [m for p in points for m in p.members if not m.stopping.stopped]
    if not members:
        return
    groups: dict[int, list[Member]] = {}
    for member in members:
        groups.setdefault(batch_count(len(member.data.train), settings.data.batch_size), []).append(member)
    for group in groups.values():
        stacked = refusal is None and len(group) > 1 and stack_refusal(
            group, settings.data.batch_size, None) is None
        for together in ([group] if stacked else [[m] for m in group]):
            trainer = Trainer(together, settings=settings.trainer, device=device, stacked=stacked,
                              batch_size=settings.data.batch_size, shuffle=settings.data.shuffle,
                              drop_diverged=True)
            trainer.fit(until=end)


def _shape(point: Point) -> str:
    options = point.settings.model.options
    described = {k: options[k] for k in ("hidden_sizes", "channels", "hidden_size") if k in options}
    return " ".join(f"{k}={v}" for k, v in described.items())


# --------------------------------------------------------------------------- results


def _rank(points: list[Point], mode: str) -> list[Point]:
    """Best first: more epochs reached first (the rungs' survivors), then by score; a score that
    is not a finite number last."""
    def key(point: Point):
        score = point.score
        finite = math.isfinite(score)
        return (-point.epochs, not finite, (score if mode == "min" else -score) if finite else 0.0)

    return sorted(points, key=key)


def _row(point: Point, rank: int, metric: str) -> dict:
    values = dict(o.split("=", 1) for o in point.overrides if not o.startswith("trainer.monitor="))
    return {"rank": rank, "point": point.number, "population": point.population, **values,
            f"val_{metric}_mean": point.score, f"val_{metric}_std": point.std, "epochs": point.epochs}


def _frame(rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(rows)


def _print_table(rows: list[dict], metric: str, limit: int = 20) -> None:
    from rich.table import Table

    table = Table(title="Tune", show_header=True, header_style="bold")
    keys = [k for k in rows[0] if k not in ("rank", "point", "population", "epochs") and not k.startswith("val_")
            and len({row[k] for row in rows}) > 1]  # the settings searched (a fixed one is in tune.csv)
    for column in ("rank", "point", *(k.rsplit(".", 1)[-1] for k in keys), f"val_{metric} (mean ± std)", "epochs"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("rank", "point", "epochs") else "left")
    for row in rows[:limit]:
        table.add_row(str(row["rank"]), str(row["point"]), *(str(row[k]) for k in keys),
                      f"{fmt(row[f'val_{metric}_mean'])} ± {fmt(row[f'val_{metric}_std'])}", str(row["epochs"]))
    console.print(table)
    if len(rows) > limit:
        console.print(f"(the other {len(rows) - limit} points are in {TUNE_CSV})")


def best_recipe(point: Point, metric: str, fold_count: int, run_dir: Path, plan) -> str:
    """The recipe of ``point``: every setting it trained with (each group's option, then its
    settings), its epochs reached, k and the cv split; ``dltrain cv recipe=PATH`` reruns it."""
    import yaml
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(point.cfg, resolve=True)
    settings = {group: cfg[group] for group in RECIPE_GROUPS}
    settings["trainer"] = {**settings["trainer"], "epochs": point.epochs, "progress": False}
    body = {"defaults": [{f"override /{g}": option_label(point.cfg, g)} for g in RECIPE_GROUPS],
            "k": cfg["k"], **settings}
    head = (f"# @package _global_\n"
            f"# dltrain tune's best point ({' '.join(o for o in point.overrides if not o.startswith('trainer.'))}): "
            f"val_{metric} {point.score:.6g} ± {point.std:.6g} (mean ± std over {plural(fold_count, 'fold')}"
            f"{f', fold {plan.fold} only' if plan.fold is not None else ''}, cv.seed={plan.seed}, "
            f"trainer.seed={point.settings.trainer.seed}, {plural(point.epochs, 'epoch')}), tuned in {run_dir}.\n"
            f"# Rerun: dltrain cv recipe=THIS_FILE (the same folds and seeds give the same score; dropout's masks\n"
            f"# are drawn differently one by one, within the folds' std), or dltrain fit recipe=THIS_FILE.\n")
    return head + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


def _write_hparams(run_dir: Path, points: list[Point], metric: str) -> None:
    """TensorBoard's HParams: one run per point (hparams/point_N) with its values and scores."""
    from torch.utils.tensorboard import SummaryWriter

    for point in points:
        values = {}
        for override in point.overrides:
            key, _, text = override.partition("=")
            try:
                number = float(text)
            except ValueError:
                values[key] = text
            else:
                values[key] = number
        with SummaryWriter(str(run_dir / "hparams" / f"point_{point.number}")) as writer:
            writer.add_hparams(values, {f"hparam/val_{metric}": point.score, "hparam/epochs": point.epochs},
                               run_name=".")
