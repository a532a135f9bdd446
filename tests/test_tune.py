"""dltrain tune: the search space in Hydra's Optuna-sweeper syntax, successive halving, points of
one shape trained at once equal to the same points one by one (the vectorised tolerance of
test_cv_vectorize.py), a known-good point ranked above a known-bad one, and best_recipe.yaml
rerun by dltrain cv to its stated score."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from test_cv_vectorize import TOLERANCE

# A generated regression (y = Xw + b + noise), small: 3 folds of 80 training rows.
TINY = ["data=synthetic_linear", "data.num_samples=120", "data.batch_size=16", "model.dropout=0",
        "logger=none", "trainer.progress=false"]


def test_space_reads_the_optuna_sweeper_syntax_and_samples_inside_it():
    from dltrain.config.space import Sampler, parse_space

    dimensions = parse_space({"optimizer.lr": "tag(log, interval(1e-4, 3e-1))", "model.dropout": "interval(0, 0.5)",
                              "model.hidden_sizes": "choice([64], [128, 64])", "loss": "choice(mse, huber)",
                              "regularization": "l2"})
    kinds = {d.key: (d.kind, d.log, d.choices) for d in dimensions}
    assert kinds["optimizer.lr"][:2] == ("float", True) and kinds["model.dropout"][:2] == ("float", False)
    assert kinds["model.hidden_sizes"][2] == ("[64]", "[128,64]") and kinds["loss"][2] == ("mse", "huber")
    assert kinds["regularization"][0] == "fixed"
    for kind in ("sobol", "random"):
        points = Sampler(dimensions, kind, seed=0, minimize=True).ask(16)
        assert points == Sampler(dimensions, kind, seed=0, minimize=True).ask(16)  # seeded
        for point in points:
            values = dict(word.split("=", 1) for word in point)
            assert 1e-4 <= float(values["optimizer.lr"]) <= 0.3 and 0 <= float(values["model.dropout"]) <= 0.5
            assert values["loss"] in ("mse", "huber") and values["regularization"] == "l2"
        assert len({dict(w.split("=", 1) for w in p)["model.hidden_sizes"] for p in points}) == 2
    from dltrain.errors import DltrainError

    with pytest.raises(DltrainError, match="tune.space entry optimizer.lr"):
        parse_space({"optimizer.lr": "tag(log, interval(0, 1))"})


def test_successive_halving_keeps_floor_n_over_eta_at_least_one():
    from dltrain.train.halving import rung_ends, survivors

    for count in range(1, 12):
        scores = [float((7 * i) % count) for i in range(count)]
        kept = survivors(scores, 3, "min")
        assert len(kept) == max(1, count // 3)
        assert sorted(scores[i] for i in kept) == sorted(scores)[:len(kept)]
    assert survivors([0.1, math.nan, 0.9, 0.5], 2, "max") == [2, 3]  # nan ranks last
    assert rung_ends(27, 3, 3, 1) == [3, 9, 27] and rung_ends(2, 3, 3, 1) == [1, 2]


def test_points_trained_together_equal_the_points_one_by_one():
    """Two points of one shape (their own lr, weight decay, loss and target transform) x 2 folds
    stacked as one population give each member's rows of training it alone."""
    from dltrain.commands import tune
    from dltrain.config import compose, read_cv_settings, read_settings
    from dltrain.data.folds import load_cv_source, plan_folds
    from dltrain.train.device import resolve_device

    cfg = compose([*TINY, "k=2", "trainer.epochs=2", "model.hidden_sizes=[8]", "data.num_samples=64"])
    settings, plan = read_settings(cfg), read_cv_settings(cfg)
    source = load_cv_source(settings, plan)
    folds = plan_folds(source, plan)
    words = [["optimizer.lr=0.05", "regularization=l2", "regularization.weight_decay=0.01", "loss=huber",
              "data.target_transform=none"],
             ["optimizer.lr=0.002", "optimizer=sgd", "loss=mse", "data.target_transform=standardize"]]
    runs = {}
    for name, refusal in (("together", None), ("alone", "one by one")):
        points = [tune.Point(i, [*w, "trainer.monitor=mse"]) for i, w in enumerate(words)]
        tune._open_points(cfg, source, folds, points, "mse", "min")
        assert len({tune.population_key(p) for p in points}) == 1
        tune._train_until(points, 2, resolve_device("cpu"), refusal)
        runs[name] = [m.rows for p in points for m in p.members]
    assert len(runs["together"]) == 4
    for together, alone in zip(runs["together"], runs["alone"]):
        assert len(together) == len(alone) == 2
        for row, reference in zip(together, alone):
            for key in row:
                if key != "seconds":
                    assert row[key] == pytest.approx(reference[key], abs=TOLERANCE, rel=1e-5, nan_ok=True), key


def test_members_drop_out_at_their_own_rates_when_stacked():
    import torch

    from dltrain.train.engine import Stacked
    from dltrain.train.member import Member
    from dltrain.train.stopping import EarlyStopping
    from types import SimpleNamespace

    from torch import nn

    def member(rate):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(4, 64), nn.Dropout(rate), nn.Linear(64, 1))
        return Member("", 0, None, SimpleNamespace(model=model), EarlyStopping("loss", "min"))

    members = [member(0.0), member(0.5)]
    stacked = Stacked(members)
    assert stacked.per_member_rates
    stacked.structure.train()
    x = torch.ones(256, 4)
    hidden = [m.model[0](x) for m in members]
    stacked.structure[2] = nn.Identity()  # look at what the dropout layer lets through
    members_out = stacked(members, [x, x])
    assert torch.allclose(members_out[0], hidden[0])  # rate 0: everything, unscaled
    kept = (members_out[1] != 0).float().mean()
    assert 0.4 < kept < 0.6 and torch.allclose(members_out[1][members_out[1] != 0],
                                               (2 * hidden[1])[members_out[1] != 0])


