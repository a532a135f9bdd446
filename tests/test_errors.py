"""Every user mistake: one sentence naming the value and what is valid, exit 2, no traceback,
and no run folder that looks finished."""

from pathlib import Path

import pytest

from conftest import copy_run, run_folders


def write_csv(name: str, text: str) -> str:
    Path(name).write_text(text)
    return str(Path(name).resolve())


CASES = {
    "unknown model": (["model=foo"], "Unknown model 'foo'; valid options are: "),
    "unknown recipe": (["recipe=nope"], "Unknown recipe 'nope'; valid options are:"),
    "wrong type": (["trainer.epochs=abc"], "trainer.epochs must be an integer, got 'abc'."),
    "negative lr": (["optimizer.lr=-1"], "optimizer.lr must be greater than 0, got -1.0."),
    "zero epochs": (["trainer.epochs=0"], "trainer.epochs must be at least 1, got 0."),
    "bad device name": (["trainer.device=gpu"], "trainer.device must be auto, cpu, cuda, cuda:N or mps; got 'gpu'."),
    "val fraction": (["data.val_fraction=1.5"], "data.val_fraction must be less than 1.0, got 1.5."),
    "override of a missing key": (["trainer.foo=1"], "There is no setting 'trainer.foo' to override; the settings of trainer=default are: device, epochs,"),
    "bad syntax": (["model.hidden_sizes=[64,"], "Could not read the override"),
    "bce on 10 classes": (["loss=bce"], "loss=bce is for binary targets, but this data is multiclass with 10 classes; use loss=cross_entropy"),
    "mse on classes": (["loss=mse"], "loss=mse is a regression loss, but this data is multiclass with 10 classes"),
    "logistic on multiclass": (["model=logistic"], "model=logistic is for binary targets, but this data is multiclass; use model=softmax or model=mlp."),
    "unknown model setting": (["+model.depth=3"], "model=mlp has no setting 'depth'; its settings are: hidden_sizes, activation, negative_slope, dropout, batch_norm, init, init_std, init_range."),
    "unknown optimizer setting": (["+optimizer.foo=1"], "optimizer=adam has no setting 'foo'"),
    "bad activation": (["model.activation=swish"], "model.activation 'swish' is unknown; valid options are: relu, sigmoid, tanh, leaky_relu, gelu, elu, selu, identity."),
    "bad hidden sizes": (["model.hidden_sizes=[64,-1]"], "model.hidden_sizes must be a list of positive integers"),
    "monitor not measured": (["trainer.monitor=r2"], "trainer.monitor 'r2' is not measured for multiclass targets; choose one of: loss, accuracy, macro_f1."),
    "csv without path": (["data=csv"], "data=csv needs a file: set data.path=FILE.csv"),
    "missing csv": (["data=csv", "data.path=nowhere.csv"], "The CSV file 'nowhere.csv' does not exist"),
    "data.path a folder": (["data=csv", "data.path=."], "data.path '.' is a folder; set it to a .csv, .csv.gz or .parquet file."),
    "negative seed": (["trainer.seed=-1"], "trainer.seed must be at least 0, got -1."),
    "seed of 2**63": ([f"trainer.seed={2**63}"], f"trainer.seed must be less than 4294967296, got {2**63}."),
    "negative data seed": (["data=synthetic_linear", "data.seed=-1"], "data.seed must be at least 0, got -1."),
    "step_size 0": (["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size must be a whole number of epochs of at least 1, got 0."),
    "gamma 0": (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma must be greater than 0"),
    "negative gamma": (["scheduler=step", "scheduler.gamma=-0.5"], "scheduler.gamma must be greater than 0"),
    "a model too large for memory": (["model.hidden_sizes=[200000,200000]"], "model=mlp with these settings has 40,015,200,010 parameters, which need 298.1 GiB to train"),
    "run folder in /proc": (["hydra.run.dir=/proc/dltrain-run"], "hydra.run.dir=/proc/dltrain-run cannot be made: /proc refuses a new folder"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_user_error_is_one_sentence_exit_2_and_no_run_folder(cli, case):
    overrides, message = CASES[case]
    result = cli("fit", *overrides, "trainer.epochs=1" if "trainer.epochs" not in str(overrides) else "data=digits")
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.output.strip().startswith("Error:")
    assert len(result.output.strip().splitlines()) <= 3  # one sentence (long ones wrap)
    assert run_folders() == []


def test_missing_target_column_lists_columns(cli):
    path = write_csv("h.csv", "NumRooms,Alley,Price\n1,Pave,10\n2,,20\n")
    result = cli("fit", "data=csv", f"data.path={path}", "data.target=Cost")
    assert result.exit_code == 2
    assert "data.target 'Cost' is not a column of the CSV; columns are: NumRooms, Alley, Price." in result.output
    assert run_folders() == []


def test_non_numeric_regression_target(cli):
    path = write_csv("t.csv", "x,label\n1,cat\n2,dog\n3,cat\n")
    result = cli("fit", "data=csv", f"data.path={path}", "data.task=regression")
    assert result.exit_code == 2
    assert "The target column 'label' is not numeric (for example 'cat')" in result.output
    assert "set data.task=multiclass" in result.output


def test_an_infinite_target_is_refused_without_blaming_the_learning_rate(cli):
    rows = "\n".join(f"{x},{2 * x + 1}" for x in range(40))
    path = write_csv("t.csv", f"x,y\n{rows}\n3,inf\n")
    result = cli("fit", "data=csv", f"data.path={path}", "trainer.epochs=1")
    assert result.exit_code == 2, result.output
    assert result.output.strip() == ("Error: The target column 'y' holds an infinite value; give finite numbers, "
                                     "or leave the cell empty to drop the row.")
    assert run_folders() == []


def test_empty_dataset(cli):
    path = write_csv("empty.csv", "x,y\n")
    result = cli("fit", "data=csv", f"data.path={path}")
    assert result.exit_code == 2
    assert "has no data rows" in result.output
    assert run_folders() == []


def test_unreadable_csv(cli):
    Path("bad.csv").write_bytes(b"\xff\xfe\x00garbage\x00\n\x00")
    result = cli("fit", "data=csv", f"data.path={Path('bad.csv').resolve()}")
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_cuda_requested_without_gpu(cli):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = cli("fit", "trainer.device=cuda", "trainer.epochs=1")
    assert result.exit_code == 2
    assert "trainer.device=cuda but no CUDA GPU is available; use trainer.device=auto or cpu." in result.output


def test_config_command_reports_errors_too(cli):
    result = cli("config", "optimizer=lbfgs")
    assert result.exit_code == 2
    assert "Unknown optimizer 'lbfgs'; valid options are: adagrad, adam, adamw, closed_form, rmsprop, sgd." in result.output


@pytest.mark.slow
def test_diverging_loss_stops_with_a_sentence_and_marks_the_run_failed(cli):
    import json

    import torch

    result = cli("fit", "data=diabetes", "model=linear", "data.standardize=false",
                 "data.target_transform=none", "optimizer=sgd", "optimizer.lr=10", "trainer.epochs=5")
    assert result.exit_code == 2
    assert "The training loss became inf in epoch 2 at step 2 of 12; lower optimizer.lr (now 10)" in result.output
    (folder,) = run_folders()
    assert json.loads((folder / "metrics.json").read_text())["status"] == "failed"
    best = torch.load(folder / "best.pt", weights_only=True)  # epoch 1, still finite
    assert best["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in best["model"].values())


@pytest.fixture(scope="module")
def text_run(tmp_path_factory) -> Path:
    """The run folder of a text model (an LSTM on 40 generated reviews, one epoch)."""
    from typer.testing import CliRunner

    from dltrain.cli import app

    root = tmp_path_factory.mktemp("text_run")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        result = CliRunner().invoke(app, ["fit", "model=lstm", "data=text_csv", "data.num_samples=40",
                                          "trainer.epochs=1", "logger=none"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (run_dir,) = run_folders(root / "outputs")
    return run_dir


IRIS_ROW = b"sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n"
PREDICT_CASES = {  # model, input file's bytes, output, the sentence
    "header-only rows": ("tabular", b"a,b\n", None, "input='new.csv' has no rows to predict for, only a header."),
    "output a folder": ("tabular", IRIS_ROW, "folder", "output=folder is a folder; give a file to write, such as output=folder/predictions.csv."),
    "unwritable output": ("tabular", IRIS_ROW, "/proc/dltrain/p.csv", "output=/proc/dltrain/p.csv cannot be written ("),
    "header-only texts": ("text", b"text\n", None, "input='new.csv' has no rows to predict for, only a header."),
    "empty text file": ("text", b"", None, "input='new.csv' is empty; give a CSV with a header and one row per input."),
    "texts not in UTF-8": ("text", "text\ncaf\u00e9 tr\u00e8s bien\n".encode("latin-1"), None,
                           "input='new.csv' is not UTF-8 text (it holds the byte 0xe9); save it as UTF-8 and try again."),
}


@pytest.mark.parametrize("case", list(PREDICT_CASES))
def test_predict_refusals_are_one_sentence(cli, iris_fit_run, text_run, case):
    model, content, output, message = PREDICT_CASES[case]
    Path("folder").mkdir()
    Path("new.csv").write_bytes(content)
    run_dir = copy_run(iris_fit_run) if model == "tabular" else text_run
    result = cli("predict", str(run_dir), "input=new.csv", *([f"output={output}"] if output else []))
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"Error: {message}")
    assert len(result.output.strip().splitlines()) == 1
    assert not (run_dir / "predictions.csv").exists() and list(Path("folder").iterdir()) == []


def test_eval_of_a_regression_model_refuses_a_target_of_words(cli):
    rows = "\n".join(f"{x},{2 * x + 1}" for x in range(40))
    path = write_csv("numbers.csv", f"x,y\n{rows}\n")
    assert cli("fit", "data=csv", f"data.path={path}", "trainer.epochs=1", "logger=none",
               "hydra.run.dir=outputs/regression").exit_code == 0
    words = write_csv("words.csv", "x,y\n1,cat\n2,dog\n3,cat\n")
    result = cli("eval", "outputs/regression", "data=csv", f"data.path={words}")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: The target column 'y' is not numeric (for example 'cat'), so it "
                                    "cannot be a regression target")
    assert not Path("outputs/regression/eval.json").exists()
