"""The saved preprocessing is data, never code: every preprocessor kind survives save and load
with an identical transform, the tabular transform equals the scikit-learn pipeline it replaced,
hostile files are refused in one sentence, a pickle is never read except by ``dltrain migrate
--trust``, and migrate converts an older dltrain's run so that eval gives the same result."""

from __future__ import annotations

import json
import os
import pickle
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import copy_run, run_folders
from dltrain.commands.migrate import migrate
from dltrain.data import Source, prepare
from dltrain.data.pixels import Pixels
from dltrain.data.preprocessing import (ARRAYS, FILE, LEGACY_PICKLE, load_preprocessing,
                                        save_preprocessing)
from dltrain.data.sequence import SeriesPreprocessor
from dltrain.data.tabular import TabularPreprocessor, _categories_as_text, _is_numeric
from dltrain.data.text import TextPreprocessor
from dltrain.data.vision import ImagePreprocessor
from dltrain.errors import DltrainError
from dltrain.train.staging import to_device

TRAIN = pd.DataFrame({
    "age": [22.0, np.nan, 35.0, 58.0, 41.0, 19.0],
    "rooms": [1, 2, 2, 3, 4, 2],  # integers
    "flat": [5.0, 5.0, 5.0, 5.0, 5.0, 5.0],  # constant: scale 1
    "unknown": [np.nan] * 6,  # no value in training
    "city": ["Paris", None, "Rome", "Paris", "Oslo", "Rome"],
    "owner": [True, False, True, True, False, False],
})
NEW = pd.DataFrame({  # missing values everywhere, an unseen category, a value where training had none
    "owner": [False, True, False, True],  # columns in another order
    "age": [np.nan, 30.0, 1e6, -4.0],
    "rooms": [np.nan, 7, 2, 0],
    "flat": [5.0, np.nan, 6.0, 4.0],
    "unknown": [3.0, np.nan, -1.0, 0.0],
    "city": ["Lima", None, "Paris", "Rome"],
    "extra": [1, 2, 3, 4],  # a column the model never saw is ignored
})


