"""``dltrain landscape RUN|OVERRIDES``: the loss over parameter space (train/landscape.py) as PNGs,
CSVs of the grids and TensorBoard images; in the run folder for a run, in a new folder under
outputs/landscape/ for overrides (the exhaustive search before any training). A run folder is read
as data: its config by resume.py's reader, its weights with weights_only, nothing run."""

from __future__ import annotations

import csv
import io
import math
import secrets
from datetime import datetime
from pathlib import Path

from dltrain.commands.resume import CONFIG, cv_holding, is_cv_folder, resumed_config
from dltrain.config import apply_overrides, compose, override_keys, read_landscape_settings, read_settings
from dltrain.console import console
from dltrain.data import load_source, prepare
from dltrain.data.preprocessing import load_saved
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.files import RunLock, read_json_object, write_atomic
from dltrain.models import count_parameters
from dltrain.models.custom import reading_run
from dltrain.train import landscape as grids
from dltrain.train.build import build
from dltrain.train.checkpoint import check_weights, load_checkpoint, state_shapes
from dltrain.train.device import resolve_device, seed_everything
from dltrain.train.rundir import INIT, TRAJECTORY
from dltrain.train.tensorboard import events_folder

FOLDER = Path("outputs") / "landscape"
SURFACE, LINE, PLANE = "landscape", "landscape_1d", "landscape_2d"  # file stems: .png and .csv
# What auto means: (the J(w, b) surface of one weight and one bias, the random-direction plane).
AUTO_GRID = (81, 21)
AUTO_SPAN = (4.0, 1.0)


def landscape(words: list[str], out=console) -> Path:
    """Run ``dltrain landscape WORDS``; the folder the files went to."""
    if words and "=" not in words[0]:
        return from_run(words[0], words[1:], out)
    return before_training(words, out)


def _window(setting, auto: float) -> float:
    return auto if setting == "auto" else setting


def before_training(overrides: list[str], out=console) -> Path:
    """The exhaustive search: J(w, b) over a grid before any training, for the model ``overrides``
    make (one weight and one bias), around zero; where fit would start is marked."""
    cfg = compose(overrides)
    settings, options = read_settings(cfg), read_landscape_settings(cfg)
    source = load_source(settings.data)
    train_index, _ = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    seed_everything(settings.trainer.seed)  # the model as fit would initialise it
    data = prepare(source, train_index)
    parts = build(settings, data.spec, training=False)
    names = grids.weight_and_bias(parts.model)
    if names is None:
        raise DltrainError(
            f"dltrain landscape OVERRIDES draws the J(w, b) surface of a model of one weight and one bias "
            f"(recipe=linear_regression), but model={settings.model.name} on data={settings.data.name} has "
            f"{count_parameters(parts.model):,} parameters; train it (dltrain fit ...) and give its run folder.")
    device = resolve_device(settings.trainer.device)
    parts.model.to(device)
    x, y = grids.on_device(*grids.sample_rows(data.train, options.rows, options.seed), device)
    folder = FOLDER / (datetime.now().strftime("%Y-%m-%d/%H-%M-%S") + "_" + secrets.token_hex(3))
    start = [float(p.detach()) for p in parts.model.parameters()]
    title = f"model={settings.model.name} data={settings.data.name} loss={parts.objective.loss_name}"
    _surface(parts, x, y, options, centre=(0.0, 0.0), path=None, start=start, names=names, title=title,
             folder=folder, step=0, out=out)
    return folder


