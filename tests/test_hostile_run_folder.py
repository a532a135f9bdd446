"""Property (issue 14): a run folder is untrusted input. Whatever is planted in its files —
garbage, cut-short or wrong-typed JSON and YAML, huge numbers, NaN, deep nesting, YAML tags and
alias bombs, Hydra interpolations and ``_target_`` / ``hydra:`` keys, hostile checkpoints and
preprocessing files, pickles whose ``__reduce__`` runs code, links out of the folder, to
directories or to themselves — ``dltrain runs``, ``eval``, ``predict``, ``fit resume=`` and
``tb`` exit 0 or 2 with one sentence: never a traceback, never a write outside the run folder,
never code from the folder run.

One finished run is trained per session (conftest.iris_fit_run). Each example copies it into a
fresh sandbox that also holds what a planted link may point at (plain files, a genuine copy of
the run, a folder, a HOME with a .bashrc) and the marker file every payload tries to create;
everything in the sandbox outside the run folder is fingerprinted (bytes, mtime, link target)
before the command and compared after it. The commands run in this process through the Typer
app, so an exception that escapes is seen as one."""

from __future__ import annotations

import builtins
import hashlib
import json
import operator
import os
import pickle
import shutil
import stat
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from conftest import copy_run

# Deterministic in CI: the same examples every run, nothing remembered between runs; a failing
# example is reported as drawn (at most three files, readable as they are: shrinking a command
# that trains takes minutes).
HOSTILE = settings(deadline=None, derandomize=True, database=None, print_blob=False,
                   phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                          HealthCheck.data_too_large])

MARKER = "@MARKER@"  # the file a payload creates if it runs: never may it exist
OUTSIDE = "@OUTSIDE@"  # a folder beside the run, holding files a link may point at


# --------------------------------------------------------------------------- the sandbox