def legacy_tabular(frame: pd.DataFrame, standardize: bool) -> TabularPreprocessor:
    """A TabularPreprocessor as dltrain before this format fitted and pickled it (main at
    138c3e7): the same attributes around a fitted scikit-learn ColumnTransformer."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c in frame.columns if _is_numeric(frame[c])]
    categorical = [c for c in frame.columns if c not in numeric]
    if standardize:
        numeric_steps = make_pipeline(StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0,
                                                                      keep_empty_features=True))
    else:
        numeric_steps = SimpleImputer(strategy="mean", keep_empty_features=True)
    transformer = ColumnTransformer(
        [("numeric", numeric_steps, numeric),
         ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float32),
          categorical)],
        verbose_feature_names_out=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's mean of a column without values
        transformer.fit(_categories_as_text(frame, categorical))
    legacy = object.__new__(TabularPreprocessor)
    legacy.__dict__.update(standardize=standardize, _transformer=transformer, columns=list(frame.columns),
                           _categorical=categorical,
                           feature_names=[str(n) for n in transformer.get_feature_names_out()])
    return legacy


def legacy_transform(legacy, frame: pd.DataFrame) -> np.ndarray:
    values = legacy._transformer.transform(_categories_as_text(frame, legacy._categorical))
    return np.asarray(values, dtype=np.float32)


def saved_and_loaded(preprocessor, folder):
    save_preprocessing(folder, preprocessor)
    return load_preprocessing(folder)


def fitted_tabular(standardize=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scikit-learn's mean of the column without values
        return TabularPreprocessor(standardize).fit(TRAIN)


# ------------------------------------------------------------------------------ round trips


@pytest.mark.parametrize("standardize", [True, False])
def test_tabular_transform_equals_the_scikit_learn_pipeline_before_and_after_saving(tmp_path, standardize):
    reference = legacy_tabular(TRAIN, standardize)
    fitted = fitted_tabular(standardize)
    loaded = saved_and_loaded(fitted, tmp_path)
    assert fitted.feature_names == loaded.feature_names == reference.__dict__["feature_names"]
    assert fitted.feature_names[:4] == ["age", "rooms", "flat", "unknown"]
    assert "city_nan" in fitted.feature_names and "owner_True" in fitted.feature_names
    for frame in (TRAIN, NEW):
        expected = legacy_transform(reference, frame[TRAIN.columns])
        assert np.array_equal(fitted.transform(frame).numpy(), expected)  # bit for bit
        assert np.array_equal(loaded.transform(frame).numpy(), expected)
    out = loaded.transform(NEW).numpy()
    city = [i for i, n in enumerate(loaded.feature_names) if n.startswith("city_")]
    assert out[0, city].tolist() == [0.0] * len(city)  # 'Lima' never seen: all zeros
    assert out[1, loaded.feature_names.index("city_nan")] == 1.0  # missing is a category
    unknown = out[:, 3].tolist()
    assert unknown == ([0.0] * 4 if standardize else [3.0, 0.0, -1.0, 0.0])
    assert loaded.columns == list(TRAIN.columns) and loaded.input_shape == fitted.input_shape


def test_tabular_with_only_categories_or_only_numbers_round_trips(tmp_path):
    for index, frame in enumerate((TRAIN[["city", "owner"]], TRAIN[["age", "rooms"]])):
        for standardize in (True, False):
            fitted = TabularPreprocessor(standardize).fit(frame)
            loaded = saved_and_loaded(fitted, tmp_path / f"{index}{standardize}")
            assert np.array_equal(loaded.transform(NEW).numpy(), fitted.transform(NEW).numpy())
            assert np.array_equal(fitted.transform(NEW).numpy(),
                                  legacy_transform(legacy_tabular(frame, standardize), NEW[frame.columns]))


def text_preprocessor(level):
    texts = ["A great, great film!", "dull and long", "Lovely acting", "awful plot", "zebra"]
    return TextPreprocessor(level=level, max_length=12, min_freq=1, max_vocab=9).fit(texts)


def image_preprocessor(given_statistics, as_sequence=False):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (12, 3, 6, 5), generator=generator, dtype=torch.uint8)
    if given_statistics:
        return ImagePreprocessor((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)).fit(images), images
    return ImagePreprocessor(as_sequence=as_sequence).fit(images), images


def test_every_kind_transforms_identically_after_save_and_load(tmp_path):
    series = np.arange(40.0).reshape(8, 5) ** 1.5
    cases = {
        "text-word": (text_preprocessor("word"), np.asarray(["great zebra, new words", ""], dtype=object)),
        "text-char": (text_preprocessor("char"), np.asarray(["Great!", "xyz"], dtype=object)),
        "series": (SeriesPreprocessor().fit(series[:6]), series),
        "image-given": image_preprocessor(True),
        "image-measured-rows": image_preprocessor(False, as_sequence=True),
        "tabular": (fitted_tabular(), NEW),
    }
    for name, (fitted, features) in cases.items():
        folder = tmp_path / name
        loaded = saved_and_loaded(fitted, folder)
        assert type(loaded) is type(fitted) and loaded.input_shape == fitted.input_shape, name
        before, after = fitted.transform(features), loaded.transform(features)
        if isinstance(before, Pixels):  # images stay uint8 until a batch is made model inputs
            before, after = to_device(before, torch.device("cpu")), to_device(after, torch.device("cpu"))
        for a, b in zip(before if isinstance(before, tuple) else (before,),
                        after if isinstance(after, tuple) else (after,)):
            assert a.dtype == b.dtype and torch.equal(a, b), name
        document = json.loads((folder / FILE).read_text())
        assert document["format"] == "dltrain-preprocessing" and document["version"] == 3
        assert "Preprocessor" not in (folder / FILE).read_text()  # a kind, never a class path
        assert (folder / ARRAYS).exists() == (name == "tabular")
    word = cases["text-word"][0]
    assert load_preprocessing(tmp_path / "text-word").vocabulary == word.vocabulary
    assert load_preprocessing(tmp_path / "text-word").vocab_size == word.vocab_size
    image = load_preprocessing(tmp_path / "image-given")
    assert image.image_shape == (3, 6, 5) and tuple(image.mean) == (0.4914, 0.4822, 0.4465)


def test_saving_a_kind_without_arrays_removes_an_earlier_npz(tmp_path):
    save_preprocessing(tmp_path, fitted_tabular())
    save_preprocessing(tmp_path, SeriesPreprocessor().fit(np.ones((3, 4))))
    assert not (tmp_path / ARRAYS).exists() and isinstance(load_preprocessing(tmp_path), SeriesPreprocessor)


# ------------------------------------------------------------------------------ prepare


def test_prepare_applies_a_given_preprocessor_without_fitting(monkeypatch):
    frame = TRAIN[["age", "rooms", "city"]]
    source = Source(features=frame, target=np.array([0, 1, 0, 1, 0, 1]), task="binary",
                    class_names=("no", "yes"), make_preprocessor=lambda: TabularPreprocessor(True))
    fitted = TabularPreprocessor(True).fit(frame.iloc[:2])  # other rows than the ones prepared below
    monkeypatch.setattr(TabularPreprocessor, "fit", lambda *a, **k: pytest.fail("prepare refitted"))
    data = prepare(source, np.arange(6), preprocessor=fitted)
    assert data.preprocessor is fitted and torch.equal(data.train.x, fitted.transform(frame))
    assert data.spec.feature_names == tuple(fitted.feature_names) and "city_Oslo" not in fitted.feature_names
    with pytest.raises(DltrainError, match="is a SeriesPreprocessor, but this data needs a TabularPreprocessor"):
        prepare(source, np.arange(6), preprocessor=SeriesPreprocessor())


# ------------------------------------------------------------------------------ hostile files


def valid_folder(tmp_path, preprocessor=None):
    folder = tmp_path / "run"
    save_preprocessing(folder, preprocessor if preprocessor is not None else fitted_tabular())
    return folder


def rewrite(folder, change):
    document = json.loads((folder / FILE).read_text())
    change(document)
    (folder / FILE).write_text(json.dumps(document))


def write_arrays(folder, **arrays):
    np.savez(folder / ARRAYS, **arrays)


class PlantedCode:
    """Unpickled, it creates ``marker``: the proof that reading a file ran its code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def put(*keys, value):
    def change(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


def delete(*keys):
    def change(document):
        target = document
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
    return change


HOSTILE_DOCUMENTS = {
    "kind is a class path": (put("kind", value="dltrain.data.tabular.TabularPreprocessor"), "kind must be one of"),
    "kind is os.system": (put("kind", value="os.system"), "kind must be one of"),
    "no kind": (delete("kind"), "kind must be present"),
    "newer version": (put("version", value=4), "format version 4, from a newer dltrain"),
    "version as text": (put("version", value="1"), "version must be an integer"),
    "other format": (put("format", value="pickle"), "format must be one of"),
    "state is a list": (put("state", value=[1, 2]), "state must be a JSON object, got a list of 2 items"),
    "a nested _target_": (put("state", "_target_", value="os.system"), "state._target_ must be absent"),
    "standardize as text": (put("state", "standardize", value="yes"), "state.standardize must be true or false"),
    "no columns": (put("state", "columns", value=[]), "state.columns must be a list of one or more"),
    "column as text": (put("state", "columns", value=["age"]), "state.columns[0] must be a JSON object"),
    "column name a number": (put("state", "columns", 0, "name", value=7), "state.columns[0].name must be a string"),
    "column twice": (put("state", "columns", 1, "name", value="age"), "state.columns[1].name must be a name no other"),
    "column type unknown": (put("state", "columns", 0, "type", value="code"), "state.columns[0].type must be one of"),
    "category twice": (put("state", "columns", 4, "categories", value=["a", "a"]), "categories[1] must be a string not already"),
    "empty flag as text": (put("state", "columns", 3, "empty", value="true"), "state.columns[3].empty must be true or false"),
    "target transform unknown": (put("target", value={"transform": "exp", "mean": 0, "std": 1}),
                                 "target.transform must be one of 'none', 'standardize', 'log'"),
    "target std 0": (put("target", value={"transform": "standardize", "mean": 0, "std": 0}),
                     "target.std must be a finite number above 0"),
    "target with a stray key": (put("target", value={"transform": "none", "mean": 0, "std": 1, "code": "x"}),
                                "target.code must be absent"),
    "data task unknown": (put("data", value={"header": False, "task": "ranking"}),
                          "data.task must be one of 'regression', 'binary', 'multiclass'"),
    "data header as text": (put("data", value={"header": "no"}), "data.header must be true or false"),
    "data with a stray key": (put("data", value={"target": "8", "sep": ";"}), "data.sep must be absent"),
}


@pytest.mark.parametrize("name", list(HOSTILE_DOCUMENTS))
def test_a_hostile_json_is_refused_in_one_sentence(tmp_path, name):
    change, message = HOSTILE_DOCUMENTS[name]
    folder = valid_folder(tmp_path)
    rewrite(folder, change)
    with pytest.raises(DltrainError, match=re.escape(message)) as refused:
        load_preprocessing(folder)
    assert "\n" not in str(refused.value) and str(folder / FILE) in str(refused.value)


def series_folder(tmp_path):
    return valid_folder(tmp_path, SeriesPreprocessor().fit(np.arange(12.0).reshape(3, 4)))


@pytest.mark.parametrize("text,message", [
    ('{"format": "dltrain-preprocessing", "version": 1, "kind": "series", '
     '"state": {"window": 4, "mean": NaN, "std": 1}}', "NaN is not a number JSON allows"),
    ('{"format": "dltrain-preprocessing", "version": 1, "kind": "series", '
     '"state": {"window": 4, "mean": 1e400, "std": 1}}', "state.mean must be a finite number, got inf"),
    ('{"format": "dltrain-preprocessing", "version": 1, "kind": "series", '
     '"state": {"window": 4, "mean": 0, "std": -1}}', "state.std must be a finite number above 0"),
    ('{"format": "dltrain-preprocessing", "version": 1, "kind": "series", '
     '"state": {"window": 1000000000000000000000, "mean": 0, "std": 1}}', "state.window must be an integer from 1 to 2147483647"),
    ('{"format": "dltrain-preprocessing", "version": 1, "kind": "series", '
     '"state": {"window": ' + "9" * 5000 + ', "mean": 0, "std": 1}}', "is not valid JSON"),
    ("[" * 100000 + "]" * 100000, "is not valid JSON"),
    ('{"format": "dltrain-preprocessing"', "is not valid JSON"),
    ("\xff\xfe garbage", "is not valid JSON"),
    ("[1, 2]", "the file must be a JSON object"),
])
def test_hostile_json_text_is_refused_in_one_sentence(tmp_path, text, message):
    folder = series_folder(tmp_path)
    (folder / FILE).write_text(text, encoding="latin-1")
    with pytest.raises(DltrainError, match=message) as refused:
        load_preprocessing(folder)
    assert "\n" not in str(refused.value)


def test_hostile_text_and_image_states_are_refused(tmp_path):
    text = valid_folder(tmp_path / "text", text_preprocessor("word"))
    rewrite(text, put("state", "vocabulary", value=["the", "<pad>", "<unk>"]))
    with pytest.raises(DltrainError, match="state.vocabulary must be '<pad>', '<unk>' and at most 7 more"):
        load_preprocessing(text)
    rewrite(text, put("state", "vocabulary", value=["<pad>", "<unk>", 3]))
    with pytest.raises(DltrainError, match=r"state.vocabulary\[2\] must be a string, got 3"):
        load_preprocessing(text)
    image = valid_folder(tmp_path / "image", image_preprocessor(False)[0])
    rewrite(image, put("state", "shape", value=[3, 100000, 100000]))
    with pytest.raises(DltrainError, match=r"state.shape must be \[channels, height, width\] of at most"):
        load_preprocessing(image)
    rewrite(image, put("state", "shape", value=[2, 6, 5]))  # 3 means and stds for 2 channels
    with pytest.raises(DltrainError, match="state.mean must be a list of 2 items, got a list of 3 items"):
        load_preprocessing(image)


def test_hostile_arrays_are_refused_in_one_sentence_and_never_unpickled(tmp_path):
    marker = tmp_path / "ran"
    folder = valid_folder(tmp_path)
    with np.load(folder / ARRAYS) as saved:
        mean, scale = saved["mean"], saved["scale"]
    cases = [
        (dict(mean=mean.astype(np.float32), scale=scale), "'mean' must be 4 float64 values, got float32"),
        (dict(mean=mean[:3], scale=scale), "'mean' must be 4 float64 values, got float64 values of shape"),
        (dict(mean=mean.reshape(2, 2), scale=scale), "of shape \\(2, 2\\)"),
        (dict(mean=np.array([1.0, np.nan, 0, 0]), scale=scale), "'mean' must hold finite numbers"),
        (dict(mean=mean, scale=np.zeros(4)), "'scale' must hold finite numbers above 0"),
        (dict(mean=mean), "it lacks the array 'scale'"),
        (dict(mean=mean, scale=scale, code=np.arange(3.0)), "it holds 'code.npy', which is no array"),
        (dict(mean=np.zeros(10**6), scale=scale), "'mean' is larger than the 4 values"),
        (dict(mean=np.array([PlantedCode(marker)] * 4, dtype=object), scale=scale), "'mean' cannot be read"),
    ]
    for arrays, message in cases:
        write_arrays(folder, **arrays)
        with pytest.raises(DltrainError, match=message) as refused:
            load_preprocessing(folder)
        assert "\n" not in str(refused.value) and str(folder / ARRAYS) in str(refused.value)
    assert not marker.exists()
    (folder / ARRAYS).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DltrainError, match="is not a numpy .npz archive"):
        load_preprocessing(folder)
    (folder / ARRAYS).unlink()
    with pytest.raises(DltrainError, match=f"the file is missing, but {FILE} beside it needs its arrays"):
        load_preprocessing(folder)


