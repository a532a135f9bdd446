"""The model registry: ``create_model(name, spec, output_size, **options)`` is the one door in.

Every model class has ``from_spec(spec, output_size, **options)``, a tuple ``tasks`` of the
tasks it serves and ``input_kinds`` of the data it reads; shapes come from the DataSpec."""

from __future__ import annotations

from importlib import import_module

from dltrain.checks import check_keywords
from dltrain.errors import DltrainError

MODELS = {
    "linear": "dltrain.models.linear:LinearRegression",
    "logistic": "dltrain.models.linear:LogisticRegression",
    "softmax": "dltrain.models.linear:SoftmaxRegression",
    "mlp": "dltrain.models.mlp:MLP",
    "cnn": "dltrain.models.cnn:CNN",
    "inception": "dltrain.models.inception:InceptionNet",
    "resnet": "dltrain.models.resnet:ResNet",
    "lstm": "dltrain.models.lstm:RecurrentNet",
}

_KIND_WORDS = {
    "tabular": "tabular data (rows of features)",
    "image": "image data",
    "sequence": "sequence data",
    "tokens": "text (token) data",
}

# The data options of each kind, so that a refusal can say which data suits the model.
_KIND_DATA = {
    "tabular": "data=digits, iris, wine, breast_cancer, diabetes, csv, ...",
    "image": "data=digits_images, mnist, fashion_mnist, cifar10, image_folder",
    "sequence": "data=time_series, or data.as_sequence=true with digits or an image dataset",
    "tokens": "data=text_csv",
}


def model_class(name: str):
    if name not in MODELS:
        raise DltrainError(f"Unknown model '{name}'; valid options are: {', '.join(MODELS)}.")
    module_name, class_name = MODELS[name].split(":")
    return getattr(import_module(module_name), class_name)


def create_model(name: str, spec, output_size: int, **options):
    """Build model ``name`` for data described by ``spec`` with ``output_size`` outputs."""
    cls = model_class(name)
    if spec.task not in cls.tasks:
        raise DltrainError(
            f"model={name} is for {' or '.join(cls.tasks)} targets, but this data is {spec.task}; "
            f"{_suggest(spec.task)}"
        )
    if spec.kind not in cls.input_kinds:
        readable = " or ".join(f"{_KIND_WORDS[k]} ({_KIND_DATA[k]})" for k in cls.input_kinds)
        raise DltrainError(
            f"model={name} needs {readable}, but this data is {_KIND_WORDS.get(spec.kind, spec.kind)}."
        )
    check_keywords(cls.from_spec, options, f"model={name}", "model")
    return cls.from_spec(spec, output_size, **options)


def _suggest(task: str) -> str:
    return {
        "regression": "use model=linear or model=mlp.",
        "binary": "use model=logistic or model=mlp.",
        "multiclass": "use model=softmax or model=mlp.",
    }[task]


def stacking_refusal(name: str) -> str | None:
    """Why copies of model ``name`` cannot be stacked with torch.func and trained under
    torch.vmap (None when they can)."""
    if name == "lstm":
        return ("model=lstm's recurrent layer (aten::lstm) and packed sequences have no torch.vmap "
                "batching rule")
    return None


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
