"""lstm (and gru, rnn): packed batches make predictions independent of padding; tokens, image
rows and time-series windows as inputs; training from the CLI on generated text and series."""

import pytest
import torch

from conftest import read_metrics, run_folders
from dltrain.data.spec import DataSpec
from dltrain.errors import DltrainError
from dltrain.models import create_model

TOKENS = DataSpec(task="multiclass", input_shape=(12,), kind="tokens", num_classes=3, vocab_size=30)


@pytest.mark.parametrize("options", [
    {},
    {"cell": "gru", "bidirectional": True},
    {"cell": "rnn", "num_layers": 2},
    {"num_layers": 2, "bidirectional": True, "dropout": 0.2},
])
def test_padding_never_changes_a_prediction(options):
    torch.manual_seed(0)
    model = create_model("lstm", TOKENS, 3, hidden_size=16, embedding_dim=8, **options).eval()
    lengths = torch.tensor([5, 1, 9, 3])
    tokens = torch.zeros(4, 9, dtype=torch.long)
    for row, length in enumerate(lengths):
        tokens[row, :length] = torch.randint(2, 30, (int(length),))
    with torch.no_grad():
        reference = model(tokens, lengths)
        # Longer padding, and junk (not 0) in the padded positions: both must be ignored.
        padded = torch.cat([tokens, torch.zeros(4, 7, dtype=torch.long)], dim=1)
        junk = padded.clone()
        for row, length in enumerate(lengths):
            junk[row, length:] = torch.randint(2, 30, (16 - int(length),))
        # Each row alone (no padding at all) gives the same answer as in the batch.
        alone = torch.cat([model(tokens[row:row + 1, :length], lengths[row:row + 1])
                           for row, length in enumerate(lengths)])
        assert torch.allclose(model(padded, lengths), reference, atol=1e-6)
        assert torch.allclose(model(junk, lengths), reference, atol=1e-6)
        assert torch.allclose(alone, reference, atol=1e-6)
        # Without lengths the junk would be read: the test above is not vacuous.
        assert not torch.allclose(model(junk), reference, atol=1e-3)



@pytest.mark.parametrize("options", [
    {}, {"cell": "gru", "num_layers": 3}, {"bidirectional": True}, {"cell": "rnn", "bidirectional": True},
    {"num_layers": 2, "bidirectional": True, "dropout": 0.2},
], ids=["lstm", "gru-3-layers", "bidirectional", "rnn-bidirectional", "bidirectional-2-layers"])
def test_the_padded_path_export_traces_gives_the_packed_outputs(options):
    """dltrain export traces padded(): no packing, and the same outputs for every text whatever
    its padding, in both directions and every layer (junk in the padded steps included)."""
    torch.manual_seed(0)
    model = create_model("lstm", TOKENS, 3, hidden_size=6, embedding_dim=4, **options).eval()
    lengths = torch.tensor([12, 1, 5, 9, 2])
    tokens = torch.randint(2, 30, (5, 12))  # past each text's length: junk, as padding may hold
    with torch.no_grad():
        assert torch.allclose(model.padded()(tokens, lengths), model(tokens, lengths), atol=1e-6)
    image = DataSpec(task="multiclass", input_shape=(1, 8, 8), kind="image", num_classes=10)
    on_rows = create_model("lstm", image, 10, hidden_size=4)
    assert on_rows.padded() is on_rows  # images and series are never packed

def test_numeric_sequences_with_lengths_are_packed_too():
    spec = DataSpec(task="regression", input_shape=(10, 2), kind="sequence")
    model = create_model("lstm", spec, 1, hidden_size=8).eval()
    x, lengths = torch.randn(3, 10, 2), torch.tensor([10, 4, 7])
    with torch.no_grad():
        reference = model(x, lengths)
        x[1, 4:] = 100.0
        x[2, 7:] = -100.0
        assert torch.allclose(model(x, lengths), reference, atol=1e-6)
    assert reference.shape == (3, 1)


def test_images_are_read_row_by_row_like_their_sequence_view():
    image = DataSpec(task="multiclass", input_shape=(3, 8, 6), kind="image", num_classes=10)
    rows = DataSpec(task="multiclass", input_shape=(8, 18), kind="sequence", num_classes=10)
    torch.manual_seed(0)
    on_images = create_model("lstm", image, 10, hidden_size=8).eval()
    on_rows = create_model("lstm", rows, 10, hidden_size=8).eval()
    on_rows.load_state_dict(on_images.state_dict())
    x = torch.randn(2, 3, 8, 6)
    as_rows = x.permute(0, 2, 1, 3).flatten(2)  # what data.as_sequence=true produces
    with torch.no_grad():
        assert torch.allclose(on_images(x), on_rows(as_rows), atol=1e-6)


def test_bidirectional_concatenates_both_directions():
    model = create_model("lstm", TOKENS, 3, hidden_size=16, bidirectional=True)
    assert model.head.in_features == 32


@pytest.mark.parametrize("options, message", [
    ({"cell": "transformer"}, "model.cell must be one of lstm, gru, rnn"),
    ({"hidden_size": 0}, "model.hidden_size must be a positive integer"),
    ({"bidirectional": "yes"}, "model.bidirectional must be true or false"),
])
def test_bad_settings_are_one_sentence(options, message):
    with pytest.raises(DltrainError, match=message):
        create_model("lstm", TOKENS, 3, **options)


def test_lstm_refuses_tabular_data_and_names_the_sequence_views(cli):
    result = cli("fit", "model=lstm", "data=digits", "trainer.epochs=1")
    assert result.exit_code == 2
    assert "model=lstm needs text (token) data (data=text_csv)" in result.output
    assert "data.as_sequence=true" in result.output
    assert "but this data is tabular data" in result.output


def _fit(cli, *overrides) -> dict:
    result = cli("fit", "model=lstm", "trainer.progress=false", *overrides)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders()
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "finished"
    return metrics


@pytest.mark.slow
def test_lstm_reads_digits_row_by_row(cli):
    # data=digits is tabular by default; its sequence view is 8 steps of 8 pixels.
    metrics = _fit(cli, "data=digits", "data.as_sequence=true", "data.batch_size=128", "trainer.epochs=6",
                   "optimizer.lr=0.01", "model.hidden_size=32")
    assert metrics["best"]["val_accuracy"] >= 0.85  # chance 0.1


@pytest.mark.slow
def test_gru_forecasts_the_generated_series(cli):
    metrics = _fit(cli, "data=time_series", "model.cell=gru", "model.hidden_size=32",
                   "data.batch_size=64", "trainer.epochs=6", "optimizer.lr=0.01")
    assert metrics["task"] == "regression"
    # Validated on the series' latest windows (a forecast), not on shuffled neighbours.
    assert metrics["best"]["val_r2"] >= 0.8