def test_links_pipes_and_folders_are_not_read(tmp_path):
    folder = valid_folder(tmp_path)
    elsewhere = valid_folder(tmp_path / "elsewhere")
    (folder / FILE).unlink()
    (folder / FILE).symlink_to(elsewhere / FILE)
    with pytest.raises(DltrainError, match="is a symbolic link"):
        load_preprocessing(folder)
    (folder / FILE).unlink()
    os.mkfifo(folder / FILE)  # reading a pipe would wait forever
    with pytest.raises(DltrainError, match="is not a regular file"):
        load_preprocessing(folder)
    (folder / FILE).unlink()
    (folder / FILE).mkdir()
    with pytest.raises(DltrainError, match="is not a regular file"):
        load_preprocessing(folder)
    (folder / FILE).rmdir()
    with pytest.raises(DltrainError, match="has no preprocessing.json"):
        load_preprocessing(folder)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12)


def paths_of(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from paths_of(child, (*prefix, index))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_changed_value_loads_or_is_one_sentence(tmp_path_factory, data):
    """Replace any value of any kind's saved JSON (or drop a key): loading gives a preprocessor
    whose transform works or refuses in one sentence, or a one-sentence refusal; nothing else."""
    kind = data.draw(st.sampled_from(["tabular", "text", "series", "image"]))
    fitted, features = {"tabular": lambda: (fitted_tabular(), NEW),
                        "text": lambda: (text_preprocessor("word"), np.asarray(["great zebra"], dtype=object)),
                        "series": lambda: (SeriesPreprocessor().fit(np.ones((2, 3))), np.ones((2, 3))),
                        "image": lambda: image_preprocessor(True)}[kind]()
    folder = tmp_path_factory.mktemp("fuzz")
    save_preprocessing(folder, fitted)
    document = json.loads((folder / FILE).read_text())
    path = data.draw(st.sampled_from(list(paths_of(document))[1:]))
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    (folder / FILE).write_text(json.dumps(document))
    try:
        loaded = load_preprocessing(folder)
        loaded.transform(features)
    except DltrainError as refused:
        assert "\n" not in str(refused)


# ------------------------------------------------------------------------------ pickles and migrate


def test_a_legacy_pickle_is_refused_with_the_migrate_command_and_never_read(tmp_path):
    marker = tmp_path / "ran"
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LEGACY_PICKLE).write_bytes(pickle.dumps(PlantedCode(marker)))
    with pytest.raises(DltrainError, match=f"re-save it as data with: dltrain migrate {folder} --trust"):
        load_preprocessing(folder)
    assert not marker.exists()