class Sandbox:
    """``work/`` (the working directory, with the run under outputs/), ``outside/`` (plain files,
    a folder, a genuine copy of the run), ``home/`` (HOME, with a .bashrc), ``inputs/rows.csv``
    (for predict) and the marker path ``PWNED``."""

    def __init__(self, base: Path, genuine: Path, rows: bytes):
        self.base, self.genuine = base, genuine
        self.work, self.outside, self.home = base / "work", base / "outside", base / "home"
        self.marker = base / "PWNED"
        self.run = copy_run(genuine, self.work / "outputs")
        shutil.copytree(genuine, self.outside / "genuine", symlinks=True)
        (self.outside / "folder").mkdir()
        (self.outside / "folder" / "inner.txt").write_text("inside a folder outside the run\n")
        (self.outside / "notes.txt").write_text("a file outside the run: never dltrain's to write\n")
        self.home.mkdir()
        (self.home / ".bashrc").write_text("# the user's shell settings\n")
        self.rows = base / "inputs" / "rows.csv"
        self.rows.parent.mkdir()
        self.rows.write_bytes(rows)

    def fill(self, value):
        """``value`` with the placeholders replaced by this sandbox's paths."""
        if isinstance(value, str):
            return value.replace(MARKER, str(self.marker)).replace(OUTSIDE, str(self.outside))
        if isinstance(value, bytes):
            return value.replace(MARKER.encode(), str(self.marker).encode()).replace(
                OUTSIDE.encode(), str(self.outside).encode())
        if isinstance(value, dict):
            return {self.fill(k): self.fill(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.fill(v) for v in value)
        return value

    def genuine_bytes(self, name: str) -> bytes | None:
        path = self.genuine / name
        return path.read_bytes() if path.is_file() else None

    def fingerprint(self) -> dict:
        """Every entry of the sandbox outside the run folder: a link's target, a file's bytes and
        modification time, a folder's existence."""
        found = {}
        for folder, subfolders, files in os.walk(self.base):
            here = Path(folder)
            subfolders[:] = [s for s in subfolders if here / s != self.run]
            for name in [*subfolders, *files]:
                path = here / name
                info = os.lstat(path)
                if stat.S_ISLNK(info.st_mode):
                    found[str(path)] = ("link", os.readlink(path))
                elif stat.S_ISDIR(info.st_mode):
                    found[str(path)] = ("folder",)
                else:
                    digest = hashlib.sha256(path.read_bytes()).hexdigest()
                    found[str(path)] = ("file", info.st_size, info.st_mtime_ns, digest)
        return found


# --------------------------------------------------------------------------- what is planted


class _Delete:
    def __repr__(self):
        return "DELETE"


DELETE = _Delete()  # Edit(..., DELETE) removes the key


@dataclass(frozen=True)
class TensorOf:
    """A tensor, made when planted (the strategies stay free of torch)."""

    shape: tuple
    fill: float = 0.0
    dtype: str = "float32"

    def make(self):
        import torch

        return torch.full(self.shape, self.fill, dtype=getattr(torch, self.dtype))


def _tensors(value):
    if isinstance(value, TensorOf):
        return value.make()
    if isinstance(value, dict):
        return {k: _tensors(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_tensors(v) for v in value)
    return value


def _edited(node, where: tuple, value):
    """``node`` with the value at ``where`` replaced (or deleted): a str step is a key (added when
    missing), an int step the n-th key or item (modulo their number); a path that goes on past a
    plain value turns it into a mapping."""
    if not where:
        return value
    step, rest = where[0], where[1:]
    if isinstance(node, dict):
        keys = list(node)
        key = keys[step % len(keys)] if isinstance(step, int) and keys else str(step)
        node = dict(node)
        if rest or value is not DELETE:
            node[key] = _edited(node.get(key), rest, value)
        else:
            node.pop(key, None)
        return node
    if isinstance(node, (list, tuple)) and node:
        items = list(node)
        index = step % len(items) if isinstance(step, int) else 0
        if rest or value is not DELETE:
            items[index] = _edited(items[index], rest, value)
        else:
            del items[index]
        return tuple(items) if isinstance(node, tuple) else items
    return _edited({}, where, value) if value is not DELETE else None


class _RunsCode:
    """Unpickled, it runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return builtins.exec, (f"open({self.marker!r}, 'w').close()",)


class _Disguised:
    """Runs the code, then unpickles as ``inner`` (the genuine object): nothing looks wrong."""

    def __init__(self, code: _RunsCode, inner):
        self.code, self.inner = code, inner

    def __reduce__(self):
        return operator.getitem, ((self.code, self.inner), 1)


@dataclass(frozen=True)
class Raw:
    """These bytes."""

    data: bytes

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.write_bytes(box.fill(self.data))


@dataclass(frozen=True)
class Cut:
    """The genuine file, cut short (nothing when the run has none)."""

    keep: float

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        data = box.genuine_bytes(name) or b""
        path.write_bytes(data[: int(len(data) * self.keep)])


@dataclass(frozen=True)
class Text:
    """This text (JSON or YAML), placeholders filled."""

    text: str

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.write_text(box.fill(self.text))


@dataclass(frozen=True)
class Repeated:
    """``head`` written ``times`` times, then ``middle``, then ``tail`` as often: deep nesting or a
    huge number (kept as a recipe, so that no example carries megabytes)."""

    head: str
    times: int
    middle: str = ""
    tail: str = ""

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.write_text(self.head * self.times + self.middle + self.tail * self.times)


@dataclass(frozen=True)
class Data:
    """A value written as JSON (which YAML reads too)."""

    value: object

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.write_text(json.dumps(box.fill(self.value)))


@dataclass(frozen=True)
class Edit:
    """The genuine file (JSON, YAML, checkpoint or npz, by its name) with one value changed:
    valid-looking, but wrong."""

    where: tuple
    value: object

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        value = box.fill(self.value)
        genuine = box.genuine / name
        if name.endswith(".pt"):
            import torch

            source = genuine if genuine.is_file() else box.genuine / "last.pt"
            state = torch.load(source, weights_only=True)
            torch.save(_edited(state, self.where, _tensors(value)), path)
        elif name.endswith(".npz"):
            import numpy as np

            arrays = dict(np.load(genuine)) if genuine.is_file() else {"values": np.zeros(4)}
            arrays = _edited(arrays, self.where[:1], _tensors(value))
            with path.open("wb") as stream:
                np.savez(stream, **{k: np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                                    for k, v in arrays.items() if v is not None})
        elif name.endswith((".yaml", ".yml")):
            import yaml

            document = yaml.safe_load(genuine.read_text()) if genuine.is_file() else {}
            path.write_text(yaml.safe_dump(_edited(document, self.where, value)))
        else:
            document = json.loads(genuine.read_text()) if genuine.is_file() else {}
            path.write_text(json.dumps(_edited(document, self.where, value)))


@dataclass(frozen=True)
class Code:
    """A file that runs code when loaded carelessly: ``pickle`` (a plain payload), ``disguised``
    (runs, then returns the genuine object), ``torch`` (inside a checkpoint's dict), ``npz``
    (an object array)."""

    how: str

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        code = _RunsCode(box.marker)
        if self.how == "pickle":
            path.write_bytes(pickle.dumps(code))
        elif self.how == "disguised":
            path.write_bytes(pickle.dumps(_Disguised(code, _genuine_object(box, name))))
        elif self.how == "torch":
            import torch

            state = _genuine_object(box, name) if name.endswith(".pt") else {}
            torch.save({**(state if isinstance(state, dict) else {}), "payload": code}, path)
        elif self.how == "npz":
            import numpy as np

            with path.open("wb") as stream:
                np.savez(stream, values=np.array([code, 1], dtype=object))
        else:
            raise ValueError(self.how)


def _genuine_object(box: Sandbox, name: str):
    """The genuine file's content as the test (trusting its own session's run) reads it."""
    genuine = box.genuine / name
    if not genuine.is_file():
        return {}
    if name.endswith(".pt"):
        import torch

        return torch.load(genuine, weights_only=True)
    if name.endswith(".pkl"):
        return pickle.loads(genuine.read_bytes())  # the session's own run: trusted
    return {}


@dataclass(frozen=True)
class Pickled:
    """A well-formed pickle of plain data where an object was expected."""

    value: object

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.write_bytes(pickle.dumps(box.fill(self.value)))


@dataclass(frozen=True)
class Link:
    """A symlink instead of the file: to ``notes`` (a plain file outside), ``genuine`` (the same
    file of a genuine run outside, so the command goes on and may write), ``folder`` (outside),
    ``bashrc`` (HOME's), ``dangling``, ``itself`` or ``parent`` (a loop)."""

    to: str

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        target = {
            "notes": box.outside / "notes.txt", "genuine": box.outside / "genuine" / name,
            "folder": box.outside / "folder", "bashrc": box.home / ".bashrc",
            "dangling": box.outside / "missing", "itself": Path(path.name), "parent": Path(".."),
        }[self.to]
        os.symlink(target, path)


@dataclass(frozen=True)
class Folder:
    """A folder where a file was."""

    def make(self, path: Path, name: str, box: Sandbox) -> None:
        path.mkdir()
        (path / "inside.txt").write_text("x")


def plant(box: Sandbox, plants) -> None:
    """Write each (name, content) into the run folder: files first, then links and folders (so
    that nothing is written through a link planted by the same example)."""
    ordered = sorted(plants, key=lambda p: isinstance(p[1], (Link, Folder)))
    for name, content in ordered:
        if "*" in name:  # the events file, whose name has a time and process id in it
            found = sorted(box.run.glob(name))
            name = found[0].relative_to(box.run).as_posix() if found else name.replace("*", "0")
        path = box.run / name
        folders = [box.run / p for p in Path(name).parents if p != Path(".")]
        if any(folder.is_symlink() or folder.is_file() for folder in folders):
            continue  # its folder is a planted link (or a file): never plant through it
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        content.make(path, name, box)


# --------------------------------------------------------------------------- strategies

HOSTILE_STRINGS = [
    "${oc.env:HOME}", "${oc.env:DLTRAIN_SURELY_UNSET}", "${nope}", "${trainer.epochs}", "${model}",
    f"{OUTSIDE}/notes.txt", f"{OUTSIDE}/folder", "../../..", "/", "~", "-", "--logdir=/", "", "\x00",
    "[", "{", "running", "finished", "failed", "cuda:7", "mlp", "csv", "mnist", "nan", "inf", "1e999",
    MARKER, "builtins.open", "!!python/object/apply:os.system",
]
# Hydra's instantiate conventions and keys, in places a careless reader might pass to Hydra.
TARGETS = [
    {"_target_": "builtins.open", "_args_": [MARKER, "w"]},
    {"_target_": "builtins.exec", "_args_": [f"open({MARKER!r}, 'w').close()"]},
    {"hydra": {"callbacks": {"planted": {"_target_": "builtins.open", "_args_": [MARKER, "w"]}}}},
    {"hydra": {"run": {"dir": f"{OUTSIDE}/hydra_run"}, "output_subdir": f"{OUTSIDE}/hydra_subdir"}},
    {"name": "mlp", "_target_": "builtins.open", "_args_": [MARKER, "w"]},
]
RECORD_KEYS = ["status", "task", "monitor", "mode", "model", "data", "epochs_run", "final",
               "best_epoch", "best", "test", "stopped_early", "seconds", "model_summary", "history",
               "error", "objective", "mean", "std", "metric", "epoch", "val_loss", "val_accuracy",
               "folds", "k", "name"]

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(),
    st.sampled_from([2**63, 2**64 + 1, -1, 0]), st.sampled_from([1, -1]).map(lambda sign: sign * 10**400),
    st.floats(), st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e308, -0.0]),
    st.text(max_size=8), st.sampled_from(HOSTILE_STRINGS), st.integers(1000, 3000).map(lambda n: "x" * n),
)
JSON_VALUES = st.one_of(
    st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.sampled_from(RECORD_KEYS)), inner, max_size=3),
    ), max_leaves=6),
    st.sampled_from(TARGETS),
)
# A record (metrics.json, cv_summary.json) that looks right and is not.
RECORD = st.dictionaries(st.sampled_from(RECORD_KEYS), st.one_of(
    JSON_VALUES,
    st.dictionaries(st.sampled_from(RECORD_KEYS), JSON_VALUES, max_size=3),
    st.lists(st.dictionaries(st.sampled_from(RECORD_KEYS), JSON_VALUES, max_size=3), max_size=2),
), max_size=6)
DEEP = st.one_of(st.sampled_from([
    Repeated("[", 100_000, "", "]"), Repeated('{"a": ', 50_000, "1", "}"), Repeated("[", 100_000),
    Repeated("1", 5000), Repeated("-9", 1, "9" * 4000),
]), st.builds(Text, st.sampled_from([
    "1e999", "-1e999", "NaN", "[NaN, Infinity, -Infinity]", '{"status": "finished", "status": 5}', "\ufeff{}",
    '"just a string"', "null", "[]", "{}",
])))
YAML_TEXTS = st.sampled_from([
    f"!!python/object/apply:builtins.open ['{MARKER}', 'w']\n",
    f"- !!python/object/apply:os.system ['touch {MARKER}']\n",
    "model: !!python/name:os.system\n",
    f"model: !!python/object/new:builtins.open ['{MARKER}', 'w']\n",
    f"hydra:\n  callbacks:\n    planted:\n      _target_: builtins.open\n      _args_: ['{MARKER}', 'w']\n",
    f"_target_: builtins.open\n_args_: ['{MARKER}', 'w']\n",
    f"model:\n  name: mlp\n  _target_: builtins.exec\n  _args_: [\"open('{MARKER}', 'w').close()\"]\n",
    # An alias bomb, kept small (4^4 leaves), and a list that contains itself.
    "a: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\nc: &c [*b, *b, *b, *b]\nd: [*c, *c, *c, *c]\n",
    "- &a [*a]\n", "&a {model: *a}\n", "<<: *nowhere\n",
    "model: ${oc.env:HOME}\n", "data: {name: '${oc.env:DLTRAIN_SURELY_UNSET}'}\n",
    "trainer: {epochs: '${trainer.epochs}'}\n", "!!binary aGVsbG8=\n", "!!set {a, b}\n",
    "? [a, b]\n: c\n", "- 2001-12-14\n- 2001-12-14t21:59:43.10-05:00\n", "started: 2001-12-14\n",
    "--- [a]\n--- [b]\n", "\t- tab\n", "{a: 1, a: 2}\n",
    "- model=mlp\n- 5\n- null\n- {a: 1}\n- [x]\n", "just a string\n", "123\n", "~\n",
])
# What a planted .hydra/overrides.yaml may hold.
HOSTILE_OVERRIDES = [
    "+hydra.callbacks.planted._target_=builtins.open", f"+hydra.callbacks.planted._args_=[{MARKER},w]",
    f"hydra.run.dir={OUTSIDE}/hydra_run", f"++hydra.run.dir={OUTSIDE}/hydra_run",
    f"hydra.output_subdir={OUTSIDE}/hydra_subdir", f"+hydra.output_subdir={OUTSIDE}/hydra_subdir",
    "hydra/launcher=basic", "hydra.job.chdir=true", f"+hydra.job.env_set.HOME={OUTSIDE}",
    "hydra/job_logging=disabled", "data.standardize=false", "optimizer=sgd", "model.hidden_sizes=[8]",
    "trainer.epochs=16", "trainer.epochs=${oc.env:HOME}", "+x=1", "~model", f"resume={OUTSIDE}",
    "data=csv", f"data.path={OUTSIDE}/notes.txt", "model=mlp", "'", "", "=", "a b c", "-m",
    f"data.root={OUTSIDE}/data", "data=mnist", "data.download=true", "trainer.devices=2",
]
OVERRIDE_LISTS = st.lists(st.one_of(st.sampled_from(HOSTILE_OVERRIDES), SCALARS, JSON_VALUES), max_size=4)

