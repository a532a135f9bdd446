"""The learning-rate range test: ``dltrain lr-find`` and ``trainer.lr_find=true`` in fit and cv."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dltrain.commands.lr_find import lr_find
from dltrain.config import compose, read_settings
from dltrain.data import load_source, prepare
from dltrain.data.split import train_val_indices
from dltrain.errors import DltrainError
from dltrain.train.build import build
from dltrain.train.device import seed_everything
from dltrain.train.lr_find import JSON, PNG, range_test, read_suggestion, steepest_descent
from tests.conftest import read_metrics, run_folders

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _iris_parts(*overrides: str):
    settings = read_settings(compose(["data=iris", *overrides]))
    source = load_source(settings.data)
    train_index, _ = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    seed_everything(0)
    data = prepare(source, train_index)
    return settings, data, build(settings, data.spec)


def test_range_test_suggests_a_sensible_lr_and_leaves_model_and_optimizer_as_they_were():
    settings, data, parts = _iris_parts("optimizer=sgd", "optimizer.momentum=0.9")
    weights = {k: v.clone() for k, v in parts.model.state_dict().items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in parts.optimizer.param_groups]
    rng = torch.get_rng_state()
    finding = range_test(parts, data.train, torch.device("cpu"), batch_size=16, seed=0)
    assert 1e-4 < finding.suggestion < 1
    assert finding.lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in zip(finding.lrs, finding.lrs[1:]))
    assert finding.suggestion == finding.lrs[finding.index]
    # the smoothed loss at the suggestion is falling and above the lowest one, which comes later
    assert finding.index < finding.smoothed.index(min(finding.smoothed))
    assert all(torch.equal(weights[k], v) for k, v in parts.model.state_dict().items())
    assert [{k: v for k, v in g.items() if k != "params"} for g in parts.optimizer.param_groups] == groups
    assert not parts.optimizer.state  # no momentum left behind
    assert torch.equal(torch.get_rng_state(), rng)
    again = range_test(parts, data.train, torch.device("cpu"), batch_size=16, seed=0)
    assert again.losses == finding.losses and again.suggestion == finding.suggestion  # deterministic


def test_range_test_stops_once_the_smoothed_loss_passes_four_times_its_lowest():
    settings, data, parts = _iris_parts()  # adam: iris diverges before lr reaches 10
    finding = range_test(parts, data.train, torch.device("cpu"), batch_size=16, seed=0)
    assert finding.diverged and len(finding.lrs) < 100
    assert finding.smoothed[-1] > 4 * min(finding.smoothed)
    assert max(finding.smoothed[:-1]) <= 4 * min(finding.smoothed)


def test_steepest_descent_is_on_the_way_down_to_the_lowest_loss():
    lrs = [10 ** (-7 + 8 * i / 99) for i in range(100)]
    # flat, a steep fall around step 60, the lowest at 70, then a blow-up that falls again
    smoothed = [2.0 - 1.5 / (1 + 2.718 ** (-(i - 60) / 2)) for i in range(71)]
    smoothed += [smoothed[-1] + 0.5 * (i - 70) for i in range(71, 90)] + [5.0 - 0.3 * (i - 90) for i in range(90, 100)]
    assert abs(steepest_descent(lrs, smoothed) - 60) <= 1
    with pytest.raises(DltrainError, match="too early to suggest a value"):
        steepest_descent(lrs[:12], [1.0 - 0.01 * i for i in range(12)])


def test_lr_find_command_prints_the_suggestion_and_writes_the_curve(cli):
    result = cli("lr-find", "data=iris")
    assert result.exit_code == 0, result.output
    (png,) = Path("outputs/lr_find").glob(f"*/*/{PNG}")
    assert png.read_bytes().startswith(PNG_SIGNATURE)
    saved = json.loads((png.parent / JSON).read_text())
    assert 1e-4 < saved["suggestion"] < 1 and len(saved["lrs"]) == len(saved["smoothed"]) > 20
    text = " ".join(result.output.split())
    assert f"Suggested optimizer.lr={saved['suggestion']:.3g}" in text and str(png) in text
    assert not run_folders()  # no run folder


def test_lr_find_is_deterministic_with_a_fixed_seed():
    first, _ = lr_find(["data=iris", "trainer.seed=3"])
    second, _ = lr_find(["data=iris", "trainer.seed=3"])
    assert first.losses == second.losses and first.suggestion == second.suggestion


def test_read_suggestion_refuses_a_missing_or_corrupted_record(tmp_path):
    with pytest.raises(DltrainError, match="holds no learning rate found"):
        read_suggestion(tmp_path)
    (tmp_path / JSON).write_text(json.dumps({"suggestion": -1}))
    with pytest.raises(DltrainError, match="holds no learning rate found"):
        read_suggestion(tmp_path)
    (tmp_path / JSON).write_text(json.dumps({"suggestion": 0.01}))
    assert read_suggestion(tmp_path) == 0.01


def test_cv_vectorize_true_refuses_lr_find_in_one_sentence(cli):
    result = cli("cv", "k=2", "data=iris", "trainer.epochs=1", "trainer.lr_find=true", "cv.vectorize=true",
                 "logger=none")
    assert result.exit_code == 2
    assert "trainer.lr_find=true finds each fold's own lr, which cv.vectorize=true cannot" in " ".join(
        result.output.split())


def test_fit_with_lr_find_records_the_value_and_trains_exactly_as_with_that_lr(cli):
    common = ["data=iris", "trainer.epochs=2", "logger=none"]
    result = cli("fit", *common, "trainer.lr_find=true", "hydra.run.dir=outputs/found")
    assert result.exit_code == 0, result.output
    found = Path("outputs/found")
    lr = json.loads((found / JSON).read_text())["suggestion"]
    assert 1e-4 < lr < 1
    assert (found / PNG).read_bytes().startswith(PNG_SIGNATURE)
    metrics = read_metrics(found)
    assert metrics["lr_find"]["lr"] == lr
    assert all(row["lr"] == lr for row in metrics["history"])
    checkpoint = torch.load(found / "last.pt", weights_only=True)
    assert checkpoint["config"]["optimizer"]["lr"] == lr  # the checkpoint's config holds the lr it trained with
    # the range test changed nothing else: the same fit with that lr typed gives the same run
    assert cli("fit", *common, f"optimizer.lr={lr!r}", "hydra.run.dir=outputs/typed").exit_code == 0
    typed = read_metrics(Path("outputs/typed"))
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(typed["history"]) == strip(metrics["history"])
    # a resume trains on with the recorded value and does not run the test again
    before = (found / JSON).stat().st_mtime_ns
    resumed = cli("fit", f"resume={found}", "trainer.epochs=3")
    assert resumed.exit_code == 0, resumed.output
    assert "training on with the learning rate it found" in resumed.output
    assert (found / JSON).stat().st_mtime_ns == before
    after = read_metrics(found)
    assert after["lr_find"]["lr"] == lr and [row["lr"] for row in after["history"]] == [lr] * 3


def test_cv_with_lr_find_finds_each_folds_own_lr(cli):
    result = cli("cv", "k=2", "data=iris", "trainer.epochs=1", "trainer.lr_find=true", "logger=none")
    assert result.exit_code == 0, result.output
    (cv_dir,) = {p.parent for p in Path("outputs").glob("**/cv_summary.json")}
    lrs = []
    for fold in (0, 1):
        folder = cv_dir / f"fold_{fold}"
        lr = json.loads((folder / JSON).read_text())["suggestion"]
        assert (folder / PNG).is_file() and read_metrics(folder)["lr_find"]["lr"] == lr
        assert read_metrics(folder)["history"][0]["lr"] == lr
        lrs.append(lr)
    assert all(1e-4 < lr < 1 for lr in lrs)


def test_lr_find_refuses_the_closed_form_in_one_sentence(cli):
    result = cli("lr-find", "recipe=linear_regression", "optimizer=closed_form")
    assert result.exit_code == 2
    assert ("optimizer=closed_form solves least squares without steps, so it has no learning rate to find"
            in " ".join(result.output.split()))
    assert not Path("outputs").exists()  # nothing written
