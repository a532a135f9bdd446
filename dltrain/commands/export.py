"""``dltrain export RUN [format=onnx|pt2] [output=FILE]``: a run's best model as an ONNX file
(torch's exporter, ``torch.onnx.export(..., dynamo=True)`` with onnxscript) or a ``torch.export``
program (``.pt2``), that predicts without dltrain: it ends in the prediction (values in the
target's units, or every class's probability), its batch size is free, and the run's
preprocessing is written beside it in its documented format with a small JSON that names the
inputs, the output and the classes. A cross-validation exports its refit model."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from dltrain.commands.evaluate import load_run
from dltrain.commands.resume import is_cv_folder
from dltrain.data.preprocessing import ARRAYS, FILE, save_preprocessing
from dltrain.errors import DltrainError
from dltrain.files import RunLock, write_atomic, write_json
from dltrain.models.custom import reading_run
from dltrain.models.lstm import RecurrentNet
from dltrain.train.objective import Predictor

FORMATS = {"onnx": ".onnx", "pt2": ".pt2"}
FOLDER = "export"  # RUN/export/ unless output= says otherwise
MODEL = "model"
INFO_FORMAT = "dltrain-export"
# A run folder's own files, which an export never replaces.
_RUN_FILES = ("best.pt", "last.pt", "final.pt", "metrics.json", FILE, ARRAYS, "eval.json",
              "predictions.csv", "cv_summary.json")


@dataclass
class Exported:
    """What an export wrote: the model file, and the JSON written beside it (its inputs' names
    and shapes, ``"batch"`` and ``"steps"`` meaning any size; its output; the classes)."""

    path: Path
    info: dict


def parse_options(options: list[str]) -> tuple[str, str | None]:
    """(format, output) from ``format=...`` and ``output=...``; the format follows the output's
    suffix when only the output is given."""
    given = {}
    for option in options:
        key, equals, value = option.partition("=")
        if not equals or key not in ("format", "output") or not value:
            raise DltrainError(f"dltrain export takes format=onnx|pt2 and output=FILE, not {option!r}.")
        given[key] = value
    output = given.get("output")
    suffix = Path(output).suffix.lower() if output else ""
    implied = next((name for name, ending in FORMATS.items() if ending == suffix), None)
    form = given.get("format", implied or "onnx")
    if form not in FORMATS:
        raise DltrainError(f"format={form} is unknown; dltrain export writes format=onnx (ONNX, for "
                           f"onnxruntime and other runtimes) or format=pt2 (torch.export.load).")
    if implied is not None and implied != form:
        raise DltrainError(f"output={output} ends in {suffix}, but format={form} writes a "
                           f"{FORMATS[form]} file; give output=...{FORMATS[form]} or format={implied}.")
    return form, output


def export_run(target: str, options: list[str], out) -> Exported:
    """Export RUN's best model (a cross-validation's refit) as ``dltrain export`` does."""
    form, output = parse_options(options)
    if form == "onnx":
        _needs_onnx()
    named = Path(target).expanduser()
    source = _trained_folder(target, named)
    folder = named if named.is_dir() else named.parent  # the run folder (or cv folder) named
    destination = Path(output).expanduser() if output else folder / FOLDER / f"{MODEL}{FORMATS[form]}"
    if destination.name in _RUN_FILES or destination.name.endswith(".json"):
        raise DltrainError(f"output={destination} would replace a run's own file or the JSON an export "
                           f"writes beside its model; give a name such as model{FORMATS[form]}.")
    _refuse_links(folder, destination)
    with reading_run(folder):  # a custom model's class: never imported from the folder named
        run = load_run(str(source))
        out.print(f"Exporting {run.checkpoint} ({run.spec.kind} data, {run.spec.task}) as {form}...")
        program, inputs = trace(run.model, run.objective, run.spec)
    info = describe(destination, form, run.spec, inputs)
    inside = destination.parent.resolve().is_relative_to(folder.resolve())
    try:
        with RunLock(folder) if inside else nullcontext():  # one writer in a run folder at a time
            write_model(destination, form, program, inputs, info["output"]["name"])
            if destination.parent.resolve() != run.run_dir.resolve():  # a run's folder has its own
                save_preprocessing(destination.parent, run.preprocessor)
            write_json(info_path(destination), info)
    except OSError as error:
        raise DltrainError(f"Could not write {str(destination)!r} ({error.strerror or error}); give "
                           f"output=FILE in a folder you can write to.") from None
    reads = ", ".join(f"{item['name']} {item['shape']}" for item in inputs)
    output = info["output"]
    out.print(f"Wrote {destination}, with {info_path(destination).name} and {FILE} beside it (inputs "
              f"{reads}; output {output['name']} {output['shape']}).", soft_wrap=True)
    return Exported(destination, info)


def info_path(model_path: Path) -> Path:
    return model_path.with_name(f"{model_path.name}.json")


def _needs_onnx() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript") if importlib.util.find_spec(name) is None]
    if missing:
        raise DltrainError(f"format=onnx needs {' and '.join(missing)}, which is not installed; install it "
                           f"with pip install 'dltrain[export]' (format=pt2 needs nothing more).")


def _trained_folder(target: str, named: Path) -> Path:
    """The run folder or checkpoint to export: RUN itself, or a cross-validation's refit/."""
    if named.is_dir() and is_cv_folder(named):
        refit = named / "refit"
        if not any((refit / name).is_file() for name in ("best.pt", "last.pt")):
            raise DltrainError(f"{target!r} is a cross-validation without a model trained on all its rows; "
                               f"run it with cv.refit=true (dltrain cv ... cv.refit=true) to train one, or "
                               f"export one fold: dltrain export {named / 'fold_0'}.")
        return refit
    if not named.exists():
        raise DltrainError(f"{target!r} does not exist; give a run folder under outputs/ (or a checkpoint).")
    return named


