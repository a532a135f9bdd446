"""The engine trains a population: members of one model shape, each with its own learning rate
and weight decay, trained at once (stacked under torch.vmap) end exactly where each trains alone."""

from __future__ import annotations

import pytest
import torch

POINTS = [(0.01, 0.0), (0.003, 0.001), (0.03, 0.01)]  # (optimizer.lr, regularization.weight_decay)
BASE = ["data=wine", "model.hidden_sizes=[16]", "model.dropout=0", "data.batch_size=32",
        "regularization=l2", "trainer.epochs=3", "trainer.progress=false", "logger=none",
        "scheduler=cosine"]


def member(folder, lr: float, weight_decay: float):
    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices
    from dltrain.train.population import open_member

    cfg = compose([*BASE, f"optimizer.lr={lr}", f"regularization.weight_decay={weight_decay}"])
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, 0)
    return open_member(cfg, settings, source, train_index, val_index, folder, seed=0,
                       label=f"lr {lr}"), settings


def train_all(members, settings, run_dir, stacked: bool):
    from dltrain.train.engine import Trainer
    from dltrain.train.population import conclude, train

    trainer = Trainer(members, settings=settings.trainer, device=torch.device("cpu"), stacked=stacked,
                      batch_size=settings.data.batch_size, shuffle=True)
    train(trainer, run_dir, progress=False)
    return [conclude(m, 0.0) for m in members]


@pytest.mark.slow
def test_each_member_equals_its_point_trained_alone(tmp_path):
    built = [member(tmp_path / f"together_{i}", lr, wd) for i, (lr, wd) in enumerate(POINTS)]
    together = train_all([m for m, _ in built], built[0][1], tmp_path, stacked=True)
    for i, (lr, weight_decay) in enumerate(POINTS):
        alone_member, settings = member(tmp_path / f"alone_{i}", lr, weight_decay)
        (alone,) = train_all([alone_member], settings, tmp_path, stacked=False)
        assert [g["lr"] for g in built[i][0].optimizer.param_groups][0] == pytest.approx(
            alone_member.optimizer.param_groups[0]["lr"])  # the cosine schedule, per member
        assert len(together[i].model.state_dict()) == len(alone.model.state_dict())
        for key, value in alone.model.state_dict().items():
            assert torch.allclose(together[i].model.state_dict()[key], value, atol=1e-5), (i, key)
        for row, expected in zip(built[i][0].rows, alone_member.rows):
            for key in row:
                if key != "seconds":
                    assert row[key] == pytest.approx(expected[key], abs=1e-5), (i, key)
    # the points differ from each other: the members did not share one setting
    finals = [r.final["val_loss"] for r in together]
    assert len({round(v, 4) for v in finals}) == 3


def test_members_of_different_shapes_are_refused(tmp_path):
    from dltrain.train.engine import stack_refusal

    first, _ = member(tmp_path / "a", 0.01, 0.0)
    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.data.split import train_val_indices
    from dltrain.train.population import open_member

    cfg = compose([*BASE, "model.hidden_sizes=[8]"])
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, 0)
    other = open_member(cfg, settings, source, train_index, val_index, tmp_path / "b", seed=1)
    reason = stack_refusal([first, other], 32, None)
    assert reason is not None and "shape" in reason