def legacy_cv_folder(root):
    """A cv folder as an older dltrain left it: a pickle in each fold and in its refit run."""
    pickles = {
        "fold_0": legacy_tabular(TRAIN.iloc[:4], True),
        "fold_1": legacy_tabular(TRAIN.iloc[2:], False),
        "refit": text_preprocessor("word"),
        "refit/nested_series": SeriesPreprocessor().fit(np.arange(8.0).reshape(2, 4)),
        "fold_2": image_preprocessor(False, as_sequence=True)[0],
    }
    for name, preprocessor in pickles.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / LEGACY_PICKLE).write_bytes(pickle.dumps(preprocessor))
    return pickles


def test_migrate_needs_trust_then_converts_every_run_folder_below(cli, tmp_path):
    root = tmp_path / "cv"
    pickles = legacy_cv_folder(root)
    marker = tmp_path / "ran"
    (root / "fold_3").mkdir()
    (root / "fold_3" / LEGACY_PICKLE).write_bytes(pickle.dumps(PlantedCode(marker)))

    result = cli("migrate", str(root))
    assert result.exit_code == 2 and "reading a pickle runs whatever code the file holds" in result.output
    assert "pass --trust only for run folders you made yourself" in result.output
    assert not marker.exists() and len(list(root.rglob(LEGACY_PICKLE))) == 6

    result = cli("migrate", str(root), "--trust")
    assert result.exit_code == 2  # fold_3's pickle is code, not preprocessing: converted up to it
    assert marker.exists()  # --trust means the user vouched for it: it ran
    assert "holds a _io.TextIOWrapper, not dltrain's fitted preprocessing" in " ".join(result.output.split())
    (root / "fold_3" / LEGACY_PICKLE).unlink()

    converted = [line for line in result.output.splitlines() if line.startswith("Converted")]
    assert len(converted) == 3 and "fold_0" in converted[0]  # the folds before fold_3, in order

    result = cli("migrate", str(root), "--trust")
    assert result.exit_code == 0, result.output
    assert "2 run folder(s) converted" in result.output  # refit and the run inside it
    assert not list(root.rglob(LEGACY_PICKLE))
    for name, legacy in pickles.items():
        loaded = load_preprocessing(root / name)
        if name.startswith("fold_") and name != "fold_2":
            assert np.array_equal(loaded.transform(NEW).numpy(), legacy_transform(legacy, NEW[TRAIN.columns]))
            assert loaded.feature_names == legacy.__dict__["feature_names"]
        else:
            assert loaded.state() == legacy.state()
    assert "nothing to convert" in cli("migrate", str(root), "--trust").output
    assert cli("migrate", str(tmp_path / "nowhere"), "--trust").exit_code == 2


