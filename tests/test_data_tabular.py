"""Tabular data: CSV reading (header=auto, task=auto, a table read once), Parquet, the house_tiny
example, training-only statistics, bundled sets."""

import gzip
import json
import re

import numpy as np
import pandas as pd
import pytest

from dltrain.config import DataSettings
from dltrain.data import load_source, prepare
from dltrain.data.split import train_val_indices
from dltrain.data.tabular import TabularPreprocessor
from dltrain.errors import DltrainError
from conftest import read_metrics, run_folders


def csv_settings(path, **options):
    options = {"path": str(path), "target": -1, "header": True, "task": "auto",
               "standardize": True, **options}
    return DataSettings(name="csv", batch_size=8, val_fraction=0.0, shuffle=True, options=options)


def write_house_tiny(path):
    path.write_text("NumRooms,Alley,Price\nNA,Pave,127500\n2,NA,106000\n4,NA,178100\nNA,NA,140000\n")


def test_house_tiny_is_encoded_as_in_the_textbook(tmp_path):
    """d2l's house_tiny: NumRooms NA -> mean 3.0; Alley -> Alley_Pave, Alley_nan; Price target."""
    path = tmp_path / "house_tiny.csv"
    write_house_tiny(path)
    source = load_source(csv_settings(path, standardize=False, target="Price"))
    assert source.task == "regression"
    data = prepare(source, np.arange(4))
    assert data.spec.feature_names == ("NumRooms", "Alley_Pave", "Alley_nan")
    expected = [[3.0, 1, 0], [2.0, 0, 1], [4.0, 0, 1], [3.0, 0, 1]]
    assert data.train.x.tolist() == expected
    assert data.train.y.tolist() == [127500.0, 106000.0, 178100.0, 140000.0]
    assert data.spec.input_shape == (3,)


def test_statistics_come_from_the_training_rows_only():
    frame = pd.DataFrame({"a": [0.0, 2.0, np.nan, 100.0], "c": ["x", "y", None, "z"]})
    pre = TabularPreprocessor(standardize=False).fit(frame.iloc[:3])
    out = pre.transform(frame.iloc[2:]).numpy()
    assert out[0, 0] == pytest.approx(1.0)  # mean of the training rows 0 and 2, not of 100
    # category 'z' was never seen in training: all zeros in its one-hot columns
    assert out[1, 1:].tolist() == [0.0] * (out.shape[1] - 1)
    scaled = TabularPreprocessor(standardize=True).fit(frame.iloc[:2]).transform(frame)
    assert scaled[2, 0].item() == pytest.approx(0.0)  # missing -> the training mean -> 0
    assert scaled[3, 0].item() == pytest.approx((100 - 1) / 1)  # std of [0, 2] is 1


def test_pandas_string_dtype_categories(tmp_path):
    frame = pd.DataFrame({"color": pd.array(["red", "blue", None, "red"], dtype="string"),
                          "size": [1.0, 2.0, 3.0, 4.0], "label": ["a", "b", "a", "b"]})
    frame.to_csv(tmp_path / "colors.csv", index=False)
    source = load_source(csv_settings(tmp_path / "colors.csv", target="label"))
    data = prepare(source, np.arange(4))
    assert source.task == "binary"
    assert set(data.spec.feature_names) == {"size", "color_red", "color_blue", "color_nan"}


def test_gzip_no_header_and_target_by_index(tmp_path):
    rows = "\n".join(f"{i},{i * 2},{i % 2}" for i in range(40)) + "\n"
    with gzip.open(tmp_path / "rows.csv.gz", "wt") as stream:
        stream.write(rows)
    source = load_source(csv_settings(tmp_path / "rows.csv.gz", header=False, target=2))
    assert source.task == "binary"
    assert len(source) == 40
    assert list(source.features.columns) == ["0", "1"]


def test_rows_without_a_target_are_dropped_with_a_note(tmp_path):
    (tmp_path / "t.csv").write_text("x,y\n1,2.5\n2,\n3,7.5\n")
    source = load_source(csv_settings(tmp_path / "t.csv"))
    assert len(source) == 2 and "dropped 1 rows" in source.notes[0]


