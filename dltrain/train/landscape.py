"""The loss over parameter space (dltrain landscape): the exact J(w, b) surface of a model of one
weight and one bias; for any other model the line from its initial to its final weights
(Goodfellow et al. 2015) and the plane through its final weights along two filter-normalised
random directions (Li et al., "Visualizing the Loss Landscape of Neural Nets", 2018); and the
pictures that draw them. Every loss is the objective's plain loss, in eval mode."""

from __future__ import annotations

import io
import math

import numpy as np
import torch

from dltrain.train.member import forward
from dltrain.train.staging import length, rows, to_device

LINE_FROM, LINE_TO = -0.5, 1.5  # the line's reach in units of final - initial: Goodfellow et al.'s
EVAL_ROWS = 1024  # rows per forward pass


def weight_and_bias(model) -> tuple[str, str] | None:
    """The names of the one weight and the one bias (one number each) of a model that has just
    those two parameters, or None."""
    named = list(model.named_parameters())
    if len(named) != 2 or any(p.numel() != 1 for _, p in named):
        return None
    biases = [name for name, _ in named if name.rsplit(".", 1)[-1] == "bias"]
    if len(biases) != 1:
        return None
    return next(name for name, _ in named if name != biases[0]), biases[0]


def sample_rows(data_split, count: int, seed: int):
    """``count`` rows of a split (all when it has fewer), drawn with ``seed``, in their order:
    (inputs, targets)."""
    n = length(data_split.x)
    index = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values
    return rows(data_split.x, index), data_split.y[index]


@torch.no_grad()
def loss_on(model, objective, x, y) -> float:
    """The objective's plain loss of ``model`` on all of ``x`` (on the model's device), in chunks,
    weighted by their rows (every loss here is a mean over rows)."""
    total, n = 0.0, length(x)
    for start in range(0, n, EVAL_ROWS):
        chunk = rows(x, slice(start, start + EVAL_ROWS))
        count = length(chunk)
        total += float(objective.loss(forward(model, chunk), y[start:start + count])) * count
    return total / n


@torch.no_grad()
def surface(model, objective, x, y, weights: np.ndarray, biases: np.ndarray) -> np.ndarray:
    """J at every (w, b) of the grid for a model of one weight and one bias (weight_and_bias):
    an array (len(biases), len(weights)), row i at biases[i]. One vmapped pass of the model's own
    forward over all points (torch.func), so any such model and loss is exact."""
    from torch.func import functional_call, vmap

    weight, bias = weight_and_bias(model)
    parameters = dict(model.named_parameters())
    device, dtype = parameters[weight].device, parameters[weight].dtype
    buffers = dict(model.named_buffers())
    ws, bs = np.meshgrid(np.asarray(weights, dtype=np.float64), np.asarray(biases, dtype=np.float64))
    w_points = torch.as_tensor(ws.ravel(), dtype=dtype, device=device)
    b_points = torch.as_tensor(bs.ravel(), dtype=dtype, device=device)
    shapes = parameters[weight].shape, parameters[bias].shape
    model.eval()

    arguments = x if isinstance(x, tuple) else (x,)

    def one(w, b):
        values = {weight: w.reshape(shapes[0]), bias: b.reshape(shapes[1]), **buffers}
        return objective.loss(functional_call(model, values, arguments), y)

    losses = vmap(one, chunk_size=4096)(w_points, b_points)
    return losses.double().cpu().numpy().reshape(ws.shape)


