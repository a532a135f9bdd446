"""model=custom: the user's own nn.Module, from a module in the working directory (each test's
tmp_path), sized from the data, its settings checked against its signature, under issue 14's
trust rule (imported only from the environment or the working directory, never from a run folder
being read; an nn.Module subclass, checked before it is called; plain data only)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import readme_section, run_folders
from dltrain.config import compose, read_settings
from dltrain.data.spec import DataSpec
from dltrain.errors import DltrainError
from dltrain.models import create_model, stacking_refusal
from dltrain.models.custom import reading_run

NETS = '''
import json
from pathlib import Path

from torch import nn


class Net(nn.Module):
    """An MLP of the user's: the sizes from the data, a width of its own."""

    def __init__(self, in_features: int, output_size: int, hidden: int = 8, activation: str = "relu",
                 bias: bool = True):
        super().__init__()
        self.layers = nn.Sequential(nn.Flatten(), nn.Linear(in_features, hidden, bias=bias), nn.ReLU(),
                                    nn.Linear(hidden, output_size))

    def forward(self, x):
        return self.layers(x)


class Recorder(nn.Module):
    """Writes what its constructor got, so a test can read every size it asked for."""

    def __init__(self, in_features, in_channels, num_classes, output_size, input_shape, tag="x"):
        super().__init__()
        Path("got.json").write_text(json.dumps(dict(in_features=in_features, in_channels=in_channels,
                                                    num_classes=num_classes, output_size=output_size,
                                                    input_shape=list(input_shape), tag=tag)))
        self.linear = nn.Linear(in_features, output_size)

    def forward(self, x):
        return self.linear(x.flatten(1))


class Words(nn.Module):
    def __init__(self, vocab_size, output_size):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, output_size)

    def forward(self, tokens, lengths):
        return self.embedding(tokens)


class Needy(nn.Module):
    def __init__(self, in_features, output_size, depth):
        super().__init__()


class Fails(nn.Module):
    def __init__(self, in_features, output_size):
        super().__init__()
        raise ValueError("no GPU of that kind here")


class NotAModule:
    def __init__(self, in_features=0, output_size=0):
        Path("MARKER").write_text("called")


def not_a_class(in_features=0, output_size=0):
    Path("MARKER").write_text("called")