def test_tune_refuses_multirun(cli):
    result = cli("tune", "-m", "optimizer.lr=0.1,0.01")
    assert result.exit_code == 2 and "cannot run under -m" in result.output


@pytest.mark.slow
def test_tune_ranks_a_good_point_first_and_cv_reruns_its_recipe(cli):
    """A learning rate that learns against one that barely moves; successive halving over two
    rungs; best_recipe.yaml rerun through dltrain cv reproduces its stated fold-mean score."""
    result = cli("tune", *TINY, "trainer.epochs=3", "tune.points=4", "tune.rungs=2", "tune.eta=2",
                 "optimizer.lr=choice(0.05, 0.000001)", "model.hidden_sizes=choice([8])",
                 "tune.space.model.dropout=null", "tune.space.regularization.weight_decay=null",
                 "tune.space.regularization=null", "tune.regression_space.loss=null",
                 "tune.regression_space.data.target_transform=null", "hydra.run.dir=outputs/tune")
    assert result.exit_code == 0, result.output
    folder = Path("outputs/tune")
    summary = json.loads((folder / "tune.json").read_text())
    points = summary["points"]
    assert [p["rank"] for p in points] == [1, 2, 3, 4] and summary["rung_ends"] == [2, 3]
    assert sum(p["epochs"] == 3 for p in points) == 2  # floor(4 / 2) go on after the first rung
    good = [p for p in points if p["optimizer.lr"] == "0.05"]
    bad = [p for p in points if p["optimizer.lr"] == "1e-06"]
    assert good and bad and max(p["rank"] for p in good) < min(p["rank"] for p in bad)
    assert (folder / "tune.csv").read_text().startswith("rank,point,population,")
    assert len(list((folder / "hparams").iterdir())) == 4
    recipe = folder / "best_recipe.yaml"
    assert "over 3 folds" in recipe.read_text().splitlines()[1]
    result = cli("cv", f"recipe={recipe}", "logger=none", "hydra.run.dir=outputs/rerun")
    assert result.exit_code == 0, result.output
    rerun = json.loads(Path("outputs/rerun/cv_summary.json").read_text())["objective"]
    assert rerun["mean"] == pytest.approx(points[0]["val_mse_mean"], abs=TOLERANCE, rel=1e-5)
    assert rerun["std"] == pytest.approx(points[0]["val_mse_std"], abs=TOLERANCE, rel=1e-5)


@pytest.mark.slow
def test_ctrl_c_stops_at_a_rung_end_and_resume_continues_to_the_same_ranking(monkeypatch):
    import os
    import signal

    from dltrain.commands import tune
    from dltrain.errors import RunInterrupted

    words = [*TINY, "data.num_samples=64", "k=2", "trainer.epochs=2", "tune.points=4", "tune.rungs=2", "tune.eta=2",
             "model.hidden_sizes=choice([8])", "tune.space.model.dropout=null"]
    expected = tune.tune([*words, "hydra.run.dir=outputs/whole"])
    opened = tune._open_points

    def interrupting(cfg, source, folds, points, metric, mode):  # Ctrl-C during the first epoch's end
        opened(cfg, source, folds, points, metric, mode)
        points[0].members[0].callbacks.append(lambda epoch, row: os.kill(os.getpid(), signal.SIGINT))

    monkeypatch.setattr(tune, "_open_points", interrupting)
    with pytest.raises(RunInterrupted):
        tune.tune([*words, "hydra.run.dir=outputs/stopped"])
    monkeypatch.setattr(tune, "_open_points", opened)
    assert Path("outputs/stopped/tune_state.pt").is_file() and not Path("outputs/stopped/tune.csv").exists()
    resumed = tune.tune(["resume=outputs/stopped"])
    assert not Path("outputs/stopped/tune_state.pt").exists()
    assert [(r["point"], r["epochs"]) for r in resumed] == [(r["point"], r["epochs"]) for r in expected]
    for row, reference in zip(resumed, expected):
        assert row["val_mse_mean"] == pytest.approx(reference["val_mse_mean"], abs=1e-6)


@pytest.mark.slow
def test_populations_as_launcher_jobs_rank_as_in_one_process():
    """hydra/launcher=joblib: each population a job (here joblib's one worker, in this process)
    that derives the same points from the tune's saved config; the same ranking and scores."""
    from dltrain.commands import tune

    words = [*TINY, "data.num_samples=64", "k=2", "trainer.epochs=2", "tune.points=4", "tune.rungs=2", "tune.eta=2",
             "tune.space.model.dropout=null", "model.hidden_sizes=choice([4],[8])"]
    alone = tune.tune([*words, "hydra.run.dir=outputs/alone"])
    jobs = tune.tune([*words, "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", "hydra.run.dir=outputs/jobs"])
    assert sorted(p.name for p in Path("outputs/jobs").glob("population_*")) == ["population_0", "population_1"]
    assert [(r["point"], r["population"], r["epochs"]) for r in jobs] == \
        [(r["point"], r["population"], r["epochs"]) for r in alone]
    for row, reference in zip(jobs, alone):
        assert row["val_mse_mean"] == pytest.approx(reference["val_mse_mean"], abs=1e-6)