def test_migrate_refuses_a_damaged_pickle_in_one_sentence(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LEGACY_PICKLE).write_bytes(b"\x80\x05 not a pickle")

    class Out:
        def print(self, *args, **kwargs):
            pass

    with pytest.raises(DltrainError, match="cannot be unpickled"):
        migrate(str(folder), True, Out())
    assert (folder / LEGACY_PICKLE).exists() and not (folder / FILE).exists()


# ------------------------------------------------------------------------------ through the CLI


@pytest.fixture
def iris_run(iris_fit_run):
    copy_run(iris_fit_run)
    (run_dir,) = run_folders()
    return run_dir


def as_legacy_run(run_dir):
    """The run folder as an older dltrain wrote it: its preprocessing fitted the old way on the
    run's own training rows and pickled, and no preprocessing.json."""
    from omegaconf import OmegaConf

    from dltrain.config import read_settings
    from dltrain.data import load_source
    from dltrain.data.split import take, train_val_indices
    from dltrain.train.checkpoint import load_checkpoint

    settings = read_settings(OmegaConf.create(load_checkpoint(run_dir / "best.pt")["config"]))
    source = load_source(settings.data)
    train_index, _ = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    legacy = legacy_tabular(take(source.features, train_index), settings.data.options.get("standardize", True))
    (run_dir / FILE).unlink()
    (run_dir / ARRAYS).unlink()
    (run_dir / LEGACY_PICKLE).write_bytes(pickle.dumps(legacy))