@pytest.mark.parametrize("name,task,features,classes", [
    ("digits", "multiclass", 64, 10), ("iris", "multiclass", 4, 3), ("wine", "multiclass", 13, 3),
    ("breast_cancer", "binary", 30, 2), ("diabetes", "regression", 10, 0),
])
def test_bundled_datasets_shapes_are_inferred(name, task, features, classes):
    settings = DataSettings(name=name, batch_size=8, val_fraction=0.2, shuffle=True, options={})
    source = load_source(settings)
    train, val = train_val_indices(source, 0.2, seed=0)
    data = prepare(source, train, val)
    assert data.spec.task == task
    assert data.spec.input_shape == (features,)
    assert data.spec.num_classes == classes
    assert len(data.train) + len(data.val) == len(source)


def test_validation_split_is_stratified():
    settings = DataSettings(name="breast_cancer", batch_size=8, val_fraction=0.25, shuffle=True, options={})
    source = load_source(settings)
    train, val = train_val_indices(source, 0.25, seed=3)
    assert not set(train) & set(val)
    overall = source.target.mean()
    assert abs(source.target[val].mean() - overall) < 0.01
    assert abs(source.target[train].mean() - overall) < 0.01


def test_synthetic_linear_follows_its_weights():
    settings = DataSettings(name="synthetic_linear", batch_size=8, val_fraction=0.0, shuffle=True,
                            options={"num_samples": 500, "weights": [2.0, -3.4], "bias": 4.2,
                                     "noise": 0.01, "seed": 0, "standardize": False})
    source = load_source(settings)
    x = source.features.to_numpy()
    fitted, *_ = np.linalg.lstsq(np.c_[x, np.ones(len(x))], source.target, rcond=None)
    assert fitted == pytest.approx([2.0, -3.4, 4.2], abs=0.01)


def test_target_column_missing_lists_the_columns(tmp_path):
    write_house_tiny(tmp_path / "h.csv")
    with pytest.raises(DltrainError, match="'Cost' is not a column of the CSV; columns are: NumRooms, Alley, Price"):
        load_source(csv_settings(tmp_path / "h.csv", target="Cost"))


# --------------------------------------------------------------------------- CSVs as learners bring them