'''


@pytest.fixture
def nets(tmp_path):
    """my_pkg/nets.py in the working directory (tmp_path), as a user's project has it."""
    package = tmp_path / "my_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(NETS)
    yield "my_pkg.nets"
    for name in [n for n in sys.modules if n == "my_pkg" or n.startswith("my_pkg.")]:
        del sys.modules[name]  # the next test writes its own my_pkg


TABULAR = DataSpec(task="multiclass", input_shape=(6,), kind="tabular", num_classes=3)
IMAGES = DataSpec(task="multiclass", input_shape=(1, 4, 4), kind="image", num_classes=10)


def test_the_sizes_a_constructor_asks_for_by_name_come_from_the_data(nets):
    model = create_model("custom", IMAGES, 10, _target_=f"{nets}.Recorder", tag="mine")
    got = json.loads(Path("got.json").read_text())
    assert got == {"in_features": 16, "in_channels": 1, "num_classes": 10, "output_size": 10,
                   "input_shape": [1, 4, 4], "tag": "mine"}
    assert model(torch.randn(2, 1, 4, 4)).shape == (2, 10)
    text = DataSpec(task="binary", input_shape=(5,), kind="tokens", num_classes=2, vocab_size=30)
    words = create_model("custom", text, 1, _target_=f"{nets}.Words")
    assert words.embedding.num_embeddings == 30 and words.embedding.embedding_dim == 1


def test_settings_are_read_and_checked_against_the_signature_when_composed(nets):
    settings = read_settings(compose(["model=custom", f"model._target_={nets}.Net", "+model.hidden=5"]))
    assert settings.model.name == "custom"
    assert settings.model.options == {"_target_": f"{nets}.Net", "hidden": 5}
    model = create_model(settings.model.name, TABULAR, 3, **settings.model.options)
    assert model.layers[1].out_features == 5


def test_a_custom_model_is_never_stacked_under_vmap():
    assert "your own class" in stacking_refusal("custom")


@pytest.mark.parametrize("overrides, sentence", [
    ([], r"^model=custom needs the class of your nn\.Module: set it with model\._target_=my_pkg\.nets\.Net "),
    (["model._target_=Net"], r"^model\._target_ must name a class as module\.Class"),
    (["model._target_=my_pkg.nots.Net"],
     r"^model\._target_=my_pkg\.nots\.Net: there is no module my_pkg\.nots in the installed packages or "
     r"the working directory"),
    (["model._target_=my_pkg.nets.Nope"], r"^model\._target_=my_pkg\.nets\.Nope: the module my_pkg\.nets has no Nope"),
    (["model._target_=my_pkg.nets.NotAModule"],
     r"^model\._target_=my_pkg\.nets\.NotAModule is a type, not an nn\.Module subclass"),
    (["model._target_=my_pkg.nets.not_a_class"],
     r"^model\._target_=my_pkg\.nets\.not_a_class is a function, not an nn\.Module subclass"),
    (["model._target_=os.system"], r"^model\._target_=os\.system is a builtin_function_or_method, not an nn\.Module"),
    (["model._target_=my_pkg.nets.Net", "+model.depth=3"],
     r"^my_pkg\.nets\.Net takes no argument 'depth'; the settings it accepts are: hidden, activation, bias "
     r"\(sizes from the data: in_features, output_size\)\.$"),
    (["model._target_=my_pkg.nets.Net", "+model.in_features=3"],
     r"^model\.in_features comes from the data, never typed by hand"),
    (["model._target_=my_pkg.nets.Net", "+model.hidden=wide"], r"^model\.hidden must be a number, got 'wide'\.$"),
    (["model._target_=my_pkg.nets.Needy"], r"^my_pkg\.nets\.Needy needs 'depth', which has no default: set it "
     r"with \+model\.depth=VALUE\.$"),
    (["model._target_=my_pkg.nets.Net", "model.hidden=3"],
     r"^model\.hidden is no setting of model=custom's YAML: .* as \+model\.hidden=VALUE\.$"),
    (["model._target_=my_pkg.nets.Net", "+model.hidden=${data.batch_size}"],
     r"^model\.hidden is an interpolation \('\$\{data\.batch_size\}'\)"),
    (["model._target_=my_pkg.nets.Net", "+model._args_=[a]"], r"^model\._args_ is a key Hydra would act on"),
    (["model._target_=my_pkg.nets.Net", "+model._partial_=true"], r"^model\._partial_ is a key Hydra would act on"),
    (["model._target_=my_pkg.nets.Net", "+model.activation._target_=builtins.open"],
     r"^model\.activation\._target_ would build an object"),
], ids=["no-target", "no-module-path", "no-module", "no-class", "plain-class", "function", "builtin",
        "unknown-key", "size-by-hand", "wrong-kind", "required", "without-plus", "interpolation", "args",
        "partial", "nested-target"])
def test_a_bad_target_or_setting_is_one_sentence_before_anything_runs(nets, overrides, sentence):
    with pytest.raises(DltrainError, match=sentence) as caught:
        read_settings(compose(["model=custom", *overrides]))
    assert "\n" not in str(caught.value)
    assert not Path("MARKER").exists()  # the class is checked before it is called
    assert not Path("outputs").exists()


def test_a_constructor_that_fails_is_one_sentence_naming_the_class_and_the_cause(nets):
    with pytest.raises(DltrainError, match=r"^my_pkg\.nets\.Fails\(in_features=6, output_size=3\) failed: "
                                           r"ValueError: no GPU of that kind here\.$"):
        create_model("custom", TABULAR, 3, _target_=f"{nets}.Fails")
    with pytest.raises(DltrainError, match=r"^my_pkg\.nets\.Recorder asks for in_channels, but this data is "
                                           r"tabular of shape \(6,\), which has no channels"):
        create_model("custom", TABULAR, 3, _target_=f"{nets}.Recorder")
    Path("my_pkg/broken.py").write_text("import not_installed_anywhere\n")
    with pytest.raises(DltrainError, match=r"^model\._target_=my_pkg\.broken\.Net: importing my_pkg\.broken "
                                           r"failed \(ModuleNotFoundError: No module named 'not_installed_anywhere'\)\.$"):
        create_model("custom", TABULAR, 3, _target_="my_pkg.broken.Net")


def test_a_module_inside_the_run_folder_being_read_is_never_imported(tmp_path, monkeypatch):
    """A run folder that brings its own module, named by its config: reading it (eval, predict,
    resume, export) never runs that module, from the folder above it or from inside it."""
    run = tmp_path / "downloaded"
    (run / "evil").mkdir(parents=True)
    (run / "evil" / "nets.py").write_text("from pathlib import Path\nPath(__file__).with_name('MARKER').write_text('ran')\n"
                                          "from torch import nn\nclass Net(nn.Module):\n    pass\n")
    path_before = list(sys.path)
    with reading_run(run):
        with pytest.raises(DltrainError, match=r"the module downloaded lies inside the run folder .* dltrain "
                                               r"never runs code from a run folder"):
            create_model("custom", TABULAR, 3, _target_="downloaded.evil.nets.Net")
        monkeypatch.chdir(run)
        with pytest.raises(DltrainError, match=r"there is no module evil in the installed packages or the "
                                               r"working directory, which is inside the run folder being read"):
            create_model("custom", TABULAR, 3, _target_="evil.nets.Net")
    assert not (run / "evil" / "MARKER").exists()
    assert sys.path == path_before and "evil" not in sys.modules and "downloaded" not in sys.modules


@pytest.mark.parametrize("target, why", [
    ("os.system", "model._target_=os.system is a builtin_function_or_method, not an nn.Module subclass"),
    ("my_pkg.nets.NotAModule", "model._target_=my_pkg.nets.NotAModule is a type, not an nn.Module subclass"),
    ("outputs.hostile.evil.Net", "the module outputs.hostile lies inside the run folder"),
])
def test_resuming_a_run_that_names_a_class_imports_only_a_module_that_is_one(cli, nets, target, why):
    """A hostile run folder's config names a class of its choice: nothing is called that is not an
    nn.Module subclass, no module of the folder's own runs, and nothing in the folder changes."""
    from omegaconf import OmegaConf

    run = Path("outputs/hostile")
    (run / ".hydra").mkdir(parents=True)
    (run / "evil").mkdir()
    (run / "evil" / "__init__.py").write_text("open('MARKER', 'w').write('ran')\n")
    config = OmegaConf.to_container(compose(["data=iris", "model=custom", f"model._target_={nets}.Net"]))
    config["model"]["_target_"] = target
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / "last.pt").write_bytes(b"a checkpoint")
    (run / "metrics.json").write_text(json.dumps({"status": "running"}))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    result = cli("fit", f"resume={run}", "trainer.epochs=3")
    assert result.exit_code == 2, result.output
    output = " ".join(result.output.split())
    assert output.startswith(f"Error: resume={run}: the saved config") and why in output, output
    assert not Path("MARKER").exists() and not (run / "evil" / "MARKER").exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


# ---- the whole life of a custom model: README's commands, fit, eval, predict, resume, cv


@pytest.mark.slow
def test_the_readme_custom_model_trains_evaluates_predicts_resumes_cross_validates_and_exports(cli, tmp_path):
    from sklearn.datasets import load_iris

    files, commands = readme_section("Your own model")
    assert sorted(files) == ["my_pkg/nets.py"]
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    load_iris(as_frame=True).frame.drop(columns="target").iloc[[0, 60, 120]].to_csv("rows.csv", index=False)
    try:
        run_dir = cv_dir = None
        for command in commands:
            words = shlex.split(command)
            assert words[0] == "dltrain"
            words = [w.replace("CV_DIR", str(cv_dir)).replace("RUN", str(run_dir)) for w in words]
            result = cli(*words[1:])
            assert result.exit_code == 0, f"{command}\n{result.output}"
            if words[1] == "fit" and run_dir is None:
                (run_dir,) = run_folders()
            if words[1] == "cv" and cv_dir is None:
                cv_dir = next(p for p in Path("outputs").glob("*/*") if (p / "cv_summary.json").exists())
    finally:
        for name in [n for n in sys.modules if n == "my_pkg" or n.startswith("my_pkg.")]:
            del sys.modules[name]
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert config["model"] == {"name": "custom", "_target_": "my_pkg.nets.Net", "hidden_size": 32}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs_run"] == 4  # resumed from 3 to 4
    assert json.loads((run_dir / "eval.json").read_text())["rows"] == 30
    assert (run_dir / "predictions.csv").read_text().count("\n") == 4  # a header and 3 rows
    summary = json.loads((cv_dir / "cv_summary.json").read_text())
    assert summary["status"] == "finished" and summary["model"] == "custom" and summary["refit"]
    exported = json.loads((cv_dir / "export" / "model.pt2.json").read_text())
    assert exported["classes"] == ["setosa", "versicolor", "virginica"]
    program = torch.export.load(str(cv_dir / "export" / "model.pt2")).module()
    assert program(torch.zeros(2, 4)).shape == (2, 3)