TENSORS = st.sampled_from([
    TensorOf((0,)), TensorOf((3,)), TensorOf((128, 5)), TensorOf((2, 2), float("nan")),
    TensorOf((3,), float("inf")), TensorOf((3,), 1.0, "int8"), TensorOf((2,), 0.0, "complex64"),
    TensorOf(()), TensorOf((4, 4, 4)), TensorOf((5,), 0.0, "bool"), TensorOf((625,), 0.0, "uint8"),
])
CHECKPOINT_VALUES = st.one_of(JSON_VALUES, TENSORS, st.dictionaries(st.text(max_size=6), TENSORS, max_size=3),
                              st.lists(TENSORS, max_size=3))
CHECKPOINT_PLACES = st.one_of(st.sampled_from([
    (), ("model",), ("model", 0), ("model", 1), ("model", 3), ("model", "stray.weight"), ("config",),
    ("config", "model"), ("config", "model", "name"), ("config", "model", "hidden_sizes"),
    ("config", "model", "_target_"), ("config", "data"), ("config", "data", "name"),
    ("config", "data", "path"), ("config", "trainer", "device"), ("config", "trainer", "seed"),
    ("config", "trainer", "precision"), ("config", "hydra"), ("config", "_target_"), ("config", "loss"),
    ("config", "optimizer", "name"), ("spec",), ("spec", "task"), ("spec", "kind"),
    ("spec", "input_shape"), ("spec", "input_shape", 0), ("spec", "num_classes"),
    ("spec", "class_names"), ("spec", "class_names", 0), ("spec", "feature_names"),
    ("spec", "vocab_size"), ("spec", "target_std"), ("spec", "target_mean"), ("spec", "surprise"),
    ("epoch",), ("metrics",), ("optimizer",), ("optimizer", "state"), ("optimizer", "param_groups"),
    ("optimizer", "param_groups", 0, "lr"), ("optimizer", "param_groups", 0, "params"), ("scheduler",),
    ("trainer",), ("trainer", "rows"), ("trainer", "rows", 0), ("trainer", "stopping"),
    ("trainer", "stopping", "best_epoch"), ("trainer", "stopping", "best_value"),
    ("trainer", "generator"), ("trainer", "torch_rng"), ("trainer", "numpy_rng"),
    ("trainer", "numpy_rng", 1), ("trainer", "python_rng"), ("trainer", "python_rng", 1),
    ("trainer", "cursor"), ("trainer", "cursor", "step"), ("trainer", "scaler"), ("trainer", "cuda_rng"),
]), st.lists(st.integers(0, 20), min_size=1, max_size=3).map(tuple))
# Whole sections a hostile checkpoint may bring: data that downloads or reads outside the run,
# interpolations, Hydra keys, impossible shapes.
CHECKPOINT_EDITS = [
    Edit(("config", "data"), {"name": "mnist", "root": f"{OUTSIDE}/mnist", "download": True}),
    Edit(("config", "data"), {"name": "csv", "path": f"{OUTSIDE}/notes.txt", "target": -1}),
    Edit(("config", "data"), {"name": "csv", "path": "${oc.env:HOME}/.bashrc"}),
    Edit(("config", "data"), {"name": "image_folder", "root": OUTSIDE}),
    Edit(("config", "model", "hidden_sizes"), "${oc.env:DLTRAIN_SURELY_UNSET}"),
    Edit(("config", "trainer", "epochs"), "${trainer.epochs}"),
    Edit(("config", "hydra"), TARGETS[2]["hydra"]),
    Edit(("config", "model"), TARGETS[4]),
    Edit(("spec", "input_shape"), (10**9,)), Edit(("spec", "input_shape"), (-4,)),
    Edit(("spec", "input_shape"), ("a",)), Edit(("spec", "input_shape"), (3, 10**5, 10**5)),
    Edit(("spec", "num_classes"), 10**9), Edit(("spec", "num_classes"), -3),
    Edit(("spec", "class_names"), ("a",) * 3), Edit(("spec", "class_names"), "abc"),
    Edit(("spec", "task"), "regression"), Edit(("spec", "kind"), "image"), Edit(("spec", "kind"), "tokens"),
    Edit(("spec", "vocab_size"), 10**12), Edit(("spec", "target_std"), float("nan")),
    Edit(("model", 0), TensorOf((128, 5))), Edit(("model", 0), TensorOf((128, 4), float("nan"))),
    Edit(("model",), {}), Edit(("model",), DELETE), Edit(("config",), DELETE), Edit(("spec",), DELETE),
    Edit(("trainer", "cursor"), {"epoch": 10**9, "step": -1}), Edit(("trainer", "cursor"), {"epoch": 3}),
    Edit(("trainer", "rows"), [{"epoch": "x"}]), Edit(("trainer", "rows"), 5),
    Edit(("trainer", "stopping"), {}), Edit(("trainer", "python_rng"), (3, (1, 2), None)),
    Edit(("trainer", "numpy_rng"), ["MT19937", TensorOf((3,)), 0, 0, 0.0]),
    Edit(("trainer", "torch_rng"), TensorOf((3,), 0.0, "uint8")),
    Edit(("trainer", "generator"), TensorOf((3,), 0.0, "uint8")),
    Edit(("optimizer", "param_groups", 0, "lr"), "fast"), Edit(("optimizer", "state"), {"0": {"step": "x"}}),
    Edit(("epoch",), "fifteen"), Edit(("epoch",), 10**30),
]
LINKS = st.builds(Link, st.sampled_from(["notes", "genuine", "folder", "bashrc", "dangling", "itself",
                                         "parent"]))
