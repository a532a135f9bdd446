"""trainer.threads: auto gives a small model one intra-op thread and a large one torch's default;
a number is applied as given; a bad value is one sentence."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.config import compose
from dltrain.errors import DltrainError
from dltrain.train import threads


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def tiny_mlp():  # the default fit's MLP on digits: 64-128-64-10
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.1), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def big_conv_net():
    return nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(64, 10))


def torch_default() -> int:
    threads.apply_threads(2, tiny_mlp(), torch.zeros(4, 64), 64)  # records torch's default first
    torch.set_num_threads(threads._TORCH_DEFAULT[0])  # and puts it back: 2 is not the default everywhere
    return threads._TORCH_DEFAULT[0]


def test_auto_picks_one_thread_for_a_tiny_mlp():
    model = tiny_mlp()
    assert threads.choose_threads("auto", model, torch.zeros(8, 64), 64) == 1
    note = threads.apply_threads("auto", model, torch.zeros(8, 64), 64)
    assert torch.get_num_threads() == 1 and note.startswith("threads=1 (auto:")


def test_auto_keeps_torchs_default_for_a_big_conv_net():
    default = torch_default()
    model = big_conv_net().train()
    running_mean = model[1].running_mean.clone()
    assert threads.choose_threads("auto", model, torch.zeros(2, 3, 32, 32), 64) == torch.get_num_threads()
    threads.apply_threads(1, model, None, 64)
    # each run (fold, sweep point) chooses from torch's default, not from the previous run's choice
    threads.apply_threads("auto", model, torch.zeros(2, 3, 32, 32), 64)
    assert torch.get_num_threads() == default
    # counting ran the model in eval mode: no batch-norm statistics moved, the mode is kept
    assert model.training and torch.equal(model[1].running_mean, running_mean)


def test_forward_macs_counts_linear_conv_and_lstm_layers():
    assert threads.forward_macs(nn.Linear(10, 3), torch.zeros(4, 10)) == 4 * 3 * 10
    assert threads.forward_macs(nn.Conv2d(2, 5, 3), torch.zeros(1, 2, 6, 6)) == 5 * 4 * 4 * 2 * 9
    assert threads.forward_macs(nn.LSTM(7, 11, batch_first=True), torch.zeros(2, 3, 7)) == 2 * 3 * 4 * 11 * 18


def test_a_number_is_applied_as_given():
    note = threads.apply_threads(1, big_conv_net(), None, 64)
    assert torch.get_num_threads() == 1 and note == "threads=1 (trainer.threads)"
    assert compose(["trainer.threads=3"]).trainer.threads == 3


def test_auto_off_the_cpu_keeps_torchs_default_without_running_the_model():
    default = torch_default()
    assert threads.choose_threads("auto", tiny_mlp(), None, 64, device="cuda") == default


@pytest.mark.parametrize("bad", ["0", "-2", "many", "1.5", "true"])
def test_a_bad_value_is_one_sentence(bad):
    with pytest.raises(DltrainError) as error:
        compose([f"trainer.threads={bad}"])
    assert str(error.value).startswith("trainer.threads must be auto or a whole number of at least 1, got ")


def test_a_fit_applies_the_setting(cli):
    result = cli("fit", "data=iris", "trainer.epochs=1", "trainer.threads=1", "logger=none")
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == 1