def _refuse_links(folder: Path, destination: Path) -> None:
    """No folder between the run folder and the file written may be a link: one planted in a
    shared run folder (RUN/export -> elsewhere) would carry the files out of it."""
    top, place = folder.absolute(), destination.parent.absolute()
    while place != top and place.is_relative_to(top):
        if place.is_symlink():
            raise DltrainError(f"{str(place)!r} is a symbolic link inside the run folder; dltrain never "
                               f"writes through one: remove it, or give output=FILE elsewhere.")
        place = place.parent


# --------------------------------------------------------------------------- tracing


def trace(model, objective, spec):
    """The model, ending in its prediction, traced with ``torch.export`` on CPU for any batch
    size (and any number of tokens when a text model allows it): (program, input descriptions)."""
    import torch
    from torch.export import Dim

    module = Predictor(_traceable(model, spec), objective).cpu().eval()
    batch = Dim("batch", min=1)
    if spec.kind != "tokens":
        example = (torch.zeros(2, *spec.input_shape),)
        inputs = [{"name": "x", "shape": ["batch", *spec.input_shape], "dtype": "float32"}]
        return _export(module, example, ({0: batch},)), inputs
    steps = int(spec.input_shape[0])
    program = None
    if not isinstance(model, RecurrentNet):  # torch.export unrolls a recurrent net over its steps
        try:  # any number of tokens, when nothing in the model fixes it
            example = _tokens(max(steps, 2))
            program = _export(module, example, ({0: batch, 1: Dim("steps", min=2)}, {0: batch}))
            shape: list = ["batch", "steps"]
        except DltrainError:
            program = None
    if program is None:  # as many tokens as the longest training text (cut longer texts to it)
        program = _export(module, _tokens(steps), ({0: batch}, {0: batch}))
        shape = ["batch", steps]
    inputs = [{"name": "tokens", "shape": shape, "dtype": "int64"},
              {"name": "lengths", "shape": ["batch"], "dtype": "int64"}]
    return program, inputs


def _traceable(model, spec):
    """The recurrent nets read text through packed sequences, which cannot be traced: their
    padded path instead, with the same outputs."""
    if isinstance(model, RecurrentNet) and spec.kind == "tokens":
        return model.padded()
    return model


def _tokens(steps: int):
    import torch

    tokens = torch.ones(2, steps, dtype=torch.long)  # 1 is <unk>: any index the vocabulary has
    return tokens, torch.tensor([steps, max(steps - 1, 1)], dtype=torch.long)


def _export(module, example, dynamic):
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Predictor.forward(*inputs): the shapes of its one variadic argument, input by input.
            return torch.export.export(module, example, dynamic_shapes=(dynamic,), strict=False)
    except Exception as error:  # torch.export fails in many ways on what it cannot trace
        raise DltrainError(f"torch.export cannot trace this model ({type(error).__name__}: "
                           f"{_first_line(error)}); only models whose forward torch.export can trace "
                           f"can be exported.") from None


# --------------------------------------------------------------------------- writing


def write_model(destination: Path, form: str, program, inputs: list[dict], output: str) -> None:
    """The traced program as ``form``, written atomically (a link at ``destination`` is replaced);
    ``inputs`` and ``output`` name the ONNX graph's inputs (and their free axes) and output."""
    import torch

    if form == "pt2":
        write_atomic(destination, lambda stream: torch.export.save(program, stream))
        return
    import warnings

    names = [i["name"] for i in inputs]
    dynamic = tuple({axis: size for axis, size in enumerate(i["shape"]) if isinstance(size, str)}
                    for i in inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onnx_program = torch.onnx.export(program, dynamo=True, input_names=names, dynamic_shapes=dynamic,
                                             output_names=[output], verbose=False)
    except Exception as error:  # the translation to ONNX fails in many ways on an unknown operator
        raise DltrainError(f"The model traced, but ONNX cannot express it ({type(error).__name__}: "
                           f"{_first_line(error)}); export it with format=pt2.") from None
    try:
        data = onnx_program.model_proto.SerializeToString()
    except ValueError:  # protobuf's limit: one message of at most 2 GiB
        raise DltrainError("The model is larger than the 2 GiB an ONNX file holds in one piece; export it "
                           "with format=pt2.") from None
    write_atomic(destination, data)


def output_of(spec) -> dict:
    """The exported model's one output."""
    if spec.task == "regression":
        return {"name": "prediction", "shape": ["batch"], "meaning": "the predicted value, in the target's units"}
    return {"name": "probabilities", "shape": ["batch", len(spec.class_names)],
            "meaning": "each class's probability, in the order of classes"}


def describe(destination: Path, form: str, spec, inputs: list[dict]) -> dict:
    """The JSON beside an exported model: what it reads and what it returns."""
    return {"format": INFO_FORMAT, "version": 1, "model": destination.name, "runtime": form,
            "task": spec.task, "classes": list(spec.class_names), "kind": spec.kind,
            "inputs": inputs, "output": output_of(spec), "preprocessing": FILE}


def _first_line(error: BaseException) -> str:
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # torch colours some of its messages
    lines = [line for line in text.strip().splitlines() if line.strip()]
    text = lines[0].rstrip(".") if lines else type(error).__name__
    return text if len(text) <= 200 else f"{text[:197]}..."
