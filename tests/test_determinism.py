"""trainer.deterministic=true (issue 17 item 3): torch's deterministic algorithms, cuDNN's benchmark off and
CUBLAS_WORKSPACE_CONFIG while a fit trains, every global setting restored afterwards; settings that cannot
be deterministic and an op that has no deterministic implementation refused in one sentence."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch

from conftest import run_folders
from dltrain.config import compose, read_settings
from dltrain.errors import DltrainError
from dltrain.train.determinism import CUBLAS, deterministic

ON = SimpleNamespace(deterministic=True, compile=False, compile_backend="inductor")

# put_ (accumulate=False) has no deterministic implementation, on the CPU too. The model uses it from its
# second training step on (with data.batch_size=0 the second epoch), so that the run has a checkpoint
# and keeps its folder, and the forward pass trainer.threads=auto measures (in eval mode) never meets it.
PUT_NET = '''
import torch
from torch import nn


class PutNet(nn.Module):
    def __init__(self, in_features, output_size):
        super().__init__()
        self.linear = nn.Linear(in_features, output_size)
        self.steps = 0

    def forward(self, x):
        out = self.linear(x.flatten(1))
        if self.training:
            self.steps += 1
            if self.steps > 1:
                out = out.clone().put_(torch.tensor([0]), out.new_zeros(1))
        return out
'''


def test_the_block_sets_torch_deterministic_and_restores_what_it_found(monkeypatch):
    monkeypatch.delenv(CUBLAS, raising=False)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with deterministic(ON):
            assert torch.are_deterministic_algorithms_enabled()
            assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
            assert os.environ[CUBLAS] == ":4096:8"
            with pytest.raises(DltrainError) as refused:
                with deterministic(ON):  # nested, as a fit's block holds its trainer's
                    torch.zeros(3).put_(torch.tensor([0]), torch.ones(1))
            assert torch.are_deterministic_algorithms_enabled()  # the inner block restored the outer's
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
        assert CUBLAS not in os.environ
    finally:
        torch.backends.cudnn.benchmark = benchmark
    message = str(refused.value)
    assert message.count(". ") == 0 and "put_" in message and "trainer.deterministic=false" in message
    with deterministic(SimpleNamespace(deterministic=False)):
        assert not torch.are_deterministic_algorithms_enabled()


def test_settings_that_cannot_be_deterministic_are_refused_in_one_sentence(monkeypatch):
    with pytest.raises(DltrainError, match=r"trainer.cudnn_benchmark=true.*auto \(off when deterministic\)"):
        read_settings(compose(["trainer.deterministic=true", "trainer.cudnn_benchmark=true"]))
    assert read_settings(compose(["trainer.deterministic=true"])).trainer.cudnn_benchmark == "auto"
    monkeypatch.setenv(CUBLAS, ":0:0")
    with pytest.raises(DltrainError, match=r"CUBLAS_WORKSPACE_CONFIG=:0:0 .*:4096:8 or :16:8"):
        with deterministic(ON):
            pass
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.slow
def test_fit_reports_deterministic_and_refuses_an_op_without_a_deterministic_implementation(cli, tmp_path):
    """A deterministic fit says so in its banner and metrics.json; its model's put_, in the second
    epoch, is refused in one sentence (exit 2, the run folder failed with it), not a traceback, and
    the global torch flag is off again afterwards."""
    (tmp_path / "put_net.py").write_text(PUT_NET)
    result = cli("fit", "data=iris", "data.batch_size=0", "trainer.epochs=2", "trainer.progress=false",
                 "logger=none", "trainer.checkpoint_every_seconds=0", "trainer.deterministic=true",
                 "model=custom", "model._target_=put_net.PutNet")
    assert result.exit_code == 2, result.output
    said = " ".join(result.output.split())
    assert "device=cpu deterministic threads=" in said and "Traceback" not in said  # the banner
    sentence = ("The model uses put_, which has no deterministic implementation in PyTorch, so "
                "trainer.deterministic=true refuses it; trainer.deterministic=false allows it (or change "
                "the model to avoid it).")
    assert said.endswith(sentence)
    (run,) = run_folders()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["deterministic"] is True
    assert metrics["status"] == "failed" and metrics["error"] == sentence
    assert [row["epoch"] for row in metrics["history"]] == [1]
    assert not torch.are_deterministic_algorithms_enabled()
