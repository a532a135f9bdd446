"""The config layer in-process: every unknown key refused with a did-you-mean, ~key restoring its
option's default, one default per key (the option's YAML), eval's overrides read by Hydra."""

import dataclasses
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, run_folders
from dltrain.config import (
    CVSettings,
    LoggerSettings,
    MlflowSettings,
    TensorBoardSettings,
    TrainerSettings,
    apply_overrides,
    compose,
    config_dir,
    group_options,
    option_settings,
    read_cv_settings,
    read_settings,
)
from dltrain.config.groups import SETTING_GROUPS, default_choices
from dltrain.config.settings import RULES, check_keys, default_setting, with_defaults
from dltrain.errors import DltrainError

REFUSED = {
    "+data.shufle=false": "data=digits has no setting 'shufle'; did you mean data.shuffle?",
    "+trainer.foo=1": "trainer=default has no setting 'foo'; its settings are: device, epochs, seed,",
    "++trainer.foo=1": "trainer=default has no setting 'foo'; its settings are: device, epochs, seed,",
    "trainer.epoch=2": "There is no setting 'trainer.epoch' to override; did you mean trainer.epochs?",
    "trainer.patience=3": "did you mean trainer.early_stopping.patience?",
    "+trainer.early_stopping.foo=1": "its settings are: early_stopping.patience, early_stopping.min_delta.",
    "+cv.foo=1": "cv=default has no setting 'foo'; its settings are: strategy, shuffle, seed, repeats,",
    "+logger.foo=1": "logger=tensorboard has no setting 'foo'; its settings are: tensorboard.log_every_n_steps,",
    "+foo=1": "There is no top-level setting 'foo'; the top-level settings are resume, k and the groups",
    "+modle.depth=3": "There is no top-level setting 'modle'; did you mean model?",
    "+model.depth=3": "model=mlp has no setting 'depth'; its settings are: hidden_sizes, activation,",
    "~trainer.foo": "There is no setting 'trainer.foo' to delete; the settings of trainer=default are:",
    "+trainer.epochs=3": "trainer.epochs is already a setting; change it with trainer.epochs=VALUE (without +).",
}


@pytest.mark.parametrize("override", sorted(REFUSED))
def test_every_unknown_key_is_refused_in_one_sentence(override):
    with pytest.raises(DltrainError) as caught:
        compose([override])
    message = str(caught.value)
    assert REFUSED[override] in message, message
    assert message.count(". ") == 0 and message.endswith((".", "?")), message  # one sentence


def test_keys_of_the_selected_option_are_the_ones_read():
    assert read_settings(compose(["model=cnn", "model.stride=2"])).model.options["stride"] == 2
    with pytest.raises(DltrainError, match="did you mean model.hidden_sizes"):
        compose(["model=cnn", "model.hidden=[8]"])
    with pytest.raises(DltrainError, match="model=cnn has no setting 'activation'"):
        compose(["model=cnn", "++model.activation=relu"])
    compose(["+hydra.job.env_set.DLTRAIN_TEST=1"])  # hydra's own keys are Hydra's business


def test_delete_restores_the_default_of_the_options_own_yaml():
    yaml_epochs = yaml.safe_load((config_dir() / "trainer" / "default.yaml").read_text())["epochs"]
    assert read_settings(compose(["recipe=binary_mlp_sigmoid"])).trainer.epochs != yaml_epochs
    cfg = compose(["recipe=binary_mlp_sigmoid", "~trainer.epochs"])
    assert cfg.trainer.epochs == yaml_epochs  # in the composed config too (dltrain config shows it)
    assert read_settings(cfg).trainer.epochs == yaml_epochs
    # The option's own default, not the group's first option's: contiguous folds are kfold.
    assert read_cv_settings(compose(["cv=contiguous", "~cv.strategy"])).strategy == "kfold"
    assert read_settings(compose(["model=cnn", "~model.channels"])).model.options["channels"] == [10, 20]
    assert read_settings(compose(["~model"])).model.name == default_choices()["model"]
    assert read_cv_settings(compose(["~k"])).k == 5


def test_a_config_lacking_keys_reads_as_one_with_every_default():
    """What Hydra's own composition (a fit job) leaves after ~key reads as its default too."""
    full = compose([])
    assert read_settings(full) == read_settings(compose([f"~trainer.{key}" for key in
                                                         ("epochs", "early_stopping", "precision")]))
    from omegaconf import OmegaConf

    bare = OmegaConf.create({"data": {"name": "iris"}})  # every other group and key from conf/
    settings = read_settings(bare)
    assert settings.data.batch_size == option_settings("data", "iris")["batch_size"]
    assert settings.trainer == TrainerSettings() and settings.logger == LoggerSettings()