ANYWHERE = st.one_of(st.builds(Raw, st.binary(max_size=64)), st.builds(Cut, st.floats(0, 1)), LINKS,
                     st.just(Folder()))
RECORD_PLACES = st.lists(st.one_of(st.integers(0, 20), st.sampled_from(RECORD_KEYS)), min_size=1, max_size=3)
STRUCTURED = st.one_of(ANYWHERE, st.builds(Data, JSON_VALUES), st.builds(Data, RECORD),
                       st.builds(Edit, RECORD_PLACES.map(tuple), JSON_VALUES | st.just(DELETE)))
JSON_FILE = st.one_of(STRUCTURED, DEEP)
# YAML is parsed in Python (libyaml's parser crashes the process on deep nesting): a few
# thousand levels already reach the recursion limit, and cost seconds where JSON's cost nothing.
YAML_FILE = st.one_of(STRUCTURED, st.builds(Text, YAML_TEXTS), st.builds(Data, OVERRIDE_LISTS),
                      st.sampled_from([Repeated("[", 1_000), Repeated("- ", 1_000, "x\n")]))
CHECKPOINT = st.one_of(ANYWHERE, st.sampled_from([Code("torch"), Code("pickle"), Code("disguised")]),
                       st.builds(Edit, CHECKPOINT_PLACES, CHECKPOINT_VALUES | st.just(DELETE)),
                       st.sampled_from(CHECKPOINT_EDITS))
