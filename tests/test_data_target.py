"""data.target_transform: a regression target trained as it is, standardized or as its
standardized log; metrics, predictions and out-of-fold predictions always in the target's own
units; log refuses a target that is not above 0; the fitted transform is saved as data and a
resume never refits it; the README's own CSV regression example learns with no extra setting."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import read_metrics, run_folders
from dltrain.config import DataSettings, upgrade_saved
from dltrain.data import load_source, prepare
from dltrain.data.preprocessing import load_saved
from dltrain.data.target import TargetTransform
from dltrain.errors import DltrainError
from dltrain.train.objective import build_objective

QUIET = ["trainer.progress=false", "logger=none"]


def write_houses(path, rows: int = 400, seed: int = 0) -> None:
    """A house-price CSV at the scale of real prices (1e5..1e6): linear in three features, noisy."""
    rng = np.random.default_rng(seed)
    area, rooms, age = rng.uniform(50, 300, rows), rng.integers(1, 7, rows), rng.uniform(0, 80, rows)
    price = 50_000 + 2_500 * area + 20_000 * rooms - 1_500 * age + rng.normal(0, 30_000, rows)
    pd.DataFrame({"Area": area.round(1), "Rooms": rooms, "Age": age.round(1),
                  "Price": price.round(0)}).to_csv(path, index=False)


def houses(path, transform: str):
    return load_source(DataSettings("csv", 32, 0.2, True, {"path": str(path), "target": "Price",
                                                           "target_transform": transform}))


@pytest.mark.parametrize("transform", ["none", "standardize", "log"])
def test_the_model_learns_a_transformed_target_and_metrics_are_in_its_units(tmp_path, transform):
    write_houses(tmp_path / "houses.csv", rows=50)
    source = houses(tmp_path / "houses.csv", transform)
    data = prepare(source, np.arange(40), np.arange(40, 50))
    prices = source.target[:40]
    trained = data.train.y.double().numpy()
    if transform == "none":
        assert trained == pytest.approx(prices)
    else:
        measured = np.log(prices) if transform == "log" else prices
        assert trained.mean() == pytest.approx(0, abs=1e-6) and trained.std() == pytest.approx(1, rel=1e-4)
        assert (data.spec.target_mean, data.spec.target_std) == pytest.approx((measured.mean(), measured.std()))
    assert data.spec.target_transform == transform == data.target.kind
    # what the model outputs (here: the trained targets themselves) comes back in prices
    objective = build_objective("mse", {}, data.spec)
    back = objective.scores(data.val.y.unsqueeze(-1)).double().numpy()
    assert back == pytest.approx(source.target[40:], rel=1e-5)


def test_log_refuses_a_target_that_is_not_above_zero_in_one_sentence(tmp_path):
    write_houses(tmp_path / "houses.csv", rows=20)
    frame = pd.read_csv(tmp_path / "houses.csv")
    frame.loc[17, "Price"] = -3.0  # a validation row: refused as well as a training one
    frame.to_csv(tmp_path / "houses.csv", index=False)
    with pytest.raises(DltrainError, match=r"^data.target_transform=log needs a target above 0 in every row, "
                                           r"but the target holds -3; use data.target_transform=standardize"):
        prepare(houses(tmp_path / "houses.csv", "log"), np.arange(15), np.arange(15, 20))
    with pytest.raises(DltrainError, match="must be one of none, standardize, log; got 'sqrt'"):
        houses(tmp_path / "houses.csv", "sqrt")
    assert TargetTransform("log", 1.0, 2.0).decode(np.zeros(1)) == pytest.approx(np.e)


def test_a_linear_models_w_and_b_are_told_in_the_targets_units():
    from dltrain.models.linear import LinearRegression

    model = LinearRegression(1, 1)
    with torch.no_grad():
        model.linear.weight.fill_(0.5)
        model.linear.bias.fill_(-0.25)
    # trained on (y - 4) / 2: y = 2 * (0.5 x - 0.25) + 4 = 1 x + 3.5
    assert model.describe(target=TargetTransform("standardize", 4.0, 2.0)) == "w = [1.0000], b = [3.5000]"
    assert model.describe() == "w = [0.5000], b = [-0.2500]"
    assert model.describe(target=TargetTransform("log", 4.0, 2.0)).endswith("(predicting the standardized log "
                                                                          "of the target)")


def test_the_old_key_is_refused_by_name_and_an_old_runs_config_is_read_in_the_new_one(cli):
    result = cli("config", "data=csv", "data.path=x.csv", "data.standardize_target=true")
    assert result.exit_code == 2
    assert ("data.standardize_target was replaced by data.target_transform: set data.target_transform="
            "standardize, none or log.") in result.output
    old = {"data": {"name": "csv", "standardize_target": True}, "k": 5}
    assert upgrade_saved(old)["data"] == {"name": "csv", "target_transform": "standardize"}
    assert upgrade_saved({"data": {"standardize_target": False}})["data"] == {"target_transform": "none"}
    assert old["data"]["standardize_target"] is True  # the saved data itself is left as it was


@pytest.mark.slow
def test_the_readme_csv_regression_example_learns_with_no_extra_setting(cli, tmp_path):
    write_houses(tmp_path / "houses.csv")
    # The README's line as it is: data=csv data.path=houses.csv data.target=Price
    result = cli("fit", "data=csv", "data.path=houses.csv", "data.target=Price")
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    metrics = read_metrics(run_dir)
    assert metrics["best"]["val_r2"] > 0.8 and metrics["best"]["val_mae"] < 60_000  # in dollars
    assert "stayed below 0" not in result.output
    # The same without the transform trains on raw prices, does not learn, and says so at the end.
    result = cli("fit", "data=csv", "data.path=houses.csv", "data.target=Price", "data.target_transform=none",
                 "trainer.epochs=3", *QUIET)
    assert result.exit_code == 0, result.output
    assert "note: val_r2 stayed below 0" in " ".join(result.output.split())
    assert read_metrics(run_folders()[-1])["notes"][0].startswith("val_r2 stayed below 0")


@pytest.mark.slow
def test_the_transform_is_saved_as_data_never_refitted_and_undone_by_eval_predict_and_cv(cli, tmp_path):
    write_houses(tmp_path / "houses.csv", rows=200)
    common = ["data=csv", "data.path=houses.csv", "data.target=Price", "data.target_transform=log", *QUIET]
    assert cli("fit", *common, "trainer.epochs=1").exit_code == 0
    (run_dir,) = run_folders()
    saved = json.loads((run_dir / "preprocessing.json").read_text())["target"]
    assert saved["transform"] == "log" and 11 < saved["mean"] < 14
    # eval: the validation rows' metrics in prices, as training measured them
    assert cli("eval", str(run_dir / "last.pt")).exit_code == 0
    evaluated = json.loads((run_dir / "eval.json").read_text())["metrics"]
    assert evaluated["mse"] == pytest.approx(read_metrics(run_dir)["final"]["val_mse"], rel=1e-4)
    # predict: prices
    frame = pd.read_csv(tmp_path / "houses.csv")
    frame.drop(columns="Price").head(20).to_csv(tmp_path / "new.csv", index=False)
    assert cli("predict", str(run_dir), "input=new.csv", "output=predicted.csv").exit_code == 0
    predicted = pd.read_csv(tmp_path / "predicted.csv")["prediction"]
    assert 1e5 < predicted.median() < 1.5e6
    # The data changes under the run: resume goes on with the transform it was trained with.
    frame.assign(Price=frame["Price"] * 10).to_csv(tmp_path / "houses.csv", index=False)
    assert cli("fit", f"resume={run_dir}", "trainer.epochs=2").exit_code == 0
    assert json.loads((run_dir / "preprocessing.json").read_text())["target"] == saved
    spec = torch.load(run_dir / "last.pt", weights_only=True)["spec"]
    assert (spec["target_transform"], spec["target_mean"], spec["target_std"]) == \
        (saved["transform"], saved["mean"], saved["std"])
    assert load_saved(run_dir)[1] == TargetTransform("log", saved["mean"], saved["std"])
    frame.to_csv(tmp_path / "houses.csv", index=False)
    # cv: the out-of-fold predictions are prices too
    assert cli("cv", *common, "k=2", "trainer.epochs=2", "hydra.run.dir=outputs/cv").exit_code == 0
    oof = pd.read_csv("outputs/cv/oof_predictions.csv")
    assert 1e5 < oof["prediction"].median() < 1.5e6 and oof["target"].tolist() == frame["Price"].tolist()
