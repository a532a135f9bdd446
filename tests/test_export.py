"""dltrain export: a run's best model as ONNX (read back with onnxruntime) or a torch.export
program (read back with torch.export.load) that gives dltrain's own predictions within 1e-4 for
any batch size, with the run's preprocessing and a JSON of inputs and classes beside it; a
cross-validation's refit model; refusals in one sentence; nothing written through a link."""

from __future__ import annotations

import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import readme_section, run_folders
from dltrain.commands.export import parse_options, trace
from dltrain.data.preprocessing import load_preprocessing
from dltrain.data.spec import DataSpec
from dltrain.errors import DltrainError
from dltrain.models import create_model
from dltrain.train.objective import Predictor, build_objective

# ---- quick: tracing, options and refusals, without a trained run


def _exported_pt2(program) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    buffer.seek(0)
    return torch.export.load(buffer).module()


@pytest.mark.parametrize("task, classes", [("regression", ()), ("binary", ("no", "yes")),
                                           ("multiclass", ("a", "b", "c"))])
def test_a_traced_model_ends_in_the_prediction_for_any_batch_size(task, classes):
    torch.manual_seed(0)
    spec = DataSpec(task=task, input_shape=(5,), kind="tabular", num_classes=len(classes),
                    class_names=classes, target_mean=10.0, target_std=3.0)
    objective = build_objective("auto", {}, spec)
    model = create_model("mlp", spec, objective.output_size, hidden_sizes=[4], batch_norm=True).eval()
    program, inputs = trace(model, objective, spec)
    assert inputs == [{"name": "x", "shape": ["batch", 5], "dtype": "float32"}]
    loaded = _exported_pt2(program)
    for rows in (1, 7):
        x = torch.randn(rows, 5)
        with torch.no_grad():
            scores = objective.scores(model(x))
            got = loaded(x)
        if task == "regression":  # in the target's units: the training-time standardization undone
            assert got.shape == (rows,) and torch.allclose(got, scores, atol=1e-4)
        elif task == "binary":  # both classes' probabilities, as dltrain predict writes them
            assert got.shape == (rows, 2) and torch.allclose(got[:, 1], scores, atol=1e-4)
            assert torch.allclose(got.sum(dim=1), torch.ones(rows), atol=1e-5)
        else:
            assert got.shape == (rows, 3) and torch.allclose(got, scores, atol=1e-4)


class MeanOfWords(torch.nn.Module):
    """A text model that reads any number of tokens (nothing in it fixes the steps)."""

    def __init__(self):
        super().__init__()
        self.embedding = torch.nn.Embedding(20, 3, padding_idx=0)

    def forward(self, tokens, lengths):
        return self.embedding(tokens).sum(dim=1) / lengths.unsqueeze(1)


def test_text_models_read_any_number_of_tokens_where_the_model_allows():
    spec = DataSpec(task="multiclass", input_shape=(6,), kind="tokens", num_classes=3,
                    class_names=("a", "b", "c"), vocab_size=20)
    objective = build_objective("auto", {}, spec)
    model = MeanOfWords().eval()
    program, inputs = trace(model, objective, spec)
    assert [i["shape"] for i in inputs] == [["batch", "steps"], ["batch"]]
    tokens, lengths = torch.randint(1, 20, (3, 11)), torch.tensor([11, 4, 1])
    with torch.no_grad():
        assert torch.allclose(_exported_pt2(program)(tokens, lengths), Predictor(model, objective)(tokens, lengths),
                              atol=1e-5)
    lstm = create_model("lstm", spec, 3, hidden_size=4, embedding_dim=4, bidirectional=True).eval()
    _, inputs = trace(lstm, objective, spec)  # torch.export unrolls a recurrent net over its steps
    assert [i["shape"] for i in inputs] == [["batch", 6], ["batch"]]