def write_headerless(path, rows=759, seed=0):
    """The course's diabetes CSV, generated: no header, 8 numeric features, a 0/1 last column."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8)).round(3)
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    np.savetxt(path, np.c_[x, y], delimiter=",", fmt=["%.3f"] * 8 + ["%d"])
    return path


def test_header_auto_reads_a_headerless_file_whole_as_binary(tmp_path):
    source = load_source(csv_settings(write_headerless(tmp_path / "diabetes.csv"), header="auto"))
    assert len(source) == 759 and source.task == "binary" and source.class_names == ("0", "1")
    assert list(source.features.columns) == [str(i) for i in range(8)]
    assert source.notes[0].startswith("no header row found: columns named 0..8")
    assert "task binary read off the target '8'" in source.notes[1]
    assert source.reading == {"header": False, "target": "8", "task": "binary"}
    train, val = train_val_indices(source, 0.2, seed=0)
    assert (len(train), len(val)) == (607, 152)  # 606 when the first row was taken for a header


@pytest.mark.parametrize("text,header,columns", [
    ("hours,pass\n1,0\n2,0\n3,1\n", True, ["hours", "pass"]),
    ("2019,2020\n1,a\n2,b\n", True, ["2019", "2020"]),  # numbers above words name the columns
    ("1.5,,0\n2,3,1\n", False, ["0", "1", "2"]),  # an empty field is a missing number
])
def test_header_auto_finds_a_header_row(tmp_path, text, header, columns):
    from dltrain.data.tabular import read_csv_file

    (tmp_path / "t.csv").write_text(text)
    frame, found = read_csv_file({"path": str(tmp_path / "t.csv"), "header": "auto"})
    assert found is header and list(frame.columns) == columns


@pytest.mark.parametrize("values,task", [
    ([0, 1, 1], "binary"),  # the course's 3-row hours -> pass
    ([-1, 1, -1, 1], "binary"),
    ([0, 1, 2] * 3, "multiclass"),
    ([1, 2, 3, 4, 5] * 4, "multiclass"),
    ([-1, 0, 1] * 3, "regression"),  # negative integers are no class codes
    (list(range(21)) * 2, "regression"),  # more than 20 values
    ([127500, 106000, 178100, 140000], "regression"),  # each seen once: prices, not classes
    ([0.5, 1.0, 0.5, 1.0], "regression"),
    (["a", "b", "a"], "binary"),
])
def test_task_auto_rule(values, task):
    from dltrain.data.tabular import infer_task

    assert infer_task(pd.Series(values)) == task


def test_a_table_is_read_once_per_process(tmp_path, monkeypatch):
    from dltrain.data import tabular

    reads = []
    for name in ("_read_csv", "read_parquet_file"):
        original = getattr(tabular, name)
        monkeypatch.setattr(tabular, name, lambda *a, _f=original, **k: reads.append(a[0]) or _f(*a, **k))
    path = write_headerless(tmp_path / "d.csv", rows=40)
    for _ in range(3):  # folds, sweep points
        assert len(load_source(csv_settings(path, header="auto"))) == 40
    assert len(reads) == 1
    load_source(csv_settings(path, header=False))  # another way to read it
    write_headerless(path, rows=41)  # a changed file
    assert len(load_source(csv_settings(path, header="auto"))) == 41
    assert len(reads) == 3


def test_parquet_reads_as_its_csv(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, np.nan, 4.0], "city": ["a", "b", "a", None], "y": [0, 1, 0, 1]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    from_csv, from_parquet = (load_source(csv_settings(tmp_path / name, header="auto"))
                              for name in ("t.csv", "t.parquet"))
    assert from_parquet.task == from_csv.task == "binary"
    assert from_parquet.reading == from_csv.reading == {"header": True, "target": "y", "task": "binary"}
    assert np.array_equal(from_parquet.target, from_csv.target)
    index = np.arange(4)
    assert prepare(from_parquet, index).train.x.tolist() == prepare(from_csv, index).train.x.tolist()
    with pytest.raises(DltrainError, match="data.header=false is for CSV files"):
        load_source(csv_settings(tmp_path / "t.parquet", header=False))


@pytest.mark.slow
def test_a_headerless_csv_fits_as_binary_and_eval_and_predict_read_as_fit_did(cli, tmp_path):
    path = write_headerless(tmp_path / "diabetes.csv")
    result = cli("fit", "data=csv", f"data.path={path}", "trainer.epochs=2", "logger=none")  # no data setting
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "no header row found: columns named 0..8" in output and "(607 train / 152 val, binary" in output
    (run_dir,) = run_folders()
    assert json.loads((run_dir / "preprocessing.json").read_text())["data"] == {
        "header": False, "target": "8", "task": "binary"}
    assert read_metrics(run_dir)["best"]["val_accuracy"] > 0.85
    assert cli("eval", str(run_dir)).exit_code == 0
    assert json.loads((run_dir / "eval.json").read_text())["rows"] == 152
    np.savetxt(tmp_path / "new.csv", np.random.default_rng(1).normal(size=(5, 8)), delimiter=",")
    result = cli("predict", str(run_dir), f"input={tmp_path / 'new.csv'}")  # no header either, as in fit
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(run_dir / "predictions.csv")) == 5


def test_a_three_row_pass_csv_trains_binary_showing_w_and_b_every_epoch(cli, tmp_path):
    (tmp_path / "pass.csv").write_text("hours,pass\n1,0\n2,0\n3,1\n")
    result = cli("fit", "data=csv", "data.path=pass.csv", "model=logistic", "trainer.epochs=3", "logger=none")
    assert result.exit_code == 0, result.output
    assert "(2 train / 1 val, binary" in " ".join(result.output.split())
    rows = [line for line in result.output.splitlines() if line.split()[:1] in (["1"], ["2"], ["3"])]
    assert len(rows) == 3 and all(re.search(r"  w = \[-?\d\.\d{4}\], b = \[-?\d\.\d{4}\]$", r) for r in rows)