def directions(model, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A random direction in parameter space, filter-normalised (Li et al. 2018): drawn from
    N(0, 1), then each filter (a slice along the first dimension: a convolution's output channel, a
    linear layer's unit) scaled to the norm of the same filter of the model's weights. Biases and
    batch-norm weights (one dimension) get zero, as the paper's ignore='biasbn' does."""
    result = {}
    for name, parameter in model.named_parameters():
        direction = torch.randn(parameter.shape, generator=generator, dtype=torch.float32)
        direction = direction.to(device=parameter.device, dtype=parameter.dtype)
        if parameter.dim() <= 1:
            direction.zero_()
        else:
            weights = parameter.detach().flatten(1).norm(dim=1)
            norms = direction.flatten(1).norm(dim=1)
            scale = weights / (norms + 1e-10)
            direction.mul_(scale.reshape(-1, *([1] * (parameter.dim() - 1))))
        result[name] = direction
    return result


@torch.no_grad()
def line(model, objective, start: dict, end: dict, x, y, alphas) -> list[float]:
    """The loss at (1 - a) * start + a * end for each a of ``alphas`` (state dicts: every floating
    entry moves, the weights and batch norm's running statistics, whose final values belong to the
    final weights only; counters stay as in ``end``). The model is left at ``end``."""
    model.eval()
    losses = []
    try:
        for a in alphas:
            model.load_state_dict({key: (1 - a) * start[key] + a * value if value.is_floating_point() else value
                                   for key, value in end.items()})
            losses.append(loss_on(model, objective, x, y))
    finally:
        model.load_state_dict(end)
    return losses


@torch.no_grad()
def plane(model, objective, first: dict, second: dict, x, y, coordinates) -> np.ndarray:
    """The loss at final + a * first + b * second for each (a, b) of ``coordinates`` squared (the
    final weights: the model's; directions by parameter name): an array (len, len), row i at
    b = coordinates[i]. Batch norm keeps the final model's running statistics (eval mode), as Li et
    al. do. The model is left at its final weights."""
    model.eval()
    parameters = dict(model.named_parameters())
    final = {name: p.detach().clone() for name, p in parameters.items()}
    grid = np.empty((len(coordinates), len(coordinates)))
    try:
        for i, b in enumerate(coordinates):
            for j, a in enumerate(coordinates):
                for name, parameter in parameters.items():
                    torch.add(final[name], first[name], alpha=float(a), out=parameter.data)
                    parameter.data.add_(second[name], alpha=float(b))
                grid[i, j] = loss_on(model, objective, x, y)
    finally:
        for name, parameter in parameters.items():
            parameter.data.copy_(final[name])
    return grid


def on_device(x, y, device):
    return to_device(x, device), y.to(device)


# ------------------------------------------------------------------------------ pictures


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def rendered(figure) -> tuple[bytes, np.ndarray]:
    """The figure as PNG bytes and as an RGB array (height, width, 3) for TensorBoard."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from PIL import Image  # matplotlib's own dependency

    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # once: the PNG is encoded from the same pixels
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, format="png")
    return stream.getvalue(), image


def _levels(grid: np.ndarray, count: int = 30) -> np.ndarray:
    """Contour levels spaced geometrically above the lowest value: a valley and its walls both show."""
    finite = grid[np.isfinite(grid)]
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        return np.array([low, low + 1e-12])
    return low + (high - low) * (np.geomspace(1, 1001, count) - 1) / 1000


def _contour(figure, axes, xs, ys, grid, xlabel: str, ylabel: str):
    shown = np.where(np.isfinite(grid), grid, np.nan)
    filled = axes.contourf(xs, ys, shown, levels=_levels(shown), cmap="viridis")
    axes.contour(xs, ys, shown, levels=_levels(shown, 15), colors="white", linewidths=0.4, alpha=0.6)
    figure.colorbar(filled, ax=axes, label="loss", format="%.4g")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)


def draw_surface(weights, biases, grid: np.ndarray, *, names: tuple[str, str], path=None,
                 start=None, title: str) -> tuple[bytes, np.ndarray]:
    """J(w, b) as filled contours with the grid's lowest point (and ``path``, a list of (w, b)
    after each step, or ``start``, where training would begin); beside it J(w) at that point's b."""
    row, column = np.unravel_index(np.nanargmin(grid), grid.shape)
    w_name, b_name = names
    figure = _figure(11, 4.6)
    figure.suptitle(title, fontsize=10)
    axes, curve = figure.subplots(1, 2, width_ratios=[1.25, 1])
    _contour(figure, axes, weights, biases, grid, f"w ({w_name})", f"b ({b_name})")
    if path is not None and len(path):
        path = np.asarray(path)
        axes.plot(path[:, 0], path[:, 1], "-", color="tab:red", linewidth=1.2, label=f"optimizer's path ({len(path) - 1} steps)")
        axes.plot(path[:, 0], path[:, 1], ".", color="tab:red", markersize=3)
        axes.plot(*path[0], "o", color="white", markeredgecolor="tab:red", label="start")
        axes.plot(*path[-1], "s", color="tab:red", label=f"end (w {path[-1, 0]:.3f}, b {path[-1, 1]:.3f})")
    elif start is not None:
        axes.plot(*start, "o", color="white", markeredgecolor="tab:red", label="where training starts")
    axes.plot(weights[column], biases[row], "*", color="gold", markeredgecolor="black", markersize=12,
              label=f"grid minimum (w {weights[column]:.3f}, b {biases[row]:.3f})")
    axes.set_xlim(weights[0], weights[-1])
    axes.set_ylim(biases[0], biases[-1])
    axes.legend(loc="upper left", fontsize=7, framealpha=0.8)
    axes.set_title("J(w, b)", fontsize=10)
    curve.plot(weights, grid[row], color="tab:blue", linewidth=2)
    curve.plot(weights[column], grid[row, column], "*", color="gold", markeredgecolor="black", markersize=12,
               label=f"minimum at w {weights[column]:.3f}: J {grid[row, column]:.4g}")
    curve.set_xlabel(f"w ({w_name})")
    curve.set_ylabel("loss")
    curve.set_title(f"J(w) at b = {biases[row]:.3f}", fontsize=10)
    curve.legend(loc="upper center", fontsize=8)
    curve.grid(True, alpha=0.3)
    return rendered(figure)


def draw_line(alphas, losses, *, title: str) -> tuple[bytes, np.ndarray]:
    """The loss along the line from the initial (a = 0) to the final (a = 1) weights."""
    figure = _figure(6.4, 4.2)
    axes = figure.add_subplot()
    axes.plot(alphas, losses, color="tab:blue", linewidth=2)
    alphas = np.asarray(alphas)
    for where, label, marker in ((0.0, "initial weights", "o"), (1.0, "final weights", "s")):
        index = int(np.argmin(np.abs(alphas - where)))
        axes.plot(alphas[index], losses[index], marker, color="tab:red", label=f"{label}: {losses[index]:.4g}")
    finite = [v for v in losses if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) / min(finite) > 100:
        axes.set_yscale("log")
    axes.set_xlabel("a: (1 - a) x initial + a x final weights")
    axes.set_ylabel("training loss")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper center", fontsize=8)
    axes.grid(True, alpha=0.3)
    return rendered(figure)


def draw_plane(coordinates, grid: np.ndarray, *, title: str) -> tuple[bytes, np.ndarray]:
    """The loss on the plane through the final weights (0, 0) along the two directions."""
    figure = _figure(6.4, 5.2)
    axes = figure.add_subplot()
    _contour(figure, axes, coordinates, coordinates, grid, "direction 1 (filter-normalised)",
             "direction 2 (filter-normalised)")
    centre = int(np.argmin(np.abs(np.asarray(coordinates))))
    axes.plot(0, 0, "s", color="tab:red", label=f"final weights: {grid[centre, centre]:.4g}")
    axes.legend(loc="upper left", fontsize=8, framealpha=0.8)
    axes.set_title(title, fontsize=10)
    return rendered(figure)
