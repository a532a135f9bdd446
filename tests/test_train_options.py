"""Training options (issue 17): trainer.accumulate_grad_batches adds up the gradients of N
batches so that one optimizer step equals one step on a batch N times larger."""

from __future__ import annotations

import json

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


# ------------------------------------------------------------------ loss.class_weights, loss.pos_weight

def spec(task: str, classes: int):
    from dltrain.data.spec import DataSpec

    return DataSpec(task=task, input_shape=(4,), num_classes=classes,
                    class_names=tuple(f"c{i}" for i in range(classes)))


def test_class_weights_auto_are_the_inverse_frequency_of_the_training_rows():
    from dltrain.train.objective import build_objective

    targets = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2, 2, 2, 2])  # 6, 2, 4 of 12 rows
    objective = build_objective("auto", {"class_weights": "auto", "pos_weight": None}, spec("multiclass", 3),
                                targets)
    expected = torch.tensor([12 / (3 * 6), 12 / (3 * 2), 12 / (3 * 4)])
    assert torch.allclose(objective.training_criterion.weight, expected)
    outputs = torch.randn(12, 3, generator=torch.Generator().manual_seed(0))
    weighted = torch.nn.functional.cross_entropy(outputs, targets, weight=expected)
    assert torch.allclose(objective.loss(outputs, targets, training=True), weighted)
    # the loss measured (validation, test, eval) stays the plain one
    assert torch.allclose(objective.loss(outputs, targets), torch.nn.functional.cross_entropy(outputs, targets))
    # built for evaluation (no training rows): no training loss at all
    assert build_objective("cross_entropy", {"class_weights": "auto"}, spec("multiclass", 3)).training_criterion is None