def test_export_has_help_with_examples(cli):
    result = cli("export", "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Examples" in text and "dltrain export RUN_DIR format=pt2" in text
    assert "pip install 'dltrain[export]'" in text


class Moody(torch.nn.Module):
    """Its forward branches on a value of its input, which no traced graph can hold."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.linear(x) if x.sum() > 0 else -self.linear(x)


def test_a_model_torch_export_cannot_trace_is_one_sentence():
    spec = DataSpec(task="multiclass", input_shape=(5,), num_classes=3, class_names=("a", "b", "c"))
    with pytest.raises(DltrainError, match=r"^torch\.export cannot trace this model \(\w+: .*\); only models "
                                           r"whose forward torch\.export can trace can be exported\.$") as caught:
        trace(Moody(), build_objective("auto", {}, spec), spec)
    assert "\n" not in str(caught.value) and "\x1b" not in str(caught.value)


@pytest.mark.parametrize("words, expected", [
    ([], ("onnx", None)), (["format=pt2"], ("pt2", None)), (["output=a/m.pt2"], ("pt2", "a/m.pt2")),
    (["output=m.onnx", "format=onnx"], ("onnx", "m.onnx")), (["output=model.bin"], ("onnx", "model.bin")),
])
def test_the_format_follows_the_output_name_unless_given(words, expected):
    assert parse_options(words) == expected


@pytest.mark.parametrize("words, sentence", [
    (["format=tflite"], r"^format=tflite is unknown; dltrain export writes format=onnx .* or format=pt2"),
    (["output=m.onnx", "format=pt2"], r"^output=m\.onnx ends in \.onnx, but format=pt2 writes a \.pt2 file"),
    (["input=x.csv"], r"^dltrain export takes format=onnx\|pt2 and output=FILE, not 'input=x\.csv'\.$"),
    (["pt2"], r"^dltrain export takes format=onnx\|pt2 and output=FILE, not 'pt2'\.$"),
])
def test_a_wrong_option_is_one_sentence(words, sentence):
    with pytest.raises(DltrainError, match=sentence):
        parse_options(words)


def test_refusals_before_anything_is_read_or_written(cli, tmp_path, monkeypatch):
    cv_dir = Path("outputs/cv")
    (cv_dir / "fold_0" / ".hydra").mkdir(parents=True)
    (cv_dir / "cv_summary.json").write_text("{}")
    result = cli("export", str(cv_dir))
    assert result.exit_code == 2
    assert " ".join(result.output.split()).startswith(
        f"Error: '{cv_dir}' is a cross-validation without a model trained on all its rows; run it with "
        f"cv.refit=true")
    result = cli("export", "outputs/nothing", "format=pt2")
    assert result.exit_code == 2 and "does not exist" in result.output
    # A link planted in a shared run folder would carry the export out of it.
    run = Path("outputs/run")
    run.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "export").symlink_to(elsewhere)
    result = cli("export", str(run), "format=pt2")
    assert result.exit_code == 2 and "is a symbolic link inside the run folder" in result.output
    assert list(elsewhere.iterdir()) == []
    result = cli("export", str(run), f"output={run / 'best.pt'}", "format=pt2")
    assert result.exit_code == 2 and "would replace a run's own file" in result.output
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real(name, *a))
    result = cli("export", str(run))
    assert result.exit_code == 2
    assert "format=onnx needs onnxscript, which is not installed; install it with pip install " \
           "'dltrain[export]'" in " ".join(result.output.split())


# ---- slow: trained runs exported and read back with onnxruntime and torch.export.load


def dltrain_scores(run_dir: Path, inputs) -> np.ndarray:
    """dltrain's own predictions (as dltrain predict computes them) for preprocessed inputs."""
    from dltrain.commands.evaluate import load_run
    from dltrain.config import read_settings
    from dltrain.train.build import Parts
    from dltrain.train.population import for_inference

    run = load_run(str(run_dir))
    member = for_inference(Parts(run.objective, run.model), read_settings(run.cfg).trainer, torch.device("cpu"))
    return member.predict_scores(inputs).numpy()


def some_rows(run_dir: Path, steps=None):
    """Seven rows of the run's own data, through its saved preprocessing, as the exported model
    reads them (text: padded, or cut, to ``steps`` tokens)."""
    from dltrain.commands.evaluate import load_run
    from dltrain.config import read_settings
    from dltrain.data import load_source
    from dltrain.data.split import take
    from dltrain.train.staging import to_device

    run = load_run(str(run_dir))
    source = load_source(read_settings(run.cfg).data)
    x = run.preprocessor.transform(take(source.features, np.arange(7)))
    if not isinstance(x, tuple):
        return (to_device(x, "cpu"),)  # images: uint8 Pixels, normalized as the model reads them
    tokens, lengths = x
    lengths = lengths.clamp(max=steps)
    padded = torch.zeros(len(tokens), steps, dtype=tokens.dtype)
    width = min(steps, tokens.shape[1])
    padded[:, :width] = tokens[:, :width]
    return padded, lengths


CASES = {
    "mlp": ["data=iris", "model=mlp", "model.hidden_sizes=[8]"],
    "cnn": ["data=digits_images", "model=cnn", "model.channels=[4,8]", "model.batch_norm=true"],
    "resnet": ["data=digits_images", "model=resnet", "model.channels=[4,8]", "model.batch_norm=true"],
    "lstm": ["recipe=text_lstm", "data.num_samples=100", "model.hidden_size=4", "model.embedding_dim=4"],
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_an_exported_model_predicts_as_dltrain_does_in_onnxruntime_and_torch_export(cli, case):
    import onnxruntime

    result = cli("fit", *CASES[case], "trainer.epochs=1", "logger=none", "trainer.progress=false")
    assert result.exit_code == 0, result.output
    (run,) = run_folders()
    folder = run / "export"
    folder.mkdir()
    victim = Path("victim.txt")
    victim.write_text("precious")
    (folder / "preprocessing.json").symlink_to(victim.absolute())  # planted: replaced, never followed
    for form in ("onnx", "pt2"):
        result = cli("export", str(run), f"format={form}")
        assert result.exit_code == 0, result.output
        path = folder / f"model.{form}"
        info = json.loads((folder / f"model.{form}.json").read_text())
        assert info["model"] == path.name and info["runtime"] == form and info["preprocessing"] == "preprocessing.json"
        steps = info["inputs"][0]["shape"][1] if case == "lstm" else None
        inputs = some_rows(run, steps)
        expected = dltrain_scores(run, inputs if len(inputs) > 1 else inputs[0])
        for rows in (slice(0, 7), slice(2, 3)):  # any batch size, one row included
            chosen = [x[rows] for x in inputs]
            if form == "onnx":
                session = onnxruntime.InferenceSession(str(path))
                assert [i.name for i in session.get_inputs()] == [i["name"] for i in info["inputs"]]
                got = session.run([info["output"]["name"]], {i["name"]: x.numpy() for i, x in zip(info["inputs"], chosen)})[0]
            else:
                with torch.no_grad():
                    got = torch.export.load(str(path)).module()(*chosen).numpy()
            want = expected[rows]
            if info["task"] == "binary":
                want = np.stack([1 - want, want], axis=1)
            assert got.shape == want.shape and np.abs(got - want).max() < 1e-4, (form, rows)
    assert victim.read_text() == "precious" and not (folder / "preprocessing.json").is_symlink()
    from dltrain.commands.evaluate import load_run

    trained = load_run(str(run))
    assert info["classes"] == list(trained.spec.class_names)
    # the run's preprocessing, in its documented format, beside the model
    assert load_preprocessing(folder).state()[0] == trained.preprocessor.state()[0]


@pytest.mark.slow
def test_a_cross_validation_exports_its_refit_model(cli):
    result = cli("cv", "data=iris", "k=2", "trainer.epochs=1", "cv.refit=true", "logger=none",
                 "trainer.progress=false")
    assert result.exit_code == 0, result.output
    (cv_dir,) = [p for p in Path("outputs").glob("*/*") if (p / "cv_summary.json").exists()]
    result = cli("export", str(cv_dir), "format=pt2")
    assert result.exit_code == 0, result.output
    assert f"Exporting {cv_dir / 'refit' / 'best.pt'}" in " ".join(result.output.split())
    inputs = some_rows(cv_dir / "refit")
    with torch.no_grad():
        got = torch.export.load(str(cv_dir / "export" / "model.pt2")).module()(*inputs).numpy()
    assert np.abs(got - dltrain_scores(cv_dir / "refit", inputs[0])).max() < 1e-4


# ---- the README's example: exported files used without dltrain


@pytest.mark.slow
def test_the_readme_export_example_predicts_without_dltrain_as_dltrain_predict_does(cli, tmp_path):
    import pandas as pd
    from sklearn.datasets import load_iris

    files, commands = readme_section("Export: use a model without dltrain")
    assert list(files) == ["use_export.py"]
    (tmp_path / "use_export.py").write_text(files["use_export.py"])
    load_iris(as_frame=True).frame.drop(columns="target").iloc[[0, 1, 60, 120, 149]].to_csv("rows.csv", index=False)
    run = printed = None
    for command in commands:
        words = [w.replace("RUN", str(run)) for w in shlex.split(command)]
        if words[0] == "dltrain":
            result = cli(*words[1:])
            assert result.exit_code == 0, f"{command}\n{result.output}"
            run = run or run_folders()[0]
        else:  # python use_export.py ...: without dltrain, which it must not import
            assert words[:2] == ["python", "use_export.py"]
            code = ("import sys; sys.modules['dltrain'] = None; sys.argv = sys.argv[1:]; "
                    "exec(compile(open('use_export.py').read(), 'use_export.py', 'exec'))")
            done = subprocess.run([sys.executable, "-c", code, *words[1:]], capture_output=True, text=True,
                                  env={**os.environ, "PYTHONPATH": ""}, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    predicted = pd.read_csv(run / "predictions.csv")  # dltrain predict RUN input=rows.csv
    probabilities = predicted.filter(like="probability_").to_numpy()
    assert sorted(p["model"] for p in printed) == ["model.onnx", "model.pt2"]
    for each in printed:
        assert each["prediction"] == predicted["prediction"].tolist()
        assert np.abs(np.array(each["probabilities"]) - probabilities).max() < 1e-4
