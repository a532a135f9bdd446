"""dltrain landscape: the grids against direct computations (train/landscape.py), the exhaustive
search before training, the optimizer's path of a trained toy run, and a CNN run's 1-D and 2-D
pictures (commands/landscape.py)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dltrain.commands.landscape import LINE, PLANE, SURFACE
from dltrain.train import landscape as grids
from dltrain.train.objective import Objective
from tests.conftest import run_folders

X = torch.tensor([[1.0], [2.0], [3.0]])
Y = torch.tensor([2.0, 4.0, 6.0])


def mse() -> Objective:
    return Objective("regression", "mse", 1, nn.MSELoss())


def test_surface_is_the_direct_mean_squared_error():
    model = nn.Sequential(nn.Linear(1, 1))
    assert grids.weight_and_bias(model) == ("0.weight", "0.bias")
    weights, biases = np.linspace(-1, 3, 9), np.linspace(-2, 2, 5)
    surface = grids.surface(model, mse(), X, Y, weights, biases)
    direct = np.array([[float(((w * X[:, 0] + b - Y) ** 2).mean()) for w in weights] for b in biases])
    assert surface.shape == (5, 9)
    np.testing.assert_allclose(surface, direct, rtol=1e-5, atol=1e-6)
    assert grids.weight_and_bias(nn.Linear(2, 1)) is None


def test_directions_line_and_plane_against_direct_computations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(12, 2))
    model.train()
    model(torch.randn(8, 1, 4, 4))  # running statistics of its own
    model.eval()
    objective = Objective("multiclass", "cross_entropy", 2, nn.CrossEntropyLoss())
    x, y = torch.randn(20, 1, 4, 4), torch.randint(0, 2, (20,))
    first = grids.directions(model, torch.Generator().manual_seed(1))
    second = grids.directions(model, torch.Generator().manual_seed(2))
    for name, parameter in model.named_parameters():
        if parameter.dim() <= 1:  # biases and batch norm's weights: left out, as Li et al. do
            assert not first[name].any()
        else:  # each filter as long as the weights' own
            torch.testing.assert_close(first[name].flatten(1).norm(dim=1), parameter.detach().flatten(1).norm(dim=1))
    final = {k: v.clone() for k, v in model.state_dict().items()}
    coordinates = np.array([-0.5, 0.0, 0.5])
    plane = grids.plane(model, objective, first, second, x, y, coordinates)
    from torch.func import functional_call

    for i, b in enumerate(coordinates):
        for j, a in enumerate(coordinates):
            moved = {name: final[name] + a * first[name] + b * second[name] for name in first}
            with torch.no_grad():
                direct = float(nn.functional.cross_entropy(functional_call(model, {**final, **moved}, (x,)), y))
            assert plane[i, j] == pytest.approx(direct, rel=1e-5)
    assert all(torch.equal(model.state_dict()[k], final[k]) for k in final)  # left at the final weights
    start = {k: v.clone() for k, v in final.items()}
    for key in start:
        if start[key].is_floating_point():
            start[key] += 0.3
    losses = grids.line(model, objective, start, final, x, y, [0.0, 1.0])
    with torch.no_grad():
        assert losses[1] == pytest.approx(float(nn.functional.cross_entropy(model(x), y)), rel=1e-5)
        assert losses[0] == pytest.approx(float(nn.functional.cross_entropy(functional_call(model, start, (x,)), y)),
                                          rel=1e-5)


def _argmin(output: str) -> tuple[float, float]:
    found = re.search(r"Grid argmin: w = (-?[\d.]+), b = (-?[\d.]+)", " ".join(output.split()))
    return float(found.group(1)), float(found.group(2))


def test_exhaustive_search_before_training(cli):
    result = cli("landscape", "recipe=linear_regression")
    assert result.exit_code == 0, result.output
    w, b = _argmin(result.output)
    assert abs(w - 2) <= 0.05 and abs(b) <= 0.05
    (folder,) = Path("outputs/landscape").glob("*/*")
    assert (folder / f"{SURFACE}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(folder.glob("events.out.tfevents.*"))
    with (folder / f"{SURFACE}.csv").open() as stream:
        rows = [[float(v) for v in row.values()] for row in csv.DictReader(stream)]
    assert len(rows) == 81 * 81
    for w, b, loss in rows[::997]:
        assert loss == pytest.approx(float(((w * X[:, 0] + b - Y) ** 2).mean()), rel=1e-5, abs=1e-6)
    refused = cli("landscape", "data=iris")
    assert refused.exit_code == 2 and "one weight and one bias" in refused.output


def test_trained_toy_run_draws_the_optimizers_path(cli):
    """Also trainer.plot=true: the fit's curves.png."""
    result = cli("fit", "recipe=linear_regression", "trainer.epochs=6", "trainer.plot=true", "logger=none")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    assert (run_dir / "curves.png").is_file()
    saved = json.loads((run_dir / "trajectory.json").read_text())
    assert saved["parameters"] == ["linear.weight", "linear.bias"]
    assert len(saved["steps"]) == 7  # the start and one full-batch step per epoch
    init = torch.load(run_dir / "init.pt", weights_only=True)["model"]
    last = torch.load(run_dir / "last.pt", weights_only=True)["model"]
    assert saved["steps"][0] == pytest.approx([float(init["linear.weight"]), float(init["linear.bias"])])
    assert saved["steps"][-1] == pytest.approx([float(last["linear.weight"]), float(last["linear.bias"])])
    drawn = cli("landscape", str(run_dir), "landscape.grid=11")
    assert drawn.exit_code == 0, drawn.output
    assert "The optimizer's path: 6 steps" in " ".join(drawn.output.split())
    assert (run_dir / f"{SURFACE}.png").is_file()
    refused = cli("landscape", str(run_dir), "optimizer.lr=1")
    assert refused.exit_code == 2 and "landscape.* options only" in refused.output


@pytest.mark.slow
def test_trained_cnn_run_gets_the_line_and_the_plane(cli):
    result = cli("fit", "model=cnn", "data=digits_images", "model.channels=[4]", "trainer.epochs=1",
                 "logger=none", "trainer.progress=false")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    drawn = cli("landscape", str(run_dir), "landscape.grid=3", "landscape.rows=64")
    assert drawn.exit_code == 0, drawn.output
    for stem in (LINE, PLANE):
        assert (run_dir / f"{stem}.png").read_bytes()[:4] == b"\x89PNG"
    with (run_dir / f"{PLANE}.csv").open() as stream:
        plane = list(csv.DictReader(stream))
    with (run_dir / f"{LINE}.csv").open() as stream:
        line = {float(row["a"]): float(row["loss"]) for row in csv.DictReader(stream)}
    assert len(plane) == 9 and len(line) == 5
    centre = next(float(row["loss"]) for row in plane if float(row["a"]) == 0 and float(row["b"]) == 0)
    assert centre == pytest.approx(line[1.0], rel=1e-5)  # both the final weights, on the same rows
