"""Seed ensembles (trainer.ensemble=N): the ensemble's probabilities (or predictions) are the mean
of its members'; a fit trains the seeds at once, and eval, predict and export take the ensemble."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.parametrize("task,output_size,kind", [("multiclass", 3, None), ("binary", 1, None),
                                                   ("regression", 1, "log"), ("regression", 1, "standardize")])
def test_ensemble_scores_are_the_mean_of_its_members(task, output_size, kind):
    import torch
    from torch import nn

    from dltrain.data.target import TargetTransform
    from dltrain.train.ensemble import Ensemble
    from dltrain.train.objective import Objective

    torch.manual_seed(0)
    transform = TargetTransform(kind, 1.5, 0.5) if kind else TargetTransform()
    objective = Objective(task, "x", output_size, nn.MSELoss(), transform)
    members = [nn.Linear(4, output_size) for _ in range(3)]
    x = torch.randn(20, 4)
    expected = torch.stack([objective.scores(m(x)) for m in members]).mean(0)
    together = objective.scores(Ensemble(members, task, output_size, transform)(x))
    assert torch.allclose(together, expected, atol=1e-5, rtol=1e-5)


def test_fit_ensemble_trains_seeds_and_eval_predict_use_their_ensemble(cli):
    import torch

    from dltrain.commands.ensemble import ENSEMBLE_JSON, member_folder
    from dltrain.commands.evaluate import load_run

    result = cli("fit", "data=iris", "trainer.ensemble=3", "trainer.epochs=2", "logger=none", "model.hidden_sizes=[8]",
                 "trainer.progress=false", "hydra.run.dir=outputs/ens")
    assert result.exit_code == 0, result.output
    folder = Path("outputs/ens")
    summary = json.loads((folder / ENSEMBLE_JSON).read_text())
    assert summary["seeds"] == [0, 1, 2] and summary["members"] == ["member_0", "member_1", "member_2"]
    assert {"val_loss", "val_accuracy"} <= summary["mean"].keys() and summary["std"]["val_loss"] > 0
    ensemble = load_run(str(folder))
    members = [load_run(str(member_folder(folder, i))) for i in range(3)]
    x = torch.randn(16, 4)
    with torch.no_grad():
        mean = torch.stack([m.objective.scores(m.model.eval()(x)) for m in members]).mean(0)
        assert torch.allclose(ensemble.objective.scores(ensemble.model.eval()(x)), mean, atol=1e-6)
    result = cli("eval", str(folder))
    assert result.exit_code == 0, result.output
    evaluated = json.loads((folder / "eval.json").read_text())
    assert evaluated["metrics"]["loss"] == pytest.approx(summary["ensemble_val"]["loss"], abs=1e-5)


@pytest.mark.parametrize("command", [["cv", "k=2"], ["tune", "tune.points=2"]])
def test_cv_and_tune_refuse_a_seed_ensemble_before_writing_anything(cli, command):
    result = cli(*command, "data=iris", "trainer.epochs=1", "trainer.ensemble=2", "logger=none")
    assert result.exit_code == 2
    assert (f"trainer.ensemble=2 is for dltrain fit, which trains the seeds as members of their own; in "
            f"dltrain {command[0]} use trainer.ensemble=1.") in " ".join(result.output.split())
    assert not Path("outputs").exists()
