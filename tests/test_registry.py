"""The registries: every YAML option is registered and every entry has a YAML; every model takes
a training step on every input kind and task it declares, every loss on every task it serves,
every optimizer, scheduler and regularization builds from its YAML; and adding a model, a
dataset and a loss is one module plus one YAML each (the README's own files, in a fresh copy)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import OmegaConf

from conftest import REPO
from dltrain.checks import check_keywords
from dltrain.data import DATASETS
from dltrain.data.spec import INPUT_KINDS, DataSpec
from dltrain.errors import DltrainError
from dltrain.models import MODELS, create_model, kind_data
from dltrain.models.custom import CUSTOM
from dltrain.models.init import INIT_KEYS
from dltrain.registry import REQUIRED, Registry
from dltrain.train.losses import LOSSES
from dltrain.train.objective import AUTO, build_objective
from dltrain.train.optim import (CLOSED_FORM, OPTIMIZERS, REGULARIZATION, SCHEDULERS, build_optimizer,
                                 build_schedule)

REGISTRIES = {"model": MODELS, "data": DATASETS, "loss": LOSSES, "optimizer": OPTIMIZERS,
              "scheduler": SCHEDULERS, "regularization": REGULARIZATION}
# YAML options that are no entry: loss=auto picks a registered one, model=custom is the user's class,
# optimizer=closed_form solves least squares instead of stepping.
PICKERS = {"loss": {AUTO}, "model": {CUSTOM}, "optimizer": {CLOSED_FORM}}
# Keys of a group's YAML that the trainer reads itself, not the entry's constructor.
COMMON_KEYS = {"optimizer": {"lr"}, "model": set(INIT_KEYS)}
ROWS = 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # Tiny tensors: threads only contend (inception's step takes 10x longer with 2 on 2 busy cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def yaml_settings(group: str, name: str) -> dict:
    settings = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / group / f"{name}.yaml"))
    return {k: v for k, v in settings.items() if k != "name" and k not in COMMON_KEYS.get(group, ())}


# ---- the registry itself


def test_lookup_of_an_unknown_name_is_one_sentence_listing_the_valid_ones():
    registry = Registry("widget", {"size": REQUIRED, "round": False})
    registry.add("b", dict, size=1)
    registry.register("a", "c", size=2, round=True)(list)
    with pytest.raises(DltrainError, match=r"^Unknown widget 'z'; valid options are: a, b, c\.$"):
        registry["z"]
    assert registry.names() == ["b", "a", "c"] and "a" in registry and len(registry) == 3
    assert registry["a"].size == 2 and registry["b"].round is False and registry["c"]() == []
    assert [e.name for e in registry.where(round=True)] == ["a", "c"]


def test_registering_without_required_metadata_or_twice_is_a_bug_at_import():
    registry = Registry("widget", {"size": REQUIRED})
    with pytest.raises(TypeError, match="without"):
        registry.add("a", dict)
    with pytest.raises(TypeError, match="unknown metadata"):
        registry.add("a", dict, size=1, colour="red")
    registry.add("a", dict, size=1)
    registry.add("a", dict, size=1)  # the same constructor again (a re-import) is harmless
    with pytest.raises(ValueError, match="registered twice"):
        registry.add("a", list, size=1)


def test_registries_load_torch_only_when_asked():
    # What dltrain --help, list and config import; the registries' modules wait for a lookup.
    code = ("import sys, dltrain.cli, dltrain.config, dltrain.models, dltrain.data, "
            "dltrain.train.losses\n"
            "heavy = sorted({'torch', 'numpy', 'pandas'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("group", list(REGISTRIES))
def test_every_yaml_option_is_registered_and_every_entry_has_a_yaml(group):
    options = {path.stem for path in (REPO / "conf" / group).glob("*.yaml")} - PICKERS.get(group, set())
    assert options == set(REGISTRIES[group].names())


@pytest.mark.parametrize("group", ["model", "loss", "optimizer", "scheduler", "regularization"])
def test_every_yaml_setting_is_a_setting_its_entry_takes(group):
    for entry in REGISTRIES[group].entries():
        constructor = entry.constructor.from_spec if group == "model" else entry.constructor
        check_keywords(constructor, yaml_settings(group, entry.name), f"{group}={entry.name}", group)


# ---- models: one training step on every input kind and task they declare


def tiny_data(kind: str, task: str):
    """A DataSpec and one batch (inputs as model arguments, targets) of ``kind`` for ``task``."""
    torch.manual_seed(0)
    num_classes = {"regression": 0, "binary": 2, "multiclass": 3}[task]
    shape, vocab_size = {"tabular": ((6,), 0), "image": ((1, 8, 8), 0), "sequence": ((5, 3), 0),
                         "tokens": ((7,), 20)}[kind]
    if kind == "tokens":
        inputs = (torch.randint(1, vocab_size, (ROWS, *shape)), torch.randint(1, shape[0] + 1, (ROWS,)))
    else:
        inputs = (torch.randn(ROWS, *shape),)
    targets = torch.randn(ROWS) if task == "regression" else torch.arange(ROWS) % num_classes
    spec = DataSpec(task=task, input_shape=shape, kind=kind, num_classes=num_classes,
                    vocab_size=vocab_size)
    return spec, inputs, targets


def model_cases():
    # Every kind with the first task, and every task on the first kind.
    for entry in MODELS.entries():
        for kind in entry.input_kinds:
            for task in entry.tasks if kind == entry.input_kinds[0] else entry.tasks[:1]:
                yield pytest.param(entry.name, kind, task, id=f"{entry.name}-{kind}-{task}")


@pytest.mark.parametrize("name, kind, task", model_cases())
def test_every_model_takes_a_training_step_on_every_kind_it_declares(name, kind, task):
    spec, inputs, targets = tiny_data(kind, task)
    objective = build_objective(AUTO, {}, spec)
    model = create_model(name, spec, objective.output_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    loss = objective.loss(model(*inputs), targets)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", [e.name for e in MODELS.entries() if e.stackable])
def test_stackable_models_train_as_k_copies_under_vmap(name):
    from torch.func import functional_call, grad, stack_module_state

    entry = MODELS[name]
    spec, (x,), targets = tiny_data(entry.input_kinds[0], entry.tasks[0])
    objective = build_objective(AUTO, {}, spec)
    models = [create_model(name, spec, objective.output_size) for _ in range(2)]
    params, buffers = stack_module_state(models)
    template = copy.deepcopy(models[0]).to("meta")

    def member_loss(member_params, member_buffers):
        return objective.loss(functional_call(template, (member_params, member_buffers), (x,)), targets)

    losses = torch.vmap(member_loss)(params, buffers)
    grads = torch.vmap(grad(member_loss))(params, buffers)
    for k, model in enumerate(models):
        alone = objective.loss(model(x), targets)
        alone.backward()
        assert torch.allclose(losses[k], alone, atol=1e-5)
        for key, parameter in model.named_parameters():
            assert torch.allclose(grads[key][k], parameter.grad, atol=1e-5), key


def test_refusals_name_the_models_and_data_that_fit():
    spec = DataSpec(task="regression", input_shape=(4,), kind="tabular")
    with pytest.raises(DltrainError, match=r"model=logistic is for binary .*use model=linear or model=mlp\.$"):
        create_model("logistic", spec, 1)
    assert kind_data("image") == "data=digits_images, mnist, fashion_mnist, cifar10, image_folder"
    assert kind_data("sequence").startswith("data=time_series, or data.as_sequence=true with digits, ")
    for kind in INPUT_KINDS:
        assert {e.kind for e in DATASETS.where(kind=kind)} <= {kind}


# ---- losses, optimizers, schedulers, regularization


@pytest.mark.parametrize("name, task", [(e.name, t) for e in LOSSES.entries() for t in e.tasks])
def test_every_loss_on_every_task_it_serves(name, task):
    spec, _, targets = tiny_data("tabular", task)
    objective = build_objective(name, yaml_settings("loss", name), spec)
    expected = spec.num_classes if LOSSES[name].output_size == "num_classes" else 1
    assert objective.output_size == expected
    outputs = torch.randn(ROWS, expected, requires_grad=True)
    loss = objective.loss(outputs, targets)
    loss.backward()
    assert torch.isfinite(loss) and outputs.grad.abs().sum() > 0
    others = [t for t in ("regression", "binary", "multiclass") if t not in LOSSES[name].tasks]
    for other in others:
        with pytest.raises(DltrainError, match=rf"^loss={name} is .* but this data is .*; use loss=\w+"):
            build_objective(name, {}, tiny_data("tabular", other)[0])


def test_loss_auto_is_the_registered_default_of_each_task():
    for task, name in (("regression", "mse"), ("binary", "bce"), ("multiclass", "cross_entropy")):
        assert build_objective(AUTO, {}, tiny_data("tabular", task)[0]).loss_name == name


def _linear_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 1))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_from_its_yaml_and_steps(name):
    model = _linear_model()
    lr = OmegaConf.load(REPO / "conf" / "optimizer" / f"{name}.yaml").lr
    settings = SimpleNamespace(name=name, lr=lr, options=yaml_settings("optimizer", name))
    optimizer, regularizer = build_optimizer(model, settings, SimpleNamespace(name="none", options={}))
    before = model[0].weight.detach().clone()
    model(torch.randn(ROWS, 3)).square().mean().backward()
    optimizer.step()
    assert isinstance(optimizer, OPTIMIZERS[name].constructor) and regularizer.l1 == 0
    assert not torch.equal(before, model[0].weight)


@pytest.mark.parametrize("name", REGULARIZATION.names())
def test_every_regularization_builds_from_its_yaml(name):
    model, entry = _linear_model(), REGULARIZATION[name]
    settings = SimpleNamespace(name="sgd", lr=0.1, options={})
    penalty = SimpleNamespace(name=name, options=yaml_settings("regularization", name))
    optimizer, regularizer = build_optimizer(model, settings, penalty)
    decays = [g["weight_decay"] for g in optimizer.param_groups]
    assert (max(decays) > 0) == entry.weight_decay and min(decays) == 0  # biases and norms never decay
    assert (regularizer.l1 > 0) == entry.l1
    if entry.l1:
        assert regularizer.penalty().detach() > 0
    with pytest.raises(DltrainError, match=rf"regularization={name} has no setting 'colour'"):
        build_optimizer(model, settings, SimpleNamespace(name=name, options={"colour": 1}))


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_builds_from_its_yaml_and_steps_when_its_metadata_says(name):
    model = _linear_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    entry = SCHEDULERS[name]
    schedule = build_schedule(optimizer, SimpleNamespace(name=name, options=yaml_settings("scheduler", name)),
                              epochs=3, steps_per_epoch=2, mode="min")
    assert (schedule.per_batch, schedule.needs_metric) == (entry.per_batch, entry.needs_metric)
    assert (schedule.scheduler is None) == (name == "none")
    for _ in range(2):
        optimizer.step()
        schedule.after_batch()
    schedule.after_epoch(1.0)
    with pytest.raises(DltrainError, match=rf"scheduler={name} has no setting 'optimizer'"):
        build_schedule(optimizer, SimpleNamespace(name=name, options={"optimizer": 1}),
                       epochs=3, steps_per_epoch=2, mode="min")


# ---- extending: one module plus one YAML, exactly the README's files


def readme_files() -> dict[str, str]:
    """The files the README's "Extending dltrain" section shows: path -> text."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## Extending dltrain"):]
    section = section[:section.index("\n## ", 1)]
    files = dict(re.findall(r"^`([\w/]+\.(?:py|yaml))`:\n\n```(?:python|yaml)\n(.*?)^```", section,
                            re.MULTILINE | re.DOTALL))
    assert sorted(files) == ["conf/data/circles.yaml", "conf/loss/hinge.yaml", "conf/model/tiny.yaml",
                             "dltrain/data/circles.py", "dltrain/models/tiny.py",
                             "dltrain/train/losses/hinge.py"]
    return files