PICKLE = st.one_of(ANYWHERE, st.sampled_from([Code("pickle"), Code("disguised")]), st.builds(Pickled, JSON_VALUES))
ARRAYS = st.one_of(ANYWHERE, st.just(Code("npz")), st.builds(Edit, st.integers(0, 10).map(lambda i: (i,)), TENSORS),
                   st.builds(Edit, st.just(("stray",)), TENSORS))
WRITTEN = st.one_of(LINKS, st.just(Folder()), st.builds(Raw, st.binary(max_size=16)))

FILES = {
    "metrics.json": JSON_FILE, ".hydra/config.yaml": YAML_FILE, ".hydra/overrides.yaml": YAML_FILE,
    ".hydra/hydra.yaml": YAML_FILE, ".hydra": st.one_of(LINKS, st.builds(Raw, st.binary(max_size=8))),
    # The files of a cross-validation, which make `dltrain runs` read the folder as one.
    "cv_summary.json": JSON_FILE, "fold_0/metrics.json": JSON_FILE, "fold_1.error": ANYWHERE,
    "multirun.yaml": YAML_FILE,
    "best.pt": CHECKPOINT, "last.pt": CHECKPOINT,
    # The fitted preprocessing: today's pickle, and the data files that replace it.
    "preprocessor.pkl": PICKLE, "preprocessing.json": JSON_FILE, "preprocessing.npz": ARRAYS,
    # Files the commands write: a planted link must be replaced, never followed.
    "eval.json": WRITTEN, "predictions.csv": WRITTEN, "dltrain.log": WRITTEN, ".lock": WRITTEN,
    "events.out.tfevents.*": st.one_of(WRITTEN, st.builds(Raw, st.binary(max_size=256))),
}


