"""Using trained models: dltrain eval and dltrain predict, and checkpoints that cannot be used."""

import json

import pandas as pd
import pytest
import torch

from conftest import copy_run, run_folders

pytestmark = pytest.mark.slow


@pytest.fixture
def iris_run(iris_fit_run):
    """``dltrain fit data=iris trainer.epochs=15 optimizer.lr=0.01``, trained once per session
    (conftest.py); each test changes its own copy under outputs/."""
    copy_run(iris_fit_run)
    (run_dir,) = run_folders()
    return run_dir


def test_eval_on_the_validation_rows_matches_the_run(cli, iris_run):
    result = cli("eval", str(iris_run))
    assert result.exit_code == 0, result.output
    record = json.loads((iris_run / "eval.json").read_text())
    metrics = json.loads((iris_run / "metrics.json").read_text())
    assert record["split"] == "validation" and record["rows"] == 30
    assert record["metrics"]["accuracy"] == pytest.approx(metrics["best"]["val_accuracy"])
    assert record["metrics"]["loss"] == pytest.approx(metrics["best"]["val_loss"], rel=1e-5)


def test_eval_on_another_csv_saves_its_own_file_beside_eval_json(cli, iris_run, tmp_path):
    from sklearn.datasets import load_iris

    assert cli("eval", str(iris_run)).exit_code == 0
    own = (iris_run / "eval.json").read_text()
    frame = load_iris(as_frame=True).frame
    frame["target"] = frame["target"].map({0: "setosa", 1: "versicolor", 2: "virginica"})
    frame.to_csv(tmp_path / "iris.csv", index=False)
    result = cli("eval", str(iris_run / "last.pt"), "data=csv", f"data.path={tmp_path / 'iris.csv'}")
    assert result.exit_code == 0, result.output
    record = json.loads((iris_run / "eval-iris.json").read_text())  # named after the data
    assert record["split"] == "all" and record["rows"] == 150
    assert record["metrics"]["accuracy"] > 0.8
    assert (iris_run / "eval.json").read_text() == own  # the run's own evaluation stays
    assert f"Saved to {iris_run / 'eval-iris.json'}" in " ".join(result.output.split())


def test_the_run_log_holds_what_the_run_printed(iris_run):
    log = (iris_run / "dltrain.log").read_text()
    lines = log.splitlines()
    assert lines[0].startswith("dltrain fit  model=mlp") and "run folder:" in log
    header = next(line for line in lines if line.split()[:2] == ["epoch", "train_loss"])
    rows = lines[lines.index(header) + 1: lines.index(header) + 16]
    assert [int(row.split()[0]) for row in rows] == list(range(1, 16))
    assert "Result" in log and lines[-1].startswith("Best val_loss = ")


def test_predict_writes_classes_and_probabilities(cli, iris_run, tmp_path):
    from sklearn.datasets import load_iris

    rows = load_iris(as_frame=True).frame.drop(columns="target").iloc[[0, 60, 120]]
    rows.to_csv(tmp_path / "new.csv", index=False)
    result = cli("predict", str(iris_run), f"input={tmp_path / 'new.csv'}", f"output={tmp_path / 'out.csv'}")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "out.csv")
    assert list(table.columns) == ["input", "prediction", "probability_setosa",
                                   "probability_versicolor", "probability_virginica"]
    assert table["prediction"].tolist() == ["setosa", "versicolor", "virginica"]
    assert table.filter(like="probability").sum(axis=1).tolist() == pytest.approx([1, 1, 1], abs=1e-5)


def test_predict_uses_saved_preprocessing_not_refitted(cli, tmp_path):
    """One row alone would standardize to zeros if the scaler were refitted on it."""
    assert cli("fit", "data=diabetes", "model=linear", "trainer.epochs=30", "optimizer.lr=0.05").exit_code == 0
    (run_dir,) = run_folders()
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True).frame
    frame.drop(columns="target").iloc[:2].to_csv(tmp_path / "two.csv", index=False)
    assert cli("predict", str(run_dir), f"input={tmp_path / 'two.csv'}").exit_code == 0
    predictions = pd.read_csv(run_dir / "predictions.csv")["prediction"]
    assert predictions[0] != pytest.approx(predictions[1], abs=1.0)
    assert 25 < predictions[0] < 350  # in the target's own units


def test_predict_missing_column_and_missing_input(cli, iris_run, tmp_path):
    pd.DataFrame({"sepal length (cm)": [5.0]}).to_csv(tmp_path / "bad.csv", index=False)
    result = cli("predict", str(iris_run), f"input={tmp_path / 'bad.csv'}")
    assert result.exit_code == 2 and "lacks the column 'sepal width (cm)'" in result.output
    result = cli("predict", str(iris_run))
    assert result.exit_code == 2 and "dltrain predict needs input=FILE" in result.output
    result = cli("predict", str(iris_run), "input=nowhere.csv")
    assert result.exit_code == 2 and "input='nowhere.csv' does not exist" in result.output


