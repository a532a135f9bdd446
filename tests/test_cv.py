"""dltrain cv: fold planning per strategy, leakage, aggregation, one fold alone, joblib folds,
refit and test ensemble, sweeps, and the one-sentence errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import read_metrics

FAST = ["trainer.epochs=2", "trainer.progress=false", "logger=none"]


def cv_run_dirs(root: Path = Path("outputs")) -> list[Path]:
    return sorted(p.parent for p in root.glob("**/cv_summary.json"))


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "cv_summary.json").read_text())


def cv_settings(**changes):
    from dltrain.config import CVSettings

    return replace(CVSettings(), **changes)


def table_source(n=60, classes=None, groups=None, seed=0):
    from dltrain.data.tabular import frame_source

    rng = np.random.default_rng(seed)
    features = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n)})
    if groups is not None:
        features["site"] = groups
    target = pd.Series(classes if classes is not None else rng.normal(size=n))
    return frame_source(features, target, {}, task="auto")


# --------------------------------------------------------------------------- planning


@pytest.mark.parametrize("strategy, shuffle", [
    ("kfold", False), ("kfold", True), ("stratified", True), ("stratified", False),
    ("group", True), ("group", False), ("repeated", True),
])
def test_every_strategy_gives_disjoint_folds_that_cover_the_data(strategy, shuffle):
    from dltrain.data.folds import plan_folds
    from dltrain.data.tabular import with_group_column

    n = 61
    classes = ["x", "y", "z"] * 20 + ["x"]
    source = table_source(n, classes=classes, groups=[f"g{i % 13}" for i in range(n)])
    group_column = "site" if strategy == "group" else None
    if group_column:
        source = with_group_column(source, "site")
    cv = cv_settings(k=4, strategy=strategy, shuffle=shuffle, repeats=3 if strategy == "repeated" else 1,
                     group_column=group_column)
    folds = plan_folds(source, cv)
    assert len(folds) == cv.fold_count == (12 if strategy == "repeated" else 4)
    for repeat in range(cv.repeats):
        in_repeat = [f for f in folds if f.repeat == repeat]
        validated = np.concatenate([f.val_index for f in in_repeat])
        assert sorted(validated) == list(range(n))  # every row validated exactly once
        for fold in in_repeat:
            assert not set(fold.train_index) & set(fold.val_index)
            assert len(fold.train_index) + len(fold.val_index) == n
            if strategy == "group":
                assert not set(source.groups[fold.train_index]) & set(source.groups[fold.val_index])
    if strategy == "repeated":
        assert not np.array_equal(folds[0].val_index, folds[4].val_index)  # a new shuffle per repeat


def test_kfold_without_shuffle_gives_the_textbooks_contiguous_folds():
    from dltrain.data.folds import plan_folds

    folds = plan_folds(table_source(1460), cv_settings(k=5, strategy="kfold", shuffle=False))
    for i, fold in enumerate(folds):  # d2l's get_k_fold_data: slice(i * fold_size, (i + 1) * fold_size)
        assert list(fold.val_index) == list(range(i * 292, (i + 1) * 292))


def test_stratified_folds_keep_class_ratios():
    from dltrain.data.folds import plan_folds

    classes = ["common"] * 70 + ["middle"] * 20 + ["rare"] * 10  # sorted: contiguous folds would fail
    source = table_source(100, classes=classes)
    folds = plan_folds(source, cv_settings(k=5, strategy="auto"))
    overall = np.bincount(source.target) / len(source)
    for fold in folds:
        counts = np.bincount(source.target[fold.val_index], minlength=3)
        assert list(counts) == [14, 4, 2]
        assert np.allclose(counts / counts.sum(), overall)


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_cv_writes_folds_summary_and_out_of_fold_predictions(cli):
    result = cli("cv", "k=3", "data=iris", "trainer.epochs=2", "trainer.progress=false")
    assert result.exit_code == 0, result.output
    (run_dir,) = cv_run_dirs()
    summary = summary_of(run_dir)
    assert summary["status"] == "finished" and summary["strategy"] == "stratified"
    folds = [run_dir / f"fold_{i}" for i in range(3)]
    records = [read_metrics(folder) for folder in folds]
    assert all(r["status"] == "finished" for r in records)
    assert all((folder / ".hydra" / "config.yaml").is_file() for folder in folds)  # a Hydra job each
    # one TensorBoard run per fold, plus their average, all under the run folder
    assert all(list((folder / folder.name).glob("events.out.tfevents.*")) for folder in folds)
    assert summary["tensorboard_mean_run"] == "cv_mean"
    assert list((run_dir / "cv_mean").glob("events.out.tfevents.*"))

    # mean and std in the json, the csv and the printed table are those of the folds' metrics
    csv = pd.read_csv(run_dir / "cv_summary.csv").set_index("fold")
    for name in ("train_loss", "val_loss", "val_accuracy", "val_macro_f1"):
        values = [r["final"][name] for r in records]
        assert summary["mean"][name] == pytest.approx(np.mean(values), abs=1e-12)
        assert summary["std"][name] == pytest.approx(np.std(values), abs=1e-12)
        assert float(csv.loc["mean", name]) == pytest.approx(np.mean(values))
        assert float(csv.loc["std", name]) == pytest.approx(np.std(values))
        assert [float(csv.loc[str(i), name]) for i in range(3)] == pytest.approx(values)
        from dltrain.console import fmt

        assert fmt(float(np.mean(values))) in result.output and fmt(float(np.std(values))) in result.output
    assert summary["objective"] == {"metric": "val_loss", "mode": "min",
                                    "mean": summary["mean"]["val_loss"], "std": summary["std"]["val_loss"]}

    # the console: one line per fold (no Result table, no epoch rows), each fold's whole output
    # in its own dltrain.log, and the cross-validation's in its own
    fold_lines = [line for line in result.output.splitlines() if " of 3): " in line]
    assert [line.split(":")[0] for line in fold_lines] == [f"fold_{i} ({i + 1} of 3)" for i in range(3)]
    assert all("): 2 epochs, best val_loss " in line for line in fold_lines)
    assert "Result" not in result.output and "train_loss" not in result.output.split("Cross-validation")[0]
    for folder, record in zip(folds, records):
        log = (folder / "dltrain.log").read_text()
        assert log.startswith(f"dltrain cv  {folder.name} (") and "Result" in log
        assert log.splitlines()[-1].startswith(f"Best val_loss = {fmt(record['best']['val_loss'])} at epoch")
    log = (run_dir / "dltrain.log").read_text()
    assert all(line in log for line in fold_lines) and "Mean val_loss over 3 folds" in log

    # every sample predicted exactly once, by the fold that did not train on it
    oof = pd.read_csv(run_dir / "oof_predictions.csv")
    assert list(oof["index"]) == list(range(150))
    assert set(oof.columns) >= {"index", "fold", "target", "prediction", "probability_setosa", "probability_virginica"}
    assert np.allclose(oof.filter(like="probability_").sum(axis=1), 1.0, atol=1e-5)
    for i, folder in enumerate(folds):
        val = pd.read_csv(folder / "val_predictions.csv")
        assert set(oof[oof["fold"] == i]["index"]) == set(val["index"])
        accuracy = float(np.mean(val["prediction"] == val["target"]))
        assert accuracy == pytest.approx(records[i]["final"]["val_accuracy"])

    # k distinct models, from distinct seeds
    import torch

    weights = [torch.load(folder / "last.pt", weights_only=True)["model"] for folder in folds]
    seeds = [json.loads((folder / "fold.json").read_text())["seed"] for folder in folds]
    assert seeds == [0, 1, 2]
    for i in range(3):
        for j in range(i + 1, 3):
            assert any(not torch.equal(weights[i][key], weights[j][key]) for key in weights[i])


@pytest.mark.slow
def test_one_fold_alone_equals_that_fold_of_the_full_run(cli):
    assert cli("cv", "k=3", "data=wine", *FAST, "hydra.run.dir=outputs/full").exit_code == 0
    result = cli("cv", "k=3", "data=wine", *FAST, "cv.fold=2", "hydra.run.dir=outputs/alone")
    assert result.exit_code == 0, result.output
    alone, full = Path("outputs/alone"), Path("outputs/full")
    assert sorted(p.name for p in alone.glob("fold_*")) == ["fold_2"]
    def history(run_dir):
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_metrics(run_dir)["history"]]

    assert history(alone / "fold_2") == history(full / "fold_2")  # every epoch's metrics, exactly
    pd.testing.assert_frame_equal(pd.read_csv(alone / "fold_2" / "val_predictions.csv"),
                                  pd.read_csv(full / "fold_2" / "val_predictions.csv"))
    assert summary_of(alone)["folds_run"] == [2]


@pytest.mark.slow
def test_joblib_launched_folds_equal_sequential_folds(cli):
    common = ["k=2", "data=iris", *FAST]
    assert cli("cv", *common, "hydra.run.dir=outputs/sequential").exit_code == 0
    result = cli("cv", *common, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 "hydra.run.dir=outputs/parallel")
    assert result.exit_code == 0, result.output
    assert "Launching" not in result.output and "#0 :" not in result.output  # no Hydra launch lines
    sequential, parallel = summary_of(Path("outputs/sequential")), summary_of(Path("outputs/parallel"))
    for a, b in zip(sequential["folds"], parallel["folds"]):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7), key
    oof_a = pd.read_csv("outputs/sequential/oof_predictions.csv")
    oof_b = pd.read_csv("outputs/parallel/oof_predictions.csv")
    pd.testing.assert_frame_equal(oof_a, oof_b, rtol=1e-5)

    def files(fold: Path) -> set[str]:  # a Hydra job also keeps its hydra.yaml and job log
        return {str(p.relative_to(fold)) for p in fold.rglob("*")
                if p.is_file() and p.name not in ("hydra.yaml", "dltrain.log")}

    for fold in ("fold_0", "fold_1"):  # folds in this process are written as the launcher's are
        assert files(Path("outputs/sequential") / fold) == files(Path("outputs/parallel") / fold)
        for name in ("config.yaml", "overrides.yaml"):  # (the launcher writes booleans as False)
            assert (Path("outputs/sequential") / fold / ".hydra" / name).read_text().lower() == \
                (Path("outputs/parallel") / fold / ".hydra" / name).read_text().lower()


@pytest.mark.slow
def test_no_statistic_of_a_validation_fold_reaches_its_training(cli, monkeypatch):
    """Fold 0's rows carry a huge feature value: a scaler fitted on all rows would have a mean
    near 333; fitted on fold 0's training part, it sees none of them."""
    from dltrain.data.tabular import TabularPreprocessor

    rng = np.random.default_rng(0)
    spike = rng.normal(size=60)
    spike[:20] += 1000.0
    frame = pd.DataFrame({"spike": spike, "z": rng.normal(size=60),
                          "color": rng.choice(["red", "blue"], size=60)})
    frame.loc[:19, "color"] = "green"  # a category only fold 0 has
    frame["y"] = 2 * frame["z"] + rng.normal(scale=0.1, size=60)
    frame.to_csv("spiky.csv", index=False)

    fitted = []
    original_fit = TabularPreprocessor.fit

    def recording_fit(self, features, target=None):
        original_fit(self, features, target)
        fitted.append((list(features.index), self))
        return self

    monkeypatch.setattr(TabularPreprocessor, "fit", recording_fit)
    result = cli("cv", "data=csv", "data.path=spiky.csv", "data.target=y", "k=3", "cv=contiguous",
                 "model=linear", *FAST)
    assert result.exit_code == 0, result.output
    assert len(fitted) == 3
    for i, (rows, preprocessor) in enumerate(fitted):
        val_rows = set(range(20 * i, 20 * (i + 1)))
        assert set(rows) == set(range(60)) - val_rows
        assert preprocessor.numeric[0] == "spike"
        assert preprocessor.mean[0] == pytest.approx(spike[sorted(rows)].mean())
    assert abs(fitted[0][1].mean[0]) < 1
    assert "color_green" not in fitted[0][1].feature_names  # fold 0's category unseen in its training
    assert "color_green" in fitted[1][1].feature_names