def from_run(target: str, overrides: list[str], out=console) -> Path:
    """A trained run: the surface with the optimizer's path (one weight and one bias), or the line
    from init.pt to last.pt and the plane around last.pt (any other model), in the run folder."""
    run_dir = Path(target).expanduser()
    if is_cv_folder(run_dir) or cv_holding(run_dir) is not None:  # a fold's rows are not the split read here
        raise DltrainError(f"{target!r} is a cross-validation or part of one; dltrain landscape draws the run "
                           f"of a dltrain fit (train one with the same overrides and give its folder).")
    if not (run_dir / CONFIG).is_file() or not (run_dir / "last.pt").is_file():
        raise DltrainError(f"{target!r} is not a run folder with a last.pt checkpoint; give a folder "
                           f"under outputs/, or overrides such as recipe=linear_regression.")
    wrong = [key for key in override_keys(overrides) if key.lstrip("+~") != "landscape"
             and not key.lstrip("+~").startswith("landscape.")]
    if wrong:
        raise DltrainError(f"dltrain landscape RUN takes landscape.* options only (the run keeps the settings "
                           f"it was trained with), not {wrong[0]}.")
    with reading_run(run_dir):  # a custom model's class: never imported from the run folder
        cfg = _saved_config(target, run_dir)
        options = read_landscape_settings(apply_overrides(cfg, overrides))
        settings = read_settings(cfg)
        source = load_source(settings.data)
        train_index, _ = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
        preprocessor, target_transform = load_saved(run_dir)  # the run's own, never refitted
        data = prepare(source, train_index, preprocessor=preprocessor, target=target_transform)
        parts = build(settings, data.spec, training=False)
    model = parts.model
    last = load_checkpoint(run_dir / "last.pt")
    check_weights(last.get("model"), state_shapes(model), run_dir / "last.pt", f"model={settings.model.name}",
                  "give the run folder it was trained in")
    model.load_state_dict(last["model"])
    epoch = last.get("epoch") if isinstance(last.get("epoch"), int) else 0
    device = resolve_device(settings.trainer.device)
    model.to(device)
    x, y = grids.on_device(*grids.sample_rows(data.train, options.rows, options.seed), device)
    title = f"{run_dir.name}: model={settings.model.name} data={settings.data.name}"
    names = grids.weight_and_bias(model)
    with RunLock(run_dir):  # one writer in a run folder: not while it trains
        if names is not None:
            path = _read_path(run_dir, names, out)
            final = [float(p.detach()) for p in model.parameters()]
            _surface(parts, x, y, options, centre=final, path=path, start=None, names=names, title=title,
                     folder=run_dir, step=epoch, out=out)
        else:
            _slices(parts, x, y, options, run_dir, title=title, step=epoch, out=out)
    return run_dir


def _saved_config(target: str, run_dir: Path):
    """The run's .hydra/config.yaml, read as untrusted data and validated (resume.py's reader)."""
    from omegaconf import open_dict

    try:
        cfg = resumed_config(target, run_dir, run_dir / CONFIG, [])
    except DltrainError as error:  # its sentences name resume=TARGET, which was not typed here
        raise DltrainError(str(error).replace(f"resume={target}: ", f"{target}: ", 1)) from None
    with open_dict(cfg):
        cfg["resume"] = None
        if "download" in cfg.data:  # a run's config never downloads (into a folder it names)
            cfg.data.download = False
    return cfg


def _read_path(run_dir: Path, names: tuple[str, str], out) -> list | None:
    """The optimizer's path that trajectory.json holds, once it is this model's: [(w, b), ...]."""
    saved = read_json_object(run_dir / TRAJECTORY)
    if saved is None:
        out.print(f"[yellow]note:[/yellow] {run_dir} holds no {TRAJECTORY} (a run from before dltrain recorded "
                  f"the optimizer's path); drawing the surface without it.")
        return None
    steps = saved.get("steps")
    order = saved.get("parameters")
    if order not in (list(names), list(reversed(names))) or not isinstance(steps, list) or not steps or not all(
            isinstance(point, list) and len(point) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)
            for point in steps):
        out.print(f"[yellow]note:[/yellow] {run_dir / TRAJECTORY} is not the path of this model's "
                  f"{names[0]} and {names[1]}; drawing the surface without it.")
        return None
    return [tuple(point) if order == list(names) else tuple(reversed(point)) for point in steps]


def _axis(centre: float, span: float, grid: int, reach=()):
    """``grid`` points from centre - span to centre + span, widened to hold every value of
    ``reach`` (the optimizer's path) with a margin."""
    import numpy as np

    low, high = centre - span, centre + span
    if len(reach):
        low, high = min(low, min(reach)), max(high, max(reach))
        margin = 0.05 * (high - low) if (low, high) != (centre - span, centre + span) else 0.0
        low, high = low - margin, high + margin
    return np.linspace(low, high, grid)


def _surface(parts, x, y, options, *, centre, path, start, names, title: str, folder: Path, step: int, out) -> None:
    import numpy as np

    grid = AUTO_GRID[0] if options.grid == "auto" else options.grid
    span = _window(options.span, AUTO_SPAN[0])
    path_array = np.asarray(path) if path else np.zeros((0, 2))
    weights = _axis(centre[0], span, grid, path_array[:, 0])
    biases = _axis(centre[1], span, grid, path_array[:, 1])
    losses = grids.surface(parts.model, parts.objective, x, y, weights, biases)
    row, column = np.unravel_index(np.nanargmin(losses), losses.shape)
    png, image = grids.draw_surface(weights, biases, losses, names=names, path=path, start=start,
                                    title=f"{title} ({grid} x {grid} grid)")
    write_atomic(folder / f"{SURFACE}.png", png)
    write_atomic(folder / f"{SURFACE}.csv", _table(
        ["w", "b", "loss"], ((w, b, losses[i, j]) for i, b in enumerate(biases) for j, w in enumerate(weights))))
    _tensorboard(folder, {"landscape/surface": image}, step)
    out.print(f"Grid argmin: w = {weights[column]:.4f}, b = {biases[row]:.4f} (J = {losses[row, column]:.6g}) "
              f"on a {grid} x {grid} grid, w in [{weights[0]:.3g}, {weights[-1]:.3g}], b in "
              f"[{biases[0]:.3g}, {biases[-1]:.3g}], {len(y)} rows.")
    if path:
        out.print(f"The optimizer's path: {len(path) - 1} steps from w = {path[0][0]:.4f}, b = {path[0][1]:.4f} "
                  f"to w = {path[-1][0]:.4f}, b = {path[-1][1]:.4f}.")
    out.print(f"Picture: {folder / f'{SURFACE}.png'}; grid: {folder / f'{SURFACE}.csv'}; TensorBoard image "
              f"landscape/surface.")