def test_truncated_and_foreign_checkpoints_are_one_sentence(cli, iris_run):
    data = (iris_run / "best.pt").read_bytes()
    (iris_run / "best.pt").write_bytes(data[: len(data) // 2])
    result = cli("eval", str(iris_run))
    assert result.exit_code == 2
    assert "cannot be read" in result.output and "corrupted or not a dltrain checkpoint" in result.output
    assert "Traceback" not in result.output
    torch.save({"weights": torch.zeros(3)}, iris_run / "other.pt")
    result = cli("eval", str(iris_run / "other.pt"))
    assert result.exit_code == 2 and "is not a dltrain checkpoint" in result.output


def test_checkpoint_of_another_shape_is_one_sentence(cli, iris_run):
    result = cli("eval", str(iris_run / "last.pt"), "model.hidden_sizes=[7]")
    assert result.exit_code == 2
    assert "does not fit model=mlp" in result.output and "Traceback" not in result.output


def test_resume_with_an_incompatible_model_is_one_sentence(cli, iris_run):
    result = cli("fit", f"resume={iris_run}", "model.hidden_sizes=[7]")
    assert result.exit_code == 2
    assert f"resume={iris_run} cannot change model.hidden_sizes" in " ".join(result.output.split())
    assert json.loads((iris_run / "metrics.json").read_text())["status"] == "finished"


def test_predict_for_an_image_model_reads_a_folder_of_images(cli, tmp_path):
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    assert cli("fit", "model=cnn", "data=digits_images", "data.batch_size=128", "trainer.epochs=3",
               "optimizer.lr=0.01").exit_code == 0
    (run_dir,) = run_folders()
    digits = load_digits()
    folder = tmp_path / "new_images"
    folder.mkdir()
    for i in range(4):  # the 8x8 digits at 0-16, saved as 0-255 grey PNGs
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(folder / f"{i}.png")
    result = cli("predict", str(run_dir), f"input={folder}", f"output={tmp_path / 'labels.csv'}")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "labels.csv")
    assert len(table) == 4 and table["input"].str.endswith(".png").all()
    assert table.filter(like="probability_").shape[1] == 10
    assert (table["prediction"].astype(str) == pd.Series(["0", "1", "2", "3"])).sum() >= 3


def test_predict_for_a_text_model_reads_a_csv_of_texts(cli, tmp_path):
    assert cli("fit", "model=lstm", "data=text_csv", "data.num_samples=400", "trainer.epochs=3").exit_code == 0
    (run_dir,) = run_folders()
    pd.DataFrame({"text": ["a great film", "not good at all"]}).to_csv(tmp_path / "texts.csv", index=False)
    result = cli("predict", str(run_dir), f"input={tmp_path / 'texts.csv'}")
    assert result.exit_code == 0, result.output
    table = pd.read_csv(run_dir / "predictions.csv")
    assert len(table) == 2 and table["prediction"].notna().all()
    assert table.filter(like="probability_").sum(axis=1).tolist() == pytest.approx([1, 1], abs=1e-5)


def test_predict_replaces_a_planted_predictions_link_and_leaves_its_target_alone(cli, iris_run, tmp_path):
    from sklearn.datasets import load_iris

    victim = tmp_path / "bashrc"
    victim.write_text("export PATH=~/bin:$PATH\n")
    (iris_run / "predictions.csv").symlink_to(victim)  # a run folder shared by someone else
    load_iris(as_frame=True).frame.drop(columns="target").iloc[:3].to_csv(tmp_path / "new.csv", index=False)
    result = cli("predict", str(iris_run), f"input={tmp_path / 'new.csv'}")
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "export PATH=~/bin:$PATH\n"
    assert not (iris_run / "predictions.csv").is_symlink()
    assert len(pd.read_csv(iris_run / "predictions.csv")) == 3


def test_eval_opens_the_run_one_writer_at_a_time_and_clears_what_a_killed_writer_left(cli, iris_run, tmp_path):
    from dltrain.files import RunLock

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (iris_run / "eval.json").symlink_to(victim)
    (iris_run / ".best.pt.x7k2.tmp").write_bytes(b"half a checkpoint")  # SIGKILL mid-write
    with RunLock(iris_run):  # this process holds it: eval in the same process may write
        result = cli("eval", str(iris_run))
    assert result.exit_code == 0, result.output
    assert victim.read_text() == "precious"
    assert json.loads((iris_run / "eval.json").read_text())["split"] == "validation"
    assert not list(iris_run.glob(".*.tmp"))
