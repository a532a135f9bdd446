"""time_series: windows of past values -> the value horizon steps later, from a CSV column or
the generated series, standardized with the training windows' statistics."""

import numpy as np
import pytest
import torch

from dltrain.config import DataSettings
from dltrain.data import load_source, prepare
from dltrain.data.sequence import windows
from dltrain.errors import DltrainError


def settings(**options):
    options = {"target_transform": "standardize", **options}  # conf/data/time_series.yaml's
    return DataSettings(name="time_series", batch_size=8, val_fraction=0.2, shuffle=True, options=options)


def test_windows_pair_past_values_with_a_later_value():
    features, target = windows(np.arange(10.0), window=3, horizon=2)
    assert features.tolist()[:2] == [[0, 1, 2], [1, 2, 3]]
    assert target.tolist() == [4, 5, 6, 7, 8, 9]


def test_csv_column_becomes_a_regression_sequence(tmp_path):
    path = tmp_path / "sales.csv.gz"
    frame_text = "month,sales\n" + "\n".join(f"2020-{i:02d},{10 + i}" for i in range(1, 41))
    import gzip

    with gzip.open(path, "wt") as handle:
        handle.write(frame_text)
    source = load_source(settings(path=str(path), column="sales", window=5))
    assert source.task == "regression" and source.kind == "sequence" and len(source) == 35
    assert source.features[0].tolist() == [11, 12, 13, 14, 15] and source.target[0] == 16
    data = prepare(source, np.arange(28), np.arange(28, 35))
    assert data.spec.input_shape == (5, 1) and data.train.x.shape == (28, 5, 1)
    assert data.train.x.dtype == torch.float32 and abs(float(data.train.x.mean())) < 1e-5
    assert data.spec.target_std > 1  # the target is standardized for training, metrics undo it


def test_generated_series_by_default():
    source = load_source(settings(window=24))
    assert source.features.shape == (1000 - 24, 24)


@pytest.mark.parametrize("options, rows, message", [
    ({"column": "price"}, "a,b\n1,2\n", "data.column 'price' is not a column of the CSV; columns are: a, b"),
    ({"column": "b"}, "a,b\n1,2\n3,x\n", "The column 'b' holds 1 missing or non-numeric values"),
    ({"window": 5}, "a\n1\n2\n3\n", "too few for data.window=5"),
    ({"window": 0}, "a\n1\n", "data.window must be a positive integer"),
])
def test_errors_name_the_setting(tmp_path, options, rows, message):
    path = tmp_path / "series.csv"
    path.write_text(rows)
    with pytest.raises(DltrainError, match=message):
        load_source(settings(path=str(path), **options))


def test_time_series_validation_is_the_latest_windows_not_a_shuffle():
    from dltrain.config import DataSettings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices

    source = load_source(DataSettings(name="time_series", batch_size=8, val_fraction=0.2,
                                      shuffle=True, options={}))
    train, val = train_val_indices(source, 0.2, seed=0)
    assert train.max() < val.min()  # no training window comes after (or overlaps) validation
    assert len(val) == round(len(source) * 0.2)


def test_a_headerless_series_csv_is_all_data_and_the_banner_says_so(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("\n".join(str(10 + i) for i in range(30)) + "\n")  # one column, no header row
    from dltrain.config import compose, read_settings

    source = load_source(read_settings(compose(["data=time_series", f"data.path={path}", "data.window=5"])).data)
    assert len(source) == 25 and source.features[0].tolist() == [10, 11, 12, 13, 14]
    assert source.notes == ["no header row found: columns named 0..0 (the first row is numbers, as are the rows "
                            "below; data.header=true if it names the columns)"]
    assert source.reading == {"header": False}