def plants(*names: str):
    """One to three of these files, each with hostile content."""
    per_file = st.one_of(*(st.tuples(st.just(n), FILES[n]) for n in names))
    return st.lists(per_file, min_size=1, max_size=3, unique_by=lambda p: p[0])


RUNS_FILES = ("metrics.json", ".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml", ".hydra",
              "cv_summary.json", "fold_0/metrics.json", "fold_1.error", "multirun.yaml", "best.pt")
LOAD_FILES = ("best.pt", "last.pt", "preprocessor.pkl", "preprocessing.json", "preprocessing.npz",
              "metrics.json", ".hydra/config.yaml", ".hydra")
RESUME_FILES = ("last.pt", "best.pt", ".hydra/overrides.yaml", ".hydra/config.yaml", ".hydra",
                "preprocessor.pkl", "preprocessing.json", "preprocessing.npz", "metrics.json",
                "dltrain.log", ".lock", "events.out.tfevents.*")


# --------------------------------------------------------------------------- running a command


@pytest.fixture(scope="module")
def rows_csv() -> bytes:
    """Three rows of iris features: the input of predict."""
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).frame.drop(columns="target").iloc[[0, 60, 120]].to_csv(index=False).encode()


@pytest.fixture
def sandboxes(tmp_path, iris_fit_run, rows_csv):
    """Makes one fresh sandbox per hypothesis example (tmp_path is shared by them all)."""
    import matplotlib.font_manager  # noqa: F401 - its font cache goes to the real HOME, once

    made = []

    def make() -> Sandbox:
        base = tmp_path / f"example_{len(made)}"
        base.mkdir()
        if made:
            shutil.rmtree(made[-1].base, ignore_errors=True)
        made.append(Sandbox(base, iris_fit_run, rows_csv))
        return made[-1]

    return make