@pytest.mark.slow
def test_refit_and_the_test_ensemble(tmp_path):
    from dltrain.config import compose, read_settings
    from dltrain.commands.cv import cross_validate
    from dltrain.train.predictions import read_predictions, scores_of
    from dltrain.data import load_source
    from dltrain.train.metrics import compute

    cfg = compose(["data=iris", "k=3", "cv.refit=true", "trainer.epochs=5", "trainer.progress=false",
                   "logger=none", "optimizer.lr=0.01"])
    source = load_source(read_settings(cfg).data)
    order = np.random.default_rng(0).permutation(len(source))
    train, test = order[:120], order[120:]
    source = replace(source, features=source.features.iloc[train].reset_index(drop=True),
                     target=source.target[train], test_features=source.features.iloc[test],
                     test_target=source.target[test])
    summary = cross_validate(cfg, tmp_path / "run", source=source)

    assert (tmp_path / "run" / "final.pt").is_file() and (tmp_path / "run" / "refit" / "last.pt").is_file()
    refit = read_metrics(tmp_path / "run" / "refit")
    assert refit["status"] == "finished" and "val_loss" not in refit["final"]  # trained on every row
    assert summary["refit"]["test"]["accuracy"] == refit["test"]["accuracy"]
    assert all("test_accuracy" in row for row in summary["folds"])
    frames = [read_predictions(tmp_path / "run" / f"fold_{i}" / "test_predictions.csv") for i in range(3)]
    stacked = [scores_of(frame, "multiclass", source.class_names) for frame in frames]
    expected = compute("multiclass", np.mean([s for s, _ in stacked], axis=0), source.test_target)
    assert summary["test_ensemble"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert summary["test_ensemble"]["models"] == 3
    assert summary["test_ensemble"]["accuracy"] > 0.8


@pytest.mark.slow
def test_a_sweep_of_cross_validations_returns_each_mean_to_hydra():
    from dltrain.commands.cv import run_cv
    from dltrain.commands.launch import launch

    means = launch(run_cv, ["data=iris", "k=2", "trainer.epochs=1", "trainer.progress=false",
                            "logger=none", "optimizer.lr=0.01,0.05"], multirun=True, sweep=True)
    runs = cv_run_dirs()
    assert len(means) == len(runs) == 2
    assert sorted(means) == sorted(summary_of(run)["objective"]["mean"] for run in runs)
    assert all(sorted(p.name for p in run.glob("fold_*")) == ["fold_0", "fold_1"] for run in runs)


@pytest.mark.slow
def test_repeated_and_group_strategies_end_to_end(cli, small_csvs):
    result = cli("cv", "data=iris", "k=2", "cv=repeated", "cv.repeats=2", "trainer.epochs=1",
                 "trainer.progress=false", "logger=none", "hydra.run.dir=outputs/repeated")
    assert result.exit_code == 0, result.output
    summary = summary_of(Path("outputs/repeated"))
    assert summary["strategy"] == "repeated" and len(summary["folds"]) == 4
    oof = pd.read_csv("outputs/repeated/oof_predictions.csv")
    assert list(oof["repeat"]) == [0] * 150 + [1] * 150
    assert list(oof["index"]) == list(range(150)) * 2  # every row once per repeat

    result = cli("cv", *small_csvs, "k=2", "cv.group_column=site", *FAST, "hydra.run.dir=outputs/group")
    assert result.exit_code == 0, result.output
    assert summary_of(Path("outputs/group"))["strategy"] == "group"
    oof = pd.read_csv("outputs/group/oof_predictions.csv")
    sites = pd.read_csv("small.csv")["site"]
    assert oof.groupby(sites[oof["index"]].to_numpy())["fold"].nunique().max() == 1
    import torch

    spec = torch.load("outputs/group/fold_0/last.pt", weights_only=True)["spec"]
    assert list(spec["feature_names"]) == ["a", "b"]  # the group id is not a feature


@pytest.mark.slow
def test_a_fold_that_fails_leaves_no_summary_and_says_why(cli):
    result = cli("cv", "data=diabetes", "model=linear", "optimizer=sgd", "optimizer.lr=1e30", "k=2",
                 *FAST, "hydra.run.dir=outputs/diverged")
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "Fold 0 of the cross-validation failed: The training loss became" in text
    assert not Path("outputs/diverged/cv_summary.json").exists()
    assert Path("outputs/diverged/fold_0.error").read_text() in text


# --------------------------------------------------------------------------- errors


@pytest.fixture
def small_csvs():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=42), "b": rng.normal(size=42),
                          "site": ["s1", "s2"] * 21,
                          "label": ["x"] * 20 + ["y"] * 20 + ["z"] * 2})
    frame.to_csv("small.csv", index=False)
    return ["data=csv", "data.path=small.csv", "data.target=label"]


