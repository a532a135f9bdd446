"""Figures for TensorBoard, drawn with matplotlib's object API (no pyplot, so no global backend
is touched): image grids with captions, a confusion matrix, predicted against true values.
Each function returns an RGB array (height, width, 3) of uint8."""

from __future__ import annotations

import math

import numpy as np


def _render(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _new_figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout=layout)


def displayable(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) normalized images -> (N, H, W) grey or (N, H, W, 3) colour in [0, 1], each
    image stretched to its own range (the normalization is undone only approximately, which
    is what looking at them needs)."""
    images = np.asarray(images, dtype=np.float32)
    if images.shape[1] >= 3:
        images = images[:, :3].transpose(0, 2, 3, 1)
    else:
        images = images[:, 0]
    flat = images.reshape(len(images), -1)
    low = flat.min(axis=1).reshape((-1,) + (1,) * (images.ndim - 1))
    high = flat.max(axis=1).reshape((-1,) + (1,) * (images.ndim - 1))
    return (images - low) / np.maximum(high - low, 1e-8)


def image_grid(images: np.ndarray, captions: list[str], *, title: str = "",
               caption_colors: list[str] | None = None) -> np.ndarray:
    """A grid of images (N, C, H, W), each with a caption under it."""
    pictures = displayable(images)
    count = len(pictures)
    columns = min(count, 8)
    rows = math.ceil(count / columns)
    lines = max(caption.count("\n") + 1 for caption in captions) if captions else 1
    figure = _new_figure(1.5 * columns, (1.5 + 0.18 * lines) * rows + (0.3 if title else 0))
    if title:
        figure.suptitle(title, fontsize=10)
    for i in range(rows * columns):
        axes = figure.add_subplot(rows, columns, i + 1)
        axes.set_axis_off()
        if i >= count:
            continue
        axes.imshow(pictures[i], cmap="gray" if pictures[i].ndim == 2 else None,
                    interpolation="nearest")
        color = caption_colors[i] if caption_colors else "black"
        axes.set_title(captions[i], fontsize=8, color=color, y=-0.02, va="top")
    return _render(figure)


def confusion_matrix(matrix: np.ndarray, class_names: list[str], *, title: str) -> np.ndarray:
    """Rows are true classes, columns predicted ones; each cell shows its count and is shaded by
    the share of its row (so a rare class's mistakes are as visible as a common one's)."""
    matrix = np.asarray(matrix)
    classes = len(class_names)
    size = min(max(4.0, 0.45 * classes + 2), 16.0)
    figure = _new_figure(size + 1, size)
    axes = figure.add_subplot()
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, fraction=0.046, label="share of the true class")
    ticks = np.arange(classes)
    font = 8 if classes <= 20 else 5
    axes.set_xticks(ticks, labels=class_names, rotation=90 if classes > 10 else 0, fontsize=font)
    axes.set_yticks(ticks, labels=class_names, fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=10)
    if classes <= 30:
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize=font,
                          color="white" if shares[row, column] > 0.5 else "black")
    return _render(figure)


def predicted_vs_true(truth: np.ndarray, predicted: np.ndarray, *, title: str) -> np.ndarray:
    """Scatter of predictions against targets, with the line a perfect model would sit on."""
    truth = np.asarray(truth, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    # One axes with short labels: fixed margins instead of the constrained-layout solver, which
    # doubled the time of this figure (0.1 s more per fold of `dltrain cv` on a regression).
    figure = _new_figure(5, 5, layout=None)
    figure.subplots_adjust(left=0.2, right=0.96, bottom=0.1, top=0.9)
    axes = figure.add_subplot()
    axes.scatter(truth, predicted, s=8, alpha=0.6, edgecolors="none")
    finite = np.concatenate([truth, predicted])
    finite = finite[np.isfinite(finite)]
    if len(finite):
        low, high = float(finite.min()), float(finite.max())
        axes.plot([low, high], [low, high], color="gray", linewidth=1, linestyle="--",
                  label="prediction = target")
        axes.legend(loc="upper left", fontsize=8)
    axes.set_xlabel("true")
    axes.set_ylabel("predicted")
    axes.set_title(title, fontsize=10)
    return _render(figure)


def outcome(task: str, scores: np.ndarray, truth: np.ndarray, class_names, *, rows: str) -> tuple[str, np.ndarray]:
    """How predictions meet the truth on ``rows`` (e.g. "validation rows (epoch 20)"): the tag and
    picture of predicted against true values (regression, truth in its own units) or of the
    confusion matrix with the accuracy (classes; ``scores``: probabilities)."""
    truth = np.asarray(truth)
    if task == "regression":
        return "figures/predicted_vs_true", predicted_vs_true(truth, scores, title=f"Predicted vs true, {rows}")
    scores = np.asarray(scores)
    probabilities = np.column_stack([1 - scores, scores]) if task == "binary" else scores
    classes = max(len(class_names), 2)
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (truth.astype(np.int64), probabilities.argmax(axis=1)), 1)
    accuracy = float(np.trace(matrix)) / max(int(matrix.sum()), 1)
    names = [str(class_names[c]) if c < len(class_names) else str(c) for c in range(classes)]
    return "figures/confusion_matrix", confusion_matrix(
        matrix, names, title=f"Confusion matrix, {rows}, accuracy {accuracy:.3f}")
