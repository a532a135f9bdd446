"""Text classification data: a CSV with a text column and a label column (or a generated
labelled set), tokenized by word or character, with a vocabulary built on the training rows."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

from dltrain.checks import seed_option
from dltrain.data import register_dataset
from dltrain.data.spec import Source
from dltrain.errors import DltrainError

PAD, UNKNOWN = "<pad>", "<unk>"  # indices 0 and 1 of every vocabulary
LEVELS = ("word", "char")
_WORD = re.compile(r"\w+|[^\w\s]")


class TextPreprocessor:
    """Tokens to indices. The vocabulary holds the padding token (0), the unknown token (1) and
    the training rows' tokens seen at least ``min_freq`` times (the ``max_vocab`` most frequent).
    ``transform`` returns (tokens, lengths): tokens (rows, longest) padded with 0 after each text,
    lengths the number of real tokens (at least 1: an empty text reads as one unknown token)."""

    def __init__(self, level: str = "word", lowercase: bool = True, max_length: int = 200,
                 min_freq: int = 1, max_vocab: int = 20000):
        self.level = level
        self.lowercase = lowercase
        self.max_length = max_length
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.vocabulary: dict[str, int] = {}
        self._longest = 1

    def tokenize(self, text: str) -> list[str]:
        text = text.lower() if self.lowercase else text
        tokens = list(text) if self.level == "char" else _WORD.findall(text)
        return tokens[: self.max_length] if self.max_length else tokens

    def fit(self, features, target=None) -> "TextPreprocessor":
        counts: Counter = Counter()
        longest = 1
        for text in features:
            tokens = self.tokenize(str(text))
            counts.update(tokens)
            longest = max(longest, len(tokens))
        kept = sorted((t for t, c in counts.items() if c >= self.min_freq), key=lambda t: (-counts[t], t))
        words = [PAD, UNKNOWN, *kept[: max(self.max_vocab - 2, 0)]]
        self.vocabulary = {word: index for index, word in enumerate(words)}
        self._longest = longest
        return self

    def encode(self, text: str) -> list[int]:
        unknown = self.vocabulary[UNKNOWN]
        return [self.vocabulary.get(token, unknown) for token in self.tokenize(text)] or [unknown]

    def transform(self, features):
        import torch

        encoded = [self.encode(str(text)) for text in features]
        lengths = torch.tensor([len(ids) for ids in encoded], dtype=torch.long)
        tokens = torch.zeros((len(encoded), int(lengths.max()) if len(encoded) else 1), dtype=torch.long)
        for row, ids in enumerate(encoded):
            tokens[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return tokens, lengths

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self._longest,)

    def state(self) -> tuple[dict, dict]:
        """The fitted state as data: (JSON-able options and vocabulary in index order, no arrays)."""
        return {"level": self.level, "lowercase": self.lowercase, "max_length": self.max_length,
                "min_freq": self.min_freq, "max_vocab": self.max_vocab,
                "vocabulary": sorted(self.vocabulary, key=self.vocabulary.__getitem__),
                "longest": self._longest}, {}

    @classmethod
    def from_state(cls, state) -> "TextPreprocessor":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader)."""
        preprocessor = cls(level=state.text("level", choices=LEVELS), lowercase=state.boolean("lowercase"),
                           max_length=state.integer("max_length", minimum=0),
                           min_freq=state.integer("min_freq", minimum=1),
                           max_vocab=state.integer("max_vocab", minimum=3))
        words = state.texts("vocabulary", unique=True)
        if words[:2] != [PAD, UNKNOWN] or len(words) > preprocessor.max_vocab:
            state.invalid("vocabulary", f"{PAD!r}, {UNKNOWN!r} and at most {preprocessor.max_vocab - 2} "
                                        f"more tokens (max_vocab)", words)
        preprocessor.vocabulary = {word: index for index, word in enumerate(words)}
        # fit cuts every text at max_length tokens (0: no limit)
        preprocessor._longest = state.integer("longest", minimum=1, maximum=preprocessor.max_length or None)
        return preprocessor


# --------------------------------------------------------------------------- the generated set

_SUBJECTS = ["the movie", "this film", "the food", "our trip", "the book", "the hotel", "the show",
             "this phone", "the concert", "the service", "my new job", "the game"]
_VERBS = ["was", "is", "felt", "seemed", "looked", "turned out"]
_INTENSIFIERS = ["", "", "really", "very", "quite", "truly", "so"]
_POSITIVE = ["good", "great", "wonderful", "excellent", "fun", "lovely", "amazing", "pleasant", "superb"]
_NEGATIVE = ["bad", "awful", "terrible", "boring", "poor", "dull", "horrible", "disappointing", "weak"]
_ENDINGS = ["", "", "", "to be honest", "overall", "in my opinion", "this time", "again"]