def invoke(box: Sandbox, *words: str):
    """``dltrain WORDS`` in this process, in the sandbox's work folder with its HOME."""
    from typer.testing import CliRunner

    from dltrain.cli import app

    words = [box.fill(w).replace("RUN", str(box.run)) for w in words]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(box.work)
        return CliRunner().invoke(app, words, env={"HOME": str(box.home)})


def problems(box: Sandbox, before: dict, result, command) -> list[str]:
    """What the property forbids, in words (empty when the command behaved)."""
    found = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        found.append("escaped: " + "".join(traceback.format_exception(*result.exc_info)))
    if result.exit_code not in (0, 2):
        found.append(f"exit code {result.exit_code}")
    if "Traceback" in result.output:
        found.append("a traceback in the output")
    if result.exit_code == 2:
        errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
        if len(errors) != 1:
            found.append(f"{len(errors)} 'Error:' lines instead of one sentence")
    if box.marker.exists():
        found.append("code from the run folder ran (the marker file exists)")
    after = box.fingerprint()
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        found.append(f"wrote outside the run folder: {changed}")
    if found:
        found.append(f"command: {command}\noutput:\n{result.output[-3000:]}")
    return found


def exercise(box: Sandbox, planted, *words: str) -> None:
    """Plant, run ``dltrain WORDS``, and fail with every broken promise in words."""
    plant(box, planted)
    before = box.fingerprint()
    result = invoke(box, *words)
    found = problems(box, before, result, words)
    assert not found, "\n".join(found)


# --------------------------------------------------------------------------- the properties


@settings(HOSTILE, max_examples=40)
@given(planted=plants(*RUNS_FILES), as_json=st.booleans())
@example(planted=[("metrics.json", Repeated("[", 100_000))], as_json=False)
@example(planted=[("metrics.json", Data([1, 2]))], as_json=True)
@example(planted=[("metrics.json", Edit(("best",), {"val_loss": 10**400}))], as_json=False)
@example(planted=[("metrics.json", Edit(("status",), ["finished"]))], as_json=False)
@example(planted=[(".hydra/overrides.yaml", Text("- 2001-12-14\n- 5\n"))], as_json=True)
@example(planted=[(".hydra/config.yaml", Text("- &a [*a]\n"))], as_json=False)
@example(planted=[("cv_summary.json", Data({"objective": {"mean": "high"}, "status": 3}))], as_json=False)
def test_runs_reads_any_run_folder(sandboxes, planted, as_json):
    box = sandboxes()
    exercise(box, planted, "runs", *(["--json"] if as_json else []))


