"""The one prediction-file schema, for cross-validation folds (val/test/out-of-fold
predictions) and ``dltrain predict``: a key column (``index`` of the row, or ``input``), the
``target`` when known, the ``prediction`` (a value, or the predicted class by name) and, for
classifiers, one ``probability_<class>`` column per class."""

from __future__ import annotations

PREDICTION = "prediction"
PROBABILITY = "probability_"


def prediction_frame(task: str, class_names, scores, *, keys, key: str = "index", target=None):
    """A DataFrame of predictions for rows ``keys`` (named ``key``); ``scores`` as the objective
    gives them (values, the positive class's probability, or every class's probabilities)."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({key: np.asarray(keys)})
    scores = np.asarray(scores, dtype=np.float64)
    if task == "regression":
        if target is not None:
            frame["target"] = np.asarray(target, dtype=np.float64)
        frame[PREDICTION] = scores
        return frame
    probabilities = np.column_stack([1 - scores, scores]) if task == "binary" else scores
    if target is not None:
        frame["target"] = [class_names[c] for c in np.asarray(target, dtype=np.int64)]
    frame[PREDICTION] = [class_names[c] for c in probabilities.argmax(axis=1)]
    for j, name in enumerate(class_names):
        frame[f"{PROBABILITY}{name}"] = probabilities[:, j]
    return frame


def read_predictions(path):
    import pandas as pd

    return pd.read_csv(path, dtype={"target": object, PREDICTION: object}, keep_default_na=False)


def scores_of(frame, task: str, class_names):
    """(scores, encoded targets) back from a prediction frame, as metrics.compute takes them."""
    import numpy as np

    if task == "regression":
        return (frame[PREDICTION].to_numpy(dtype=np.float64), frame["target"].to_numpy(dtype=np.float64))
    lookup = {name: i for i, name in enumerate(class_names)}
    targets = np.array([lookup[str(t)] for t in frame["target"]], dtype=np.int64)
    if task == "binary":
        return frame[f"{PROBABILITY}{class_names[1]}"].to_numpy(dtype=np.float64), targets
    return frame[[f"{PROBABILITY}{name}" for name in class_names]].to_numpy(dtype=np.float64), targets