@pytest.mark.parametrize("overrides, sentence", [
    (["k=1"], "k must be at least 2, got 1."),
    (["data=iris", "k=151"], "k=151 is more than the 150 samples of data=iris; use k from 2 to 150."),
    (["SMALL", "k=3"], "class 'z' has only 2 samples, fewer than k=3; lower k to at most 2"),
    (["SMALL", "k=3", "cv.group_column=hospital"],
     "cv.group_column 'hospital' is not a feature column of the data; columns are: a, b, site."),
    (["SMALL", "k=3", "cv.group_column=site"], "cv.group_column 'site' has 2 distinct groups, fewer than k=3"),
    (["k=5", "cv.fold=5"], "cv.fold=5 is out of range for 5 folds; use 0 to 4"),
    (["data=diabetes", "cv.strategy=stratified"], "cv.strategy=stratified keeps class ratios, but this data is a regression"),
    (["cv=group"], "cv.strategy=group needs cv.group_column=COLUMN"),
    (["cv.strategy=leave_one_out"], "cv.strategy must be one of auto, kfold, stratified, group, repeated"),
    (["cv=repeated", "cv.shuffle=false"], "cannot run with cv.shuffle=false"),
])
def test_bad_requests_fail_up_front_with_one_sentence(cli, small_csvs, overrides, sentence):
    overrides = [o for item in overrides for o in (small_csvs if item == "SMALL" else [item])]
    result = cli("cv", *overrides, *FAST)
    assert result.exit_code == 2
    assert sentence in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not Path("outputs").exists()  # no run folder at all, let alone one that looks finished


