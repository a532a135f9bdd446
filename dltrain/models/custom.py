"""Your own model: ``model=custom model._target_=my_pkg.nets.Net`` builds an ``nn.Module`` class
of yours, sized from the DataSpec as the built-in ones are.

The class is imported only from the installed environment or the working directory, never from
a run folder being read (``reading_run``), and is checked to be an ``nn.Module`` subclass before
it is called; it receives plain data only: the sizes its constructor asks for by name (SIZES) and
the other ``model.*`` settings, checked against its signature. A run folder names its class in
its config, so evaluating, predicting, resuming or exporting it imports that module (as
importing any package runs its code)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from dltrain.checks import _first_line, check_keywords
from dltrain.errors import DltrainError

CUSTOM = "custom"
TARGET = "_target_"
# What a constructor may ask for by name, filled from the data (never typed by hand).
SIZES = ("in_features", "in_channels", "num_classes", "vocab_size", "output_size", "input_shape")
_EXAMPLE = "my_pkg.nets.Net"

# The run folders being read in this context (eval, predict, resume, export): no module is
# imported from inside one of them, and none of them is searched for modules.
_FOREIGN: ContextVar[tuple[Path, ...]] = ContextVar("dltrain_foreign_folders", default=())


@contextmanager
def reading_run(folder):
    """While reading the run folder ``folder`` (which may come from anyone), a custom model's
    class is never imported from a file inside it."""
    token = _FOREIGN.set((*_FOREIGN.get(), Path(folder).resolve()))
    try:
        yield
    finally:
        _FOREIGN.reset(token)


# --------------------------------------------------------------------------- plain data


def plain_settings(model: dict) -> dict:
    """The ``model`` group of a config (name, _target_ and the options, not resolved) checked to
    be plain data: names as keys, numbers, strings, booleans, null, and lists or groups of them;
    no other key Hydra would act on (``_args_``, ``_partial_``, a nested ``_target_``) and no
    ``${...}`` interpolation. Returns the options (without name and _target_)."""
    target = model.get(TARGET)
    if target is None or target == "???":
        raise DltrainError(f"model=custom needs the class of your nn.Module: set it with "
                           f"model._target_={_EXAMPLE} (importable from the working directory or an "
                           f"installed package).")
    if not isinstance(target, str):
        raise DltrainError(f"model._target_ must name a class such as {_EXAMPLE}, got {target!r}.")
    options = {key: value for key, value in model.items() if key not in ("name", TARGET)}
    for key, value in options.items():
        _check_plain(value, f"model.{key}", key)
    _check_plain(target, "model._target_", TARGET)
    return options


def _check_plain(value, where: str, key) -> None:
    if not isinstance(key, str) or (key.startswith("_") and key.endswith("_") and key != TARGET):
        raise DltrainError(f"{where} is a key Hydra would act on; a custom model's settings are plain "
                           f"values (numbers, strings, booleans, lists) passed to its constructor.")
    if isinstance(value, dict):
        for name, item in value.items():
            if name == TARGET:
                raise DltrainError(f"{where}.{TARGET} would build an object; a custom model's "
                                   f"settings are plain values, and only model._target_ names a class.")
            _check_plain(item, f"{where}.{name}", name)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]", "")
    elif isinstance(value, str):
        if "${" in value:
            raise DltrainError(f"{where} is an interpolation ({value[:40]!r}); a custom model's "
                               f"settings are plain values: give the value itself.")
    elif value is not None and not isinstance(value, (bool, int, float)):
        raise DltrainError(f"{where} must be a number, a string, true/false or a list, "
                           f"got a {type(value).__name__}.")


# --------------------------------------------------------------------------- the class


def model_class(target: str) -> type:
    """The ``nn.Module`` subclass ``target`` (module.Class) names, imported from the installed
    environment or the working directory (never from a run folder being read); one sentence for
    a name that is not one, a module that is missing or fails to import, or anything but an
    nn.Module subclass."""
    from torch import nn

    module_name, _, class_name = target.rpartition(".")
    if not module_name or not all(part.isidentifier() for part in target.split(".")):
        raise DltrainError(f"model._target_ must name a class as module.Class (such as {_EXAMPLE}), "
                           f"got {target!r}.")
    module = _import(module_name, target)
    found = getattr(module, class_name, None)
    if found is None:
        raise DltrainError(f"model._target_={target}: the module {module_name} has no {class_name}; "
                           f"name a class it defines.")
    if not (isinstance(found, type) and issubclass(found, nn.Module)):
        raise DltrainError(f"model._target_={target} is a {type(found).__name__}, not an nn.Module "
                           f"subclass; name the class of your torch.nn.Module.")
    return found


def _import(module_name: str, target: str):
    """``module_name`` imported package by package, each checked to lie outside the run folders
    being read before its code runs."""
    foreign = _FOREIGN.get()
    parts = module_name.split(".")
    with _search_path(foreign):
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name not in sys.modules:
                _import_one(name, target, foreign)
    return sys.modules[module_name]


def _import_one(name: str, target: str, foreign: tuple[Path, ...]) -> None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        spec = None
    if spec is None:
        cwd = os.getcwd()
        where = (f"the working directory ({cwd})" if not any(_within(cwd, f) for f in foreign) else
                 f"the working directory, which is inside the run folder being read and so not searched")
        raise DltrainError(f"model._target_={target}: there is no module {name} in the installed "
                           f"packages or {where}.")
    places = [spec.origin] if spec.origin and spec.has_location else []
    places += list(spec.submodule_search_locations or [])
    inside = next((folder for folder in foreign for place in places if _within(place, folder)), None)
    if inside is not None:
        raise DltrainError(f"model._target_={target}: the module {name} lies inside the run folder "
                           f"{str(inside)!r}, and dltrain never runs code from a run folder; install "
                           f"the module or run from the folder that holds it.")
    try:
        importlib.import_module(name)
    except Exception as error:  # the user's module: whatever it raises is its own failure
        raise DltrainError(f"model._target_={target}: importing {name} failed "
                           f"({type(error).__name__}: {_first_line(error)}).") from None


@contextmanager
def _search_path(foreign: tuple[Path, ...]):
    """While importing the class: the working directory is searched too (after the installed
    packages; the ``dltrain`` script does not search it otherwise), and no run folder being read
    is searched at all. sys.path is restored afterwards, so nothing else dltrain imports later
    is looked for in the working directory."""
    cwd = os.getcwd()
    saved = list(sys.path)
    entries = [e for e in sys.path if not (isinstance(e, str) and any(_within(e or cwd, f) for f in foreign))]
    if not any(isinstance(e, str) and _same(e or cwd, cwd) for e in saved):
        if not any(_within(cwd, f) for f in foreign):
            entries.append(cwd)
    sys.path[:] = entries
    try:
        yield
    finally:
        sys.path[:] = saved


def _same(a: str, b: str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _within(place: str, folder: Path) -> bool:
    try:
        return Path(place).resolve().is_relative_to(folder)
    except OSError:
        return False


# --------------------------------------------------------------------------- its settings


def check_settings(target: str, options: dict) -> type:
    """The class, once ``options`` (the model.* settings besides name and _target_) are ones its
    constructor takes, and every argument it needs is either a size or given."""
    cls = model_class(target)
    parameters = _parameters(cls, target)
    named = {name: p for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    accepted = [name for name in named if name not in SIZES]
    for key in options:
        if key in SIZES:
            raise DltrainError(f"model.{key} comes from the data, never typed by hand: {target} gets it "
                               f"when its constructor has an argument named {key}; drop model.{key}.")
        if key not in named and not takes_any:
            raise DltrainError(f"{target} takes no argument {key!r}; the settings it accepts are: "
                               f"{', '.join(accepted) or 'none'} (sizes from the data: "
                               f"{', '.join(n for n in named if n in SIZES) or 'none'}).")
    missing = [name for name, p in parameters.items() if p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and name not in SIZES and name not in options]
    if missing:
        raise DltrainError(f"{target} needs {missing[0]!r}, which has no default: set it with "
                           f"+model.{missing[0]}=VALUE.")
    check_keywords(cls, {k: v for k, v in options.items() if k in named}, f"model=custom ({target})", "model")
    return cls


def _parameters(cls: type, target: str) -> dict:
    try:
        return dict(inspect.signature(cls).parameters)
    except (TypeError, ValueError) as error:
        raise DltrainError(f"model._target_={target}: its constructor's signature cannot be read "
                           f"({_first_line(error)}); give it named arguments.") from None


def sizes_for(cls: type, spec, output_size: int, target: str) -> dict:
    """The sizes ``cls``'s constructor asks for by name, from the data's spec."""
    wanted = [name for name in _parameters(cls, target) if name in SIZES]
    sizes = {}
    for name in wanted:
        if name == "in_features":
            sizes[name] = int(spec.in_features)
        elif name == "input_shape":
            sizes[name] = tuple(int(s) for s in spec.input_shape)
        elif name == "output_size":
            sizes[name] = int(output_size)
        elif name == "in_channels":
            if spec.kind != "image" or len(spec.input_shape) != 3:
                raise DltrainError(f"{target} asks for in_channels, but this data is {spec.kind} of shape "
                                   f"{tuple(spec.input_shape)}, which has no channels; ask for input_shape "
                                   f"or in_features instead.")
            sizes[name] = int(spec.input_shape[0])
        elif name == "num_classes":
            if spec.task == "regression":
                raise DltrainError(f"{target} asks for num_classes, but this data has a regression target; "
                                   f"ask for output_size (the outputs the loss needs) instead.")
            sizes[name] = int(spec.num_classes)
        elif name == "vocab_size":
            if not spec.vocab_size:
                raise DltrainError(f"{target} asks for vocab_size, but this data is {spec.kind}, not text "
                                   f"with a vocabulary.")
            sizes[name] = int(spec.vocab_size)
    return sizes


def build_custom(spec, output_size: int, **settings):
    """``model=custom``: the class ``settings['_target_']`` names, built with the sizes it asks for
    and its other settings; one sentence naming the class when its constructor fails."""
    from torch import nn

    target = settings.pop(TARGET, None)
    options = plain_settings({TARGET: target, **settings})
    cls = check_settings(target, options)
    arguments = {**sizes_for(cls, spec, output_size, target), **options}
    try:
        model = cls(**arguments)
    except Exception as error:  # the user's constructor: whatever it raises is its own failure
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items())
        raise DltrainError(f"{target}({shown}) failed: {type(error).__name__}: {_first_line(error)}.") from None
    if not isinstance(model, nn.Module):
        raise DltrainError(f"{target}(...) returned a {type(model).__name__}, not an nn.Module.")
    return model