def test_each_default_lives_in_one_place():
    """The settings dataclasses carry no default of their own: each comes from the YAML of the
    option config.yaml selects, and the reader has no fallback for a key the YAML defines."""
    for cls in (TrainerSettings, LoggerSettings, TensorBoardSettings, MlflowSettings, CVSettings):
        for item in dataclasses.fields(cls):
            assert item.default is dataclasses.MISSING, f"{cls.__name__}.{item.name} has a literal default"
    trainer_yaml = option_settings("trainer", "default")
    assert TrainerSettings().epochs == trainer_yaml["epochs"]
    assert TrainerSettings().patience == trainer_yaml["early_stopping"]["patience"]
    assert CVSettings().k == yaml.safe_load((config_dir() / "config.yaml").read_text())["k"]
    assert CVSettings(strategy="repeated").repeats == option_settings("cv", "default")["repeats"]
    assert CVSettings().repeats == 1  # repeats applies to strategy=repeated only
    # Every rule's key is defined by the YAML of the options it applies to, nowhere else.
    every_option = {"trainer": group_options("trainer"), "logger": ["tensorboard", "mlflow"], "cv": group_options("cv"),
                    "data": group_options("data"), "optimizer": group_options("optimizer")}
    for group, options in every_option.items():
        for option in options:
            settings = option_settings(group, option)
            # a logger's settings are under its own name: logger.tensorboard.graph, logger.mlflow.experiment
            rules = [r for r in RULES[group] if group != "logger" or r.key.startswith(f"{option}.")]
            assert rules, f"{group}={option}"
            for rule in rules:
                node = settings
                for part in rule.key.split("."):
                    assert part in node, f"{group}={option} does not define {rule.key}"
                    node = node[part]
    assert default_setting("", "k") == 5


@pytest.mark.parametrize("group", SETTING_GROUPS)
def test_every_key_an_option_defines_is_accepted(group):
    for option in group_options(group):
        check_keys(compose([f"{group}={option}"], validate=False))


@pytest.mark.parametrize("recipe", sorted(group_options("recipe")))
def test_every_recipe_sets_only_keys_its_options_read(recipe):
    try:
        cfg = compose([f"recipe={recipe}"], validate=False)
    except DltrainError as error:  # a recipe whose Hydra plugin is not installed
        assert "needs a Hydra plugin" in str(error)
        pytest.skip(str(error))
    check_keys(cfg)
    if recipe not in ("house_prices_kfold", "course_diabetes_mlp"):  # need data.path
        read_settings(cfg)


def test_eval_overrides_are_read_by_hydras_grammar():
    cfg = compose(["data=iris"])
    changed = apply_overrides(cfg.copy(), ["model=cnn", "model.channels=[4, 8]", "optimizer.lr=1e-3",
                                           "~trainer.epochs", "data.name='wine'"])
    settings = read_settings(changed)
    assert settings.model.name == "cnn" and settings.model.options["channels"] == [4, 8]
    assert settings.optimizer.lr == 1e-3 and settings.data.name == "wine"
    assert settings.trainer.epochs == option_settings("trainer", "default")["epochs"]
    with pytest.raises(DltrainError, match="did you mean data.shuffle"):
        read_settings(apply_overrides(cfg.copy(), ["data.shufle=false"]))
    with pytest.raises(DltrainError, match="Could not read the override"):
        apply_overrides(cfg.copy(), ["model.hidden_sizes=[64,"])
    with pytest.raises(DltrainError, match="Unknown model 'foo'"):
        apply_overrides(cfg.copy(), ["model=foo"])
    with pytest.raises(DltrainError, match="is a sweep"):
        apply_overrides(cfg.copy(), ["optimizer.lr=0.1,0.2"])


def test_with_defaults_leaves_the_given_config_alone():
    cfg = compose(["~trainer.epochs"], validate=False)
    from omegaconf import OmegaConf, open_dict

    with open_dict(cfg):
        del cfg.trainer["seed"]
    restored = with_defaults(cfg)
    assert "seed" not in cfg.trainer and restored.trainer.seed == OmegaConf.select(compose([]), "trainer.seed")


def test_cli_refuses_an_unknown_key_with_exit_2_and_one_sentence_on_stderr(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "dltrain", "fit", "+data.shufle=false", "trainer.epochs=1"],
                            cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "did you mean data.shuffle?" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert run_folders(tmp_path / "outputs") == []


def test_a_missing_hydra_plugin_is_named_with_its_pip_command():
    from dltrain.config.explain import missing_plugin

    assert "pip install 'dltrain[search]'" in missing_plugin("Could not find 'hydra/sweeper/optuna'")
    unknown = "Could not find 'hydra/sweeper/nosuch' Available options in 'hydra/sweeper': basic Config search path"
    assert missing_plugin(unknown) == "Unknown hydra/sweeper 'nosuch'; valid options are: basic."
    assert missing_plugin("some other Hydra error") is None


@pytest.mark.parametrize("override, sentence", [
    ("trainer.seed=-1", "trainer.seed must be at least 0, got -1."),
    ("trainer.seed=4294967296", "trainer.seed must be less than 4294967296, got 4294967296."),
    ("cv.seed=4294967296", "cv.seed must be less than 4294967296, got 4294967296."),
])
def test_seeds_are_what_numpy_and_scikit_learn_take(override, sentence):
    """Once a traceback from scikit-learn's train_test_split (a checkpoint's config, or typed)."""
    with pytest.raises(DltrainError) as caught:
        read_cv_settings(compose([override])) if override.startswith("cv.") else compose([override])
    assert str(caught.value) == sentence