def test_cv_help_and_list(cli):
    result = cli("cv", "--help")
    assert result.exit_code == 0 and "Examples" in result.output and "dltrain cv k=5" in result.output
    result = cli("list", "cv")
    assert result.exit_code == 0
    assert "contiguous" in result.output and "repeated" in result.output


# --------------------------------------------------------------------------- log-RMSE


def test_log_rmse_is_the_textbooks_metric_and_a_monitor():
    from dltrain.train.metrics import check_monitor, compute, log_rmse, monitor_mode

    predictions = np.array([100.0, 0.5, 250.0])
    targets = np.array([120.0, 2.0, 200.0])
    expected = np.sqrt(np.mean((np.log([100.0, 1.0, 250.0]) - np.log(targets)) ** 2))
    assert log_rmse(predictions, targets) == pytest.approx(expected)
    assert compute("regression", predictions, targets)["log_rmse"] == pytest.approx(expected)
    assert np.isnan(log_rmse(predictions, np.array([1.0, -1.0, 2.0])))  # undefined for targets <= 0
    check_monitor("log_rmse", "regression")
    assert monitor_mode("log_rmse", "auto") == "min"


@pytest.mark.slow
@pytest.mark.parametrize("vectorize", ["true", "false"])
def test_every_fold_folder_is_held_while_it_trains_and_released_after(monkeypatch, vectorize):
    """One writer per run folder: the cross-validation holds its own folder throughout, and each
    fold's (the refit's) while it trains, also when the folds train together in one process."""
    import dltrain
    from dltrain.files import locked_by_someone
    from dltrain.train.engine import Trainer

    seen, fit = [], Trainer.fit

    def watched(trainer):
        folders = [m.folder.path for m in trainer.members]
        seen.append({f.name: locked_by_someone(f) for f in [*folders, folders[0].parent]})
        return fit(trainer)

    monkeypatch.setattr(Trainer, "fit", watched)
    dltrain.cv("k=3", "data=iris", "trainer.epochs=1", "trainer.progress=false", "logger=none",
               "cv.refit=true", f"cv.vectorize={vectorize}")
    (cv_dir,) = cv_run_dirs()
    folds = [{"fold_0": True, "fold_1": True, "fold_2": True, cv_dir.name: True}]
    if vectorize == "false":
        folds = [{f"fold_{i}": True, cv_dir.name: True} for i in range(3)]
    assert seen == [*folds, {"refit": True, cv_dir.name: True}]
    held = [cv_dir, cv_dir / "refit", *cv_dir.glob("fold_*")]
    assert not any(locked_by_someone(folder) for folder in held)  # released, the process lives on


@pytest.mark.slow
def test_cv_into_a_prepared_folder_replaces_planted_links_and_never_writes_through_them(cli, tmp_path):
    """hydra.run.dir=FOLDER of no run yet is allowed; links someone planted there are replaced."""
    prepared = Path("prepared")
    (prepared / "fold_0" / ".hydra").mkdir(parents=True)
    planted = ["cv_summary.csv", "oof_predictions.csv", "final.pt", "fold_0/val_predictions.csv",
               "fold_0/metrics.json", "fold_0/.hydra/overrides.yaml"]
    for i, name in enumerate(planted):
        victim = tmp_path / f"victim_{i}"
        victim.write_text("precious")
        (prepared / name).symlink_to(victim)
    result = cli("cv", "k=2", "data=iris", *FAST, "cv.refit=true", f"hydra.run.dir={prepared}")
    assert result.exit_code == 0, result.output
    assert [p.read_text() for p in sorted(tmp_path.glob("victim_*"))] == ["precious"] * len(planted)
    assert not any((prepared / name).is_symlink() for name in planted)
    assert summary_of(prepared.resolve())["objective"]["mean"] is not None
