"""text_csv: CSV reading (.gz, quoted commas, no header), word and character tokens, and a
vocabulary built on the training rows only."""

import gzip

import numpy as np
import pytest
import torch

from dltrain.config import DataSettings
from dltrain.data import load_source, prepare
from dltrain.data.text import PAD, UNKNOWN, TextPreprocessor, generated_reviews
from dltrain.errors import DltrainError

ROWS = [
    ("text", "label"),
    ('"Great, really great, film"', "pos"),
    ('"Dull, slow and long"', "neg"),
    ("lovely acting", "pos"),
    ("awful plot", "neg"),
    ('"Fine, I suppose"', "pos"),
    ("zebra crossing", "neg"),
]


def settings(**options):
    return DataSettings(name="text_csv", batch_size=8, val_fraction=0.2, shuffle=True, options=options)


def write_csv(path, rows, header=True):
    lines = [",".join(row) for row in (rows if header else rows[1:])]
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".gz"):
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("file_name", ["reviews.csv", "reviews.csv.gz"])
def test_quoted_commas_stay_inside_the_text(tmp_path, file_name):
    source = load_source(settings(path=str(write_csv(tmp_path / file_name, ROWS))))
    assert list(source.features[:2]) == ["Great, really great, film", "Dull, slow and long"]
    assert source.task == "binary" and source.class_names == ("neg", "pos")
    assert source.kind == "tokens" and list(source.target) == [1, 0, 1, 0, 1, 0]


def test_columns_by_index_without_a_header(tmp_path):
    rows = [(label, text) for text, label in ROWS]
    path = write_csv(tmp_path / "plain.csv", rows, header=False)
    source = load_source(settings(path=str(path), header=False, text_column=1, label_column=0))
    assert len(source) == 6 and source.features[2] == "lovely acting"
    with pytest.raises(DltrainError, match="data.header=false gives the columns no names"):
        load_source(settings(path=str(path), header=False))


def test_vocabulary_comes_from_training_rows_only(tmp_path):
    source = load_source(settings(path=str(write_csv(tmp_path / "reviews.csv", ROWS))))
    data = prepare(source, np.arange(4), np.arange(4, 6))  # "fine", "zebra" appear in val only
    vocabulary = data.preprocessor.vocabulary
    assert vocabulary[PAD] == 0 and vocabulary[UNKNOWN] == 1
    assert "great" in vocabulary and "," in vocabulary
    assert "zebra" not in vocabulary and "fine" not in vocabulary
    assert data.spec.vocab_size == len(vocabulary) and data.spec.kind == "tokens"
    tokens, lengths = data.val.x
    assert lengths.tolist() == [4, 2]  # fine , i suppose / zebra crossing
    assert (tokens == 1).sum() == 5  # every val token but the comma is unknown in training
    train_tokens, train_lengths = data.train.x
    assert train_lengths.tolist() == [6, 5, 2, 2]
    assert train_tokens.shape == (4, 6) and (train_tokens[3, 2:] == 0).all()  # padded after the text


def test_character_tokens_min_freq_and_max_length():
    texts = np.asarray(["abca", "", "xyz abc"], dtype=object)
    chars = TextPreprocessor(level="char", max_length=5, lowercase=False).fit(texts)
    tokens, lengths = chars.transform(np.asarray(["ABca", "", "abcabcabc"], dtype=object))
    assert lengths.tolist() == [4, 1, 5]  # an empty text is one unknown token
    assert tokens[0, :2].tolist() == [1, 1]  # upper case was never seen
    assert tokens[1, 0] == 1
    frequent = TextPreprocessor(min_freq=2).fit(np.asarray(["a b", "a c", "a b d"], dtype=object))
    assert set(frequent.vocabulary) == {PAD, UNKNOWN, "a", "b"}
    assert list(frequent.vocabulary)[2] == "a"  # most frequent first


def test_numeric_labels_and_missing_labels(tmp_path):
    rows = [("text", "label"), ("good", "1"), ("bad", "0"), ("meh", ""), ("fine", "1"), ("poor", "0"),
            ("nice", "1"), ("sad", "0")]
    source = load_source(settings(path=str(write_csv(tmp_path / "n.csv", rows))))
    assert source.class_names == ("0", "1") and len(source) == 6 and source.task == "binary"
    assert source.notes[0] == "dropped 1 rows whose label is empty"


def test_generated_reviews_are_balanced_and_negation_flips_the_label():
    texts, labels = generated_reviews(400, seed=0)
    assert 150 < labels.count("positive") < 250
    negated = [(t, l) for t, l in zip(texts, labels) if " not " in f" {t} "]
    assert 60 < len(negated) < 180
    assert any(("good" in t or "great" in t) and l == "negative" for t, l in negated)
    default = load_source(settings())
    assert len(default) == 2000 and default.task == "binary"


@pytest.mark.parametrize("options, message", [
    ({"path": "missing.csv"}, "The CSV file 'missing.csv' does not exist"),
    ({"level": "byte"}, "data.level must be word or char"),
    ({"max_length": -1}, "data.max_length must be an integer of at least 0"),
    ({"text_column": "review"}, "data.text_column 'review' is not a column of the CSV; columns are: text, label"),
    ({"label_column": "text"}, "name the same column"),
])
def test_errors_name_the_setting(tmp_path, options, message):
    if "path" not in options:
        options = {"path": str(write_csv(tmp_path / "r.csv", ROWS)), **options}
    with pytest.raises(DltrainError, match=message):
        load_source(settings(**options))


def test_transform_gives_long_tensors():
    tokens, lengths = TextPreprocessor().fit(["a b"]).transform(["a b c"])
    assert tokens.dtype == torch.long and lengths.dtype == torch.long
