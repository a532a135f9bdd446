"""The per-epoch metrics dltrain computes itself equal scikit-learn's on any input."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, r2_score

from dltrain.train.metrics import compute, macro_f1, r2

labels = st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=60)


@settings(max_examples=300, deadline=None)
@given(labels)
def test_macro_f1_equals_scikit_learn(pairs):
    truth, predicted = (np.array(column) for column in zip(*pairs))
    expected = f1_score(truth, predicted, average="macro", zero_division=0)
    assert abs(macro_f1(predicted, truth) - expected) < 1e-12


values = st.floats(-1e3, 1e3, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(values, values), min_size=2, max_size=60))
def test_r2_equals_scikit_learn(pairs):
    truth, predicted = (np.array(column) for column in zip(*pairs))
    ours, theirs = r2(predicted, truth), r2_score(truth, predicted)
    assert ours == theirs or abs(ours - theirs) < 1e-9  # equal infinities when the spread underflows


def test_compute_multiclass_uses_argmax_of_probabilities():
    scores = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1]])
    truth = np.array([0, 1, 2, 2])
    result = compute("multiclass", scores, truth)
    assert result["accuracy"] == 0.75
    assert abs(result["macro_f1"] - f1_score(truth, [0, 1, 2, 0], average="macro")) < 1e-12