@pytest.mark.slow
def test_eval_and_predict_never_read_a_planted_pickle(cli, iris_run, tmp_path):
    marker = tmp_path / "ran"
    (iris_run / FILE).unlink()
    (iris_run / ARRAYS).unlink()
    (iris_run / LEGACY_PICKLE).write_bytes(pickle.dumps(PlantedCode(marker)))
    pd.DataFrame({"sepal length (cm)": [5.0]}).to_csv(tmp_path / "rows.csv", index=False)
    for command in (["eval", str(iris_run)], ["eval", str(iris_run / "last.pt")],
                    ["predict", str(iris_run), f"input={tmp_path / 'rows.csv'}"]):
        result = cli(*command)
        assert result.exit_code == 2, result.output
        assert f"dltrain migrate {iris_run} --trust" in " ".join(result.output.split())
        assert "Traceback" not in result.output
    assert not marker.exists()


@pytest.mark.slow
def test_migrate_converts_an_older_run_and_eval_gives_the_same_result(cli, iris_run):
    assert cli("eval", str(iris_run)).exit_code == 0
    before = json.loads((iris_run / "eval.json").read_text())
    as_legacy_run(iris_run)
    result = cli("eval", str(iris_run))
    assert result.exit_code == 2 and "dltrain migrate" in result.output
    result = cli("migrate", str(iris_run), "--trust")
    assert result.exit_code == 0, result.output
    assert "1 run folder(s) converted" in result.output and not (iris_run / LEGACY_PICKLE).exists()
    assert cli("eval", str(iris_run)).exit_code == 0
    after = json.loads((iris_run / "eval.json").read_text())
    assert after["metrics"] == before["metrics"] and after["rows"] == before["rows"] == 30
