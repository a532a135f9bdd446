"""``dltrain model``: the per-layer table from one forward pass on the configured data."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltrain.commands.model_summary import summarize


def _rows(summary) -> dict:
    return {layer.name: layer for layer in summary.layers}


def test_mlp_on_iris_shows_each_layers_output_and_parameters(cli):
    result = cli("model", "data=iris", "data.batch_size=16", "model.hidden_sizes=[8]")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    first = next(line for line in lines if "layers.1 " in line)
    assert "Linear" in first and "(16, 8)" in first and "40" in first  # 4 x 8 + 8
    last = next(line for line in lines if line.strip("│ ").startswith("total"))
    assert "(16, 3)" in last and "67" in last  # 40 + 8 x 3 + 3
    assert "67 parameters, 67 trainable, 0 frozen" in result.output
    assert not Path("outputs").exists()  # it writes no run folder


def test_cnn_on_digit_images_has_one_row_per_leaf_layer_and_the_totals_add_up():
    summary = summarize(["model=cnn", "data=digits_images", "data.batch_size=5"])
    rows = _rows(summary)
    assert summary.input_shape == ((5, 1, 8, 8),)
    assert rows["features.0"].kind == "Conv2d" and rows["features.0"].output_shape[:2] == (5, 10)
    assert rows["head.1"].output_shape == (5, 10)
    assert summary.output_shape == (5, 10)
    assert sum(layer.parameters for layer in summary.layers) == summary.total == summary.trainable


def test_lstm_row_shows_the_sequence_output_of_the_recurrent_layer():
    summary = summarize(["model=lstm", "data=digits_images", "data.as_sequence=true", "data.batch_size=4",
                         "model.hidden_size=6"])
    rnn = _rows(summary)["rnn"]
    assert rnn.kind == "LSTM" and rnn.output_shape == (4, 8, 6)  # (batch, 8 rows as steps, hidden)
    assert rnn.parameters == 4 * 6 * (8 + 6) + 2 * 4 * 6
    assert summary.output_shape == (4, 10)


@pytest.mark.parametrize("model", ["resnet", "inception"])
def test_residual_and_inception_models_summarize(model):
    summary = summarize([f"model={model}", "data=digits_images", "data.batch_size=3"])
    assert all(layer.output_shape is not None for layer in summary.layers)
    assert sum(layer.parameters for layer in summary.layers) == summary.total
    assert summary.output_shape == (3, 10)


def test_a_bad_override_is_one_sentence(cli):
    result = cli("model", "model=nope")
    assert result.exit_code == 2
    assert "Unknown model 'nope'" in result.output