@settings(HOSTILE, max_examples=40)
@given(planted=plants(*LOAD_FILES, "eval.json"), target=st.sampled_from(["RUN", "RUN/last.pt", "RUN/best.pt"]))
@example(planted=[("preprocessor.pkl", Code("disguised"))], target="RUN")
@example(planted=[("preprocessing.npz", Code("npz"))], target="RUN")
@example(planted=[("best.pt", Code("torch"))], target="RUN")
@example(planted=[("best.pt", Edit(("config", "data"), {"name": "mnist", "root": f"{OUTSIDE}/mnist",
                                                        "download": True}))], target="RUN")
@example(planted=[("best.pt", Edit(("config", "model", "hidden_sizes"), "${oc.env:DLTRAIN_SURELY_UNSET}"))],
         target="RUN")
@example(planted=[("best.pt", Edit(("spec", "input_shape"), ("a",)))], target="RUN")
@example(planted=[("eval.json", Link("notes"))], target="RUN")
def test_eval_of_a_hostile_run(sandboxes, planted, target):
    box = sandboxes()
    exercise(box, planted, "eval", target)


@settings(HOSTILE, max_examples=30)
@given(planted=plants(*LOAD_FILES, "predictions.csv"))
@example(planted=[("preprocessor.pkl", Code("disguised"))])
@example(planted=[("predictions.csv", Link("notes"))])
@example(planted=[("best.pt", Edit(("spec", "class_names"), ("a",)))])
def test_predict_with_a_hostile_run(sandboxes, planted):
    box = sandboxes()
    exercise(box, planted, "predict", "RUN", f"input={box.rows}")


def _label(edit: Edit) -> str:
    return f"{'.'.join(map(str, edit.where))}={edit.value!r}"[:70]


@pytest.mark.parametrize("edit", CHECKPOINT_EDITS, ids=_label)
def test_eval_of_each_hostile_checkpoint(sandboxes, edit):
    """Every edit of the catalogue, not just those the property draws."""
    box = sandboxes()
    exercise(box, [("best.pt", edit)], "eval", "RUN")


@pytest.mark.slow
@pytest.mark.parametrize("edit", [e for e in CHECKPOINT_EDITS if e.where[0] in ("model", "trainer", "optimizer")],
                         ids=_label)
def test_resume_from_each_hostile_checkpoint(sandboxes, edit):
    box = sandboxes()
    exercise(box, [("last.pt", edit)], "fit", "resume=RUN", "trainer.progress=false", "trainer.epochs=16")


@pytest.mark.slow
@settings(HOSTILE, max_examples=30)
@given(planted=plants(*RESUME_FILES), more=st.sampled_from([[], ["trainer.epochs=16"]]))
@example(planted=[(".hydra/overrides.yaml", Data(HOSTILE_OVERRIDES[:2]))], more=[])
@example(planted=[(".hydra", Link("genuine"))], more=[])
@example(planted=[("last.pt", Edit(("trainer", "rows"), 5))], more=["trainer.epochs=16"])
@example(planted=[("last.pt", Edit(("trainer", "cursor"), {"epoch": 10**9, "step": -1}))], more=[])
@example(planted=[("preprocessor.pkl", Code("disguised"))], more=["trainer.epochs=16"])
@example(planted=[("metrics.json", Link("genuine")), ("dltrain.log", Link("notes"))], more=["trainer.epochs=16"])
def test_resume_of_a_hostile_run(sandboxes, planted, more):
    box = sandboxes()
    exercise(box, planted, "fit", "resume=RUN", "trainer.progress=false", *more)


@pytest.mark.slow
@settings(HOSTILE, max_examples=6)
@given(planted=plants(*RUNS_FILES, "events.out.tfevents.*"), target=st.sampled_from(["RUN", "outputs"]))
@example(planted=[("events.out.tfevents.*", Link("parent"))], target="outputs")
def test_tb_starts_and_stops_on_a_hostile_run(sandboxes, monkeypatch, planted, target):
    import dltrain.commands.tb

    def stop_at_once(server):
        raise KeyboardInterrupt  # what Ctrl-C does while it serves

    monkeypatch.setattr(dltrain.commands.tb, "wait_for_interrupt", stop_at_once)
    box = sandboxes()
    exercise(box, planted, "tb", target)