def generated_reviews(num_samples: int, seed: int) -> tuple[list[str], list[str]]:
    """Short reviews labelled positive or negative; a ``not`` before the adjective flips the
    label, so word order matters and a bag of words cannot reach 100%."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(num_samples):
        positive = bool(rng.integers(2))
        negated = rng.random() < 0.3
        adjective = rng.choice(_POSITIVE if positive != negated else _NEGATIVE)
        words = [rng.choice(_SUBJECTS), rng.choice(_VERBS), "not" if negated else "",
                 rng.choice(_INTENSIFIERS), adjective, rng.choice(_ENDINGS)]
        texts.append(" ".join(w for w in words if w))
        labels.append("positive" if positive else "negative")
    return texts, labels


# --------------------------------------------------------------------------- loading


def _column(frame, key, setting: str, header: bool):
    if not header and not (isinstance(key, int) and not isinstance(key, bool)):
        raise DltrainError(
            f"data.{setting}={key!r} names a column, but data.header=false gives the columns no names; "
            f"use a 0-based index such as data.{setting}=0."
        )
    from dltrain.data.tabular import pick_column

    return pick_column(frame, key, setting)


def _read_csv(options) -> tuple[list[str], "object", str, list[str], dict]:
    """The texts, their labels and the label column's name, the notes of reading the file and
    how it was read (Source.reading)."""
    from dltrain.data.tabular import header_notes, read_csv_file

    # Text stays text: no "NA" -> NaN guessing inside reviews; pandas handles quoted commas and .gz.
    frame, header = read_csv_file(options, dtype=str, keep_default_na=False)
    text_column = _column(frame, options.get("text_column", "text"), "text_column", header)
    label_column = _column(frame, options.get("label_column", "label"), "label_column", header)
    if text_column == label_column:
        raise DltrainError("data.text_column and data.label_column name the same column; pick two different columns.")
    labels = frame[label_column].where(frame[label_column].str.strip() != "")
    return (frame[text_column].tolist(), labels, str(label_column), header_notes(options, header, frame),
            {"header": header})


@register_dataset("text_csv", kind="tokens")
def load_text_csv(settings) -> Source:
    import pandas as pd

    from dltrain.data.tabular import encode_target, task_note

    options = settings.options
    level = options.get("level", "word")
    if level not in LEVELS:
        raise DltrainError(f"data.level must be word or char, got {level!r}.")
    numbers = {}
    for key, default, minimum in (("max_length", 200, 0), ("min_freq", 1, 1), ("max_vocab", 20000, 3)):
        number = options.get(key, default)
        if isinstance(number, bool) or not isinstance(number, int) or number < minimum:
            raise DltrainError(f"data.{key} must be an integer of at least {minimum}, got {number!r}.")
        numbers[key] = number
    lowercase = options.get("lowercase", True)
    if not isinstance(lowercase, bool):
        raise DltrainError(f"data.lowercase must be true or false, got {lowercase!r}.")

    path = options.get("path")
    notes, reading = [], {}
    if path in (None, "", "???"):
        num_samples = options.get("num_samples", 2000)
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 10:
            raise DltrainError(f"data.num_samples must be an integer of at least 10, got {num_samples!r}.")
        texts, label_list = generated_reviews(num_samples, seed_option(options))
        labels, label_name = pd.Series(label_list, dtype=object), "label"
    else:
        texts, labels, label_name, notes, reading = _read_csv(options)
        keep = labels.notna().to_numpy()
        if not keep.all():
            notes.append(f"dropped {int((~keep).sum())} rows whose label is empty")
            texts = [t for t, k in zip(texts, keep) if k]
            labels = labels[keep].reset_index(drop=True)
        if not texts:
            raise DltrainError("The text CSV has no rows with a label to train on.")
        numeric = pd.to_numeric(labels, errors="coerce")
        if numeric.notna().all():  # labels such as 0/1 or scores: numbers, not words
            labels = numeric
    codes, task, class_names = encode_target(labels, options.get("task", "auto"), label_name)
    if reading and options.get("task", "auto") == "auto":  # a file's labels (the generated ones are binary)
        notes.append(task_note(label_name, task))
    preprocessor_options = dict(level=level, lowercase=lowercase, **numbers)
    return Source(
        features=np.asarray(texts, dtype=object),
        target=codes,
        task=task,
        class_names=class_names,
        kind="tokens",
        make_preprocessor=lambda: TextPreprocessor(**preprocessor_options),
        notes=notes,
        reading={**reading, "task": task} if reading else {},
    )