def test_class_weights_list_and_pos_weight():
    from dltrain.train.objective import build_objective

    targets = torch.tensor([0, 1, 1, 1, 0, 0, 0, 0])  # 3 positive, 5 negative
    listed = build_objective("cross_entropy", {"class_weights": [1, 2.5]}, spec("binary", 2), targets)
    assert listed.training_criterion.weight.tolist() == [1.0, 2.5]
    auto = build_objective("bce", {"pos_weight": "auto"}, spec("binary", 2), targets)
    assert auto.training_criterion.pos_weight.tolist() == pytest.approx([5 / 3])
    given = build_objective("auto", {"pos_weight": 4, "class_weights": None}, spec("binary", 2), targets)
    logits = torch.tensor([[0.3], [-1.0], [2.0], [0.1], [0.0], [1.5], [-0.5], [0.7]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits.squeeze(-1), targets.float(), pos_weight=torch.tensor([4.0]))
    assert torch.allclose(given.loss(logits, targets, training=True), expected)


@pytest.mark.parametrize("loss, options, task, message", [
    ("cross_entropy", {"class_weights": [1, 2]}, ("multiclass", 3),
     "loss.class_weights must be auto or a list of 3 non-negative numbers, one per class (c0, c1, c2), "
     "not all zero; got [1, 2]."),
    ("cross_entropy", {"class_weights": "balanced"}, ("multiclass", 3), "must be auto or a list of 3"),
    ("cross_entropy", {"class_weights": [1, -1, 1]}, ("multiclass", 3), "non-negative numbers"),
    ("bce", {"pos_weight": 0}, ("binary", 2), "loss.pos_weight must be auto or a positive number, got 0."),
    ("auto", {"class_weights": "auto"}, ("regression", 0),
     "loss.class_weights weighs classification targets, but this data is a regression target; drop it."),
    ("auto", {"class_weights": "auto"}, ("binary", 2),
     "loss.class_weights weighs the classes of loss=cross_entropy, but this binary with 2 classes data "
     "trains with loss=bce; use loss.pos_weight for its positive rows, or loss=cross_entropy."),
    ("auto", {"pos_weight": 2}, ("multiclass", 3), "loss.pos_weight weighs the positive rows of loss=bce"),
])
def test_weights_that_do_not_apply_are_refused_in_one_sentence(loss, options, task, message):
    from dltrain.errors import DltrainError
    from dltrain.train.objective import build_objective

    targets = torch.tensor([0, 1, 1, 0]) if task[0] != "regression" else torch.zeros(4)
    with pytest.raises(DltrainError) as refused:
        build_objective(loss, options, spec(*task), targets)
    assert message in str(refused.value) and str(refused.value).count(". ") == 0


def test_pos_weight_auto_needs_both_kinds_of_rows():
    from dltrain.errors import DltrainError
    from dltrain.train.objective import build_objective

    with pytest.raises(DltrainError, match="the 3 training rows are all negative; give a number"):
        build_objective("bce", {"pos_weight": "auto"}, spec("binary", 2), torch.zeros(3, dtype=torch.long))


def test_each_fold_counts_its_own_training_rows(tmp_path):
    """Two members on different rows of wine (59, 71, 48 rows per class, in class order): each its
    own weights; the first has no row of class 2, which then weighs nothing."""
    from dltrain.config import compose, read_settings
    from dltrain.data import load_source
    from dltrain.train.population import open_member

    cfg = compose(["data=wine", "loss.class_weights=auto", "logger=none", "trainer.progress=false"])
    settings = read_settings(cfg)
    source = load_source(settings.data)
    weights = []
    for i, rows in enumerate((list(range(0, 120)), list(range(40, 178)))):
        m = open_member(cfg, settings, source, rows, [], tmp_path / str(i), seed=0)
        counts = torch.bincount(m.data.train.y, minlength=3).double()
        expected = torch.where(counts > 0, len(rows) / (3 * counts), 0.0).float()
        assert torch.allclose(m.objective.training_criterion.weight, expected)
        weights.append(m.objective.training_criterion.weight)
    assert weights[0][2] == 0 and (weights[1] > 0).all() and not torch.allclose(weights[0], weights[1])


def test_fit_and_eval_with_pos_weight(cli):
    from conftest import read_metrics, run_folders

    result = cli("fit", "data=breast_cancer", "loss.pos_weight=auto", "trainer.epochs=2", "logger=none",
                 "trainer.progress=false")
    assert result.exit_code == 0, result.output
    (run,) = run_folders()
    history = read_metrics(run)["history"]
    assert len(history) == 2 and history[-1]["val_accuracy"] > 0.8
    evaluated = cli("eval", str(run))
    assert evaluated.exit_code == 0, evaluated.output
    # eval measures the plain loss on the validation rows, as the run's validation did
    report = json.loads((run / "eval.json").read_text())
    assert report["split"] == "validation"
    assert report["metrics"]["loss"] == pytest.approx(read_metrics(run)["best"]["val_loss"], rel=1e-5)


# ------------------------------------------------------------------ trainer.save_top_k

def top_files(run) -> dict[int, float]:
    """The top-k checkpoints in a run folder: epoch -> the value in its name."""
    found = {}
    for path in run.glob("best-epoch=*.pt"):
        epoch, value = path.stem.removeprefix("best-epoch=").split("-val_loss=")
        found[int(epoch)] = float(value)
    return found


def best_epochs(history, k: int) -> set[int]:
    return {row["epoch"] for row in sorted(history, key=lambda row: (row["val_loss"], row["epoch"]))[:k]}


def test_save_top_k_keeps_the_k_best_epochs_by_name_and_eval_takes_the_best(cli):
    from conftest import read_metrics, run_folders

    result = cli("fit", "data=iris", "trainer.epochs=6", "trainer.save_top_k=3", "logger=none",
                 "trainer.progress=false", "trainer.checkpoint_every_seconds=0")
    assert result.exit_code == 0, result.output
    (run,) = run_folders()
    metrics = read_metrics(run)
    history = metrics["history"]
    kept = top_files(run)
    assert set(kept) == best_epochs(history, 3)
    assert min(kept) > 1  # the loss fell: early epochs entered the top 3 and were deleted
    for epoch, value in kept.items():
        assert value == pytest.approx(history[epoch - 1]["val_loss"], abs=5e-5)
        saved = torch.load(run / f"best-epoch={epoch}-val_loss={value:.4f}.pt", weights_only=True)
        assert saved["epoch"] == epoch and saved["metrics"]["val_loss"] == history[epoch - 1]["val_loss"]
    best = torch.load(run / "best.pt", weights_only=True)
    top = min(kept, key=lambda e: (kept[e], e))
    assert best["epoch"] == metrics["best_epoch"] == top
    same = torch.load(run / f"best-epoch={top}-val_loss={kept[top]:.4f}.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], same["model"][k]) for k in best["model"])
    evaluated = cli("eval", str(run))
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads((run / "eval.json").read_text())
    assert report["checkpoint"].endswith("best.pt")
    assert report["metrics"]["loss"] == pytest.approx(history[top - 1]["val_loss"], rel=1e-5)


def test_a_resume_keeps_the_top_k_of_every_epoch_under_its_new_k(cli):
    from conftest import read_metrics, run_folders

    first = cli("fit", "data=iris", "trainer.epochs=3", "trainer.save_top_k=3", "logger=none",
                "trainer.progress=false")
    assert first.exit_code == 0, first.output
    (run,) = run_folders()
    assert len(top_files(run)) == 3
    resumed = cli("fit", f"resume={run}", "trainer.epochs=5", "trainer.save_top_k=2")
    assert resumed.exit_code == 0, resumed.output
    history = read_metrics(run)["history"]
    assert len(history) == 5 and set(top_files(run)) == best_epochs(history, 2)


def test_save_top_k_ranks_by_the_mode_and_skips_values_that_are_not_numbers(tmp_path):
    from dltrain.train.rundir import RunFolder

    class Writer:
        def __init__(self):
            self.kept, self.dropped = [], []

        def keep(self, name, epoch, row):
            self.kept.append(name)

        def drop(self, name):
            self.dropped.append(name)

    folder = RunFolder(tmp_path, config={}, spec={}, record={"monitor": "val_accuracy", "mode": "max"},
                       every_seconds=0, writes=False, save_top_k=2)
    folder.writer = Writer()
    for epoch, value in enumerate([0.5, 0.7, 0.6, float("nan"), 0.7, 0.9], start=1):
        folder._rank(epoch, {"val_accuracy": value})
    assert folder.top == [(0.9, 6), (0.7, 2)]  # the tie (epoch 5) stays behind epoch 2
    assert folder.writer.kept == ["best-epoch=1-val_accuracy=0.5000.pt", "best-epoch=2-val_accuracy=0.7000.pt",
                                  "best-epoch=3-val_accuracy=0.6000.pt", "best-epoch=5-val_accuracy=0.7000.pt",
                                  "best-epoch=6-val_accuracy=0.9000.pt"]
    assert folder.writer.dropped == ["best-epoch=1-val_accuracy=0.5000.pt", "best-epoch=3-val_accuracy=0.6000.pt",
                                     "best-epoch=5-val_accuracy=0.7000.pt"]