@pytest.mark.slow
def test_adding_a_model_a_dataset_and_a_loss_is_one_module_plus_one_yaml_each(tmp_path):
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("dltrain", "conf", "recipes"):
        # symlinks=True keeps conf/recipe a link to ../recipes, as in the checkout.
        shutil.copytree(REPO / folder, tmp_path / folder, symlinks=True, ignore=ignore)
    assert (tmp_path / "conf" / "recipe").resolve() == (tmp_path / "recipes").resolve()
    for path, text in readme_files().items():
        assert not (tmp_path / path).exists()
        (tmp_path / path).write_text(text)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    commands = [["model=tiny"], ["model=tiny", "data=circles", "loss=hinge"]]
    for overrides in commands:
        before = set(tmp_path.glob("outputs/*/*/metrics.json"))
        result = subprocess.run(
            [sys.executable, "-m", "dltrain", "fit", *overrides, "trainer.epochs=1", "logger=none",
             "trainer.progress=false"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        (metrics_path,) = set(tmp_path.glob("outputs/*/*/metrics.json")) - before
        metrics = json.loads(metrics_path.read_text())
        assert metrics["status"] == "finished"
        config = OmegaConf.load(metrics_path.parent / ".hydra" / "config.yaml")
        assert config.model.name == "tiny" and config.model.hidden_size == 8


def test_each_loss_module_registers_its_own_losses():
    import dltrain.train.losses.classification as classification
    import dltrain.train.losses.regression as regression

    for module, names in ((regression, ("mse", "l1", "huber")), (classification, ("bce", "cross_entropy"))):
        assert all(LOSSES[name].constructor.__module__ == module.__name__ for name in names)
