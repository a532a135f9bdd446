"""Training options (issue 17): trainer.accumulate_grad_batches adds up the gradients of N
batches so that one optimizer step equals one step on a batch N times larger."""

from __future__ import annotations

import pytest
import torch

# Plain SGD, no dropout, no shuffling: the batches of size 8 grouped by 4 are exactly the batches of
# size 32 (wine's 142 training rows: 18 batches of 8 in 5 groups, the last of 14 rows, against 5
# batches of 32, the last of 14). onecycle steps per optimizer step; its lr must follow the same path.
BASE = ["data=wine", "model.hidden_sizes=[16]", "model.dropout=0", "optimizer=sgd", "optimizer.lr=0.05",
        "data.shuffle=false", "trainer.epochs=2", "trainer.progress=false", "logger=none",
        "scheduler=onecycle", "regularization=l1", "regularization.l1=0.001"]


def member(folder, *overrides: str, seed: int = 0):
    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices
    from dltrain.train.population import open_member

    cfg = compose([*BASE, *overrides])
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, 0)
    return open_member(cfg, settings, source, train_index, val_index, folder, seed=seed), settings


def trainer(members, settings, progress=None):
    from dltrain.train.engine import Trainer

    for m in members:
        m.folder.open(m)
    return Trainer(members, settings=settings.trainer, device=torch.device("cpu"), stacked=len(members) > 1,
                   batch_size=settings.data.batch_size, shuffle=settings.data.shuffle, progress=progress)


def assert_same_weights(a, b):
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6, rtol=1e-5), name


def test_accumulated_batches_step_like_one_batch_four_times_larger(tmp_path):
    accumulated, settings = member(tmp_path / "a", "data.batch_size=8", "trainer.accumulate_grad_batches=4")
    large, large_settings = member(tmp_path / "b", "data.batch_size=32")
    plain, plain_settings = member(tmp_path / "c", "data.batch_size=8")
    assert len(accumulated.data.train) == 142
    for m, s in ((accumulated, settings), (large, large_settings), (plain, plain_settings)):
        trainer([m], s).fit()
    assert_same_weights(accumulated, large)
    assert accumulated.optimizer.param_groups[0]["lr"] == pytest.approx(large.optimizer.param_groups[0]["lr"])
    # without accumulation, batches of 8 take 4x the steps and end elsewhere
    assert not all(torch.allclose(x, y, atol=1e-4) for x, y in
                   zip(plain.model.state_dict().values(), large.model.state_dict().values()))


def test_stacked_members_accumulate_each_their_own(tmp_path):
    together = [member(tmp_path / f"t{seed}", "data.batch_size=8", "trainer.accumulate_grad_batches=4",
                       seed=seed) for seed in (0, 1)]
    trainer([m for m, _ in together], together[0][1]).fit()
    for seed, (stacked, _) in enumerate(together):
        alone, settings = member(tmp_path / f"l{seed}", "data.batch_size=32", seed=seed)
        trainer([alone], settings).fit()
        assert_same_weights(stacked, alone)


class StopAfter:
    """A progress display that asks the trainer to stop after ``batches`` batches of epoch 1."""

    def __init__(self, batches: int):
        self.batches, self.seen, self.trainer = batches, 0, None

    def start_epoch(self, epoch, steps):
        pass

    def advance(self):
        self.seen += 1
        if self.seen == self.batches:
            self.trainer.stop_requested = 2


def test_a_stop_waits_for_the_group_and_resumes_exactly_from_last_pt(tmp_path):
    from dltrain.console import console
    from dltrain.train.engine import StopRequested

    whole, settings = member(tmp_path / "w", "data.batch_size=8", "trainer.accumulate_grad_batches=4")
    trainer([whole], settings).fit()
    stopped, settings = member(tmp_path / "s", "data.batch_size=8", "trainer.accumulate_grad_batches=4")
    progress = StopAfter(6)
    run = progress.trainer = trainer([stopped], settings, progress)
    with pytest.raises(StopRequested) as stop:
        run.fit()
    assert (stop.value.epoch, stop.value.step) == (1, 8)  # the group of batches 5-8 finished first
    assert stopped.cursor["step"] == 8
    stopped.folder.interrupted()
    resumed, settings = member(tmp_path / "s", "data.batch_size=8", "trainer.accumulate_grad_batches=4")
    resumed.resume(tmp_path / "s" / "last.pt", console)
    assert resumed.cursor["step"] == 8
    trainer([resumed], settings).fit()
    assert_same_weights(resumed, whole)
    assert [r["train_loss"] for r in resumed.rows] == pytest.approx([r["train_loss"] for r in whole.rows])


def test_accumulate_grad_batches_must_be_a_positive_count():
    from dltrain.config import compose, read_settings
    from dltrain.errors import DltrainError

    with pytest.raises(DltrainError, match="accumulate_grad_batches must be at least 1"):
        read_settings(compose(["trainer.accumulate_grad_batches=0"]))