def _slices(parts, x, y, options, run_dir: Path, *, title: str, step: int, out) -> None:
    import numpy as np
    import torch

    model, objective = parts.model, parts.objective
    grid = AUTO_GRID[1] if options.grid == "auto" else options.grid
    span = _window(options.span, AUTO_SPAN[1])
    images = {}
    initial = _initial_weights(run_dir, model, out)
    if initial is not None:
        final = {key: value.detach().clone() for key, value in model.state_dict().items()}
        initial = {key: value.to(final[key].device) for key, value in initial.items()}
        alphas = np.linspace(grids.LINE_FROM, grids.LINE_TO, 2 * grid - 1)
        losses = grids.line(model, objective, initial, final, x, y, alphas)
        png, images["landscape/interpolation"] = grids.draw_line(
            alphas, losses, title=f"{title}: initial to final weights")
        write_atomic(run_dir / f"{LINE}.png", png)
        write_atomic(run_dir / f"{LINE}.csv", _table(["a", "loss"], zip(alphas, losses)))
        out.print(f"1-D: the loss from the initial weights ({losses[_nearest(alphas, 0)]:.4g}) to the final "
                  f"ones ({losses[_nearest(alphas, 1)]:.4g}), lowest {min(losses):.4g} at a = "
                  f"{alphas[int(np.nanargmin(losses))]:.3f}: {run_dir / f'{LINE}.png'}")
    generator = torch.Generator().manual_seed(options.seed)
    first, second = grids.directions(model, generator), grids.directions(model, generator)
    coordinates = np.linspace(-span, span, grid)
    if grid % 2:
        coordinates[grid // 2] = 0.0  # the final weights themselves
    losses = grids.plane(model, objective, first, second, x, y, coordinates)
    png, images["landscape/slice"] = grids.draw_plane(
        coordinates, losses, title=f"{title}: {grid} x {grid} around the final weights")
    write_atomic(run_dir / f"{PLANE}.png", png)
    write_atomic(run_dir / f"{PLANE}.csv", _table(
        ["a", "b", "loss"], ((a, b, losses[i, j]) for i, b in enumerate(coordinates) for j, a in enumerate(coordinates))))
    centre = _nearest(coordinates, 0)
    out.print(f"2-D: the loss on the plane through the final weights ({losses[centre, centre]:.4g}) along two "
              f"filter-normalised random directions (seed {options.seed}), a and b in [{-span:g}, {span:g}], lowest "
              f"{np.nanmin(losses):.4g}, highest {np.nanmax(losses):.4g}: {run_dir / f'{PLANE}.png'}")
    _tensorboard(run_dir, images, step)
    out.print(f"Measured on {len(y)} training rows; grids in {', '.join(f'{s}.csv' for s in ([LINE] if initial is not None else []) + [PLANE])}; "
              f"TensorBoard images {', '.join(images)}.")


def _nearest(values, where: float) -> int:
    import numpy as np

    return int(np.argmin(np.abs(np.asarray(values) - where)))


def _initial_weights(run_dir: Path, model, out) -> dict | None:
    """init.pt's weights, checked against the model; None (with a note) for a run without one."""
    path = run_dir / INIT
    if not path.is_file():
        out.print(f"[yellow]note:[/yellow] {run_dir} holds no {INIT} (a run from before dltrain saved its initial "
                  f"weights): no line from the initial weights, only the plane around the final ones.")
        return None
    state = load_checkpoint(path)
    check_weights(state.get("model"), state_shapes(model), path, "the run's model", "give the run folder it was trained in")
    return state["model"]


def _table(header: list[str], rows) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([float(v) for v in row] for row in rows)
    return text.getvalue()


def _tensorboard(folder: Path, images: dict, step: int) -> None:
    """The pictures as TensorBoard images: in a run's events folder (beside its curves), or in
    ``folder`` itself for a search before training."""
    from torch.utils.tensorboard import SummaryWriter

    where = events_folder(folder) if (folder / CONFIG).is_file() else folder
    writer = SummaryWriter(str(where))
    try:
        for tag, image in images.items():
            writer.add_image(tag, image, step, dataformats="HWC")
    finally:
        writer.close()
