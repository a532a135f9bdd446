"""``dltrain model OVERRIDES``: the model that fit would build, shaped by the configured data, as a
per-layer table (layer, type, output shape, parameters, trainable) from a forward pass on one
training batch, with totals. It writes nothing."""

from __future__ import annotations

from dataclasses import dataclass

from dltrain.config import compose, read_settings
from dltrain.console import console
from dltrain.data import load_source, prepare
from dltrain.data.split import train_val_indices
from dltrain.train.build import build
from dltrain.train.device import seed_everything
from dltrain.train.engine import batch_size_for
from dltrain.train.member import forward
from dltrain.train.staging import rows, to_device


@dataclass
class Layer:
    name: str  # the module's dotted name in the model
    kind: str  # its class name
    output_shape: tuple | None  # of its first call's (first) tensor output; None when not called
    parameters: int  # its own parameters (not its children's)
    trainable: int  # of those, the ones that require a gradient
    calls: int = 0


@dataclass
class Summary:
    model: str
    data: str
    input_shape: tuple  # of the batch, for each input tensor
    output_shape: tuple
    layers: list
    total: int
    trainable: int


def summarize(overrides: list[str]) -> Summary:
    """Compose as fit does, load the data, build the model from its DataSpec and run one batch of
    the training rows through it with a forward hook on every layer."""
    import torch

    cfg = compose(overrides)
    settings = read_settings(cfg)
    source = load_source(settings.data)
    train_index, val_index = train_val_indices(source, settings.data.val_fraction, settings.trainer.seed)
    seed_everything(settings.trainer.seed)
    data = prepare(source, train_index, val_index)
    model = build(settings, data.spec, training=False).model
    size = batch_size_for(len(data.train), settings.data.batch_size)
    batch = to_device(rows(data.train.x, slice(0, size)), torch.device("cpu"))  # image Pixels become floats
    layers = {}
    hooks = []
    for name, module in model.named_modules():
        own = list(module.parameters(recurse=False))
        if name and (not any(True for _ in module.children()) or own):
            layers[module] = Layer(name, type(module).__name__, None, sum(p.numel() for p in own),
                                   sum(p.numel() for p in own if p.requires_grad))
            hooks.append(module.register_forward_hook(_record(layers[module])))
    model.eval()  # one look at the shapes: batch norm's running statistics stay as built
    try:
        with torch.no_grad():
            output = forward(model, batch)
    finally:
        for hook in hooks:
            hook.remove()
    inputs = batch if isinstance(batch, tuple) else (batch,)
    return Summary(settings.model.name, settings.data.name, tuple(tuple(x.shape) for x in inputs),
                   tuple(_first_tensor(output).shape), list(layers.values()),
                   sum(p.numel() for p in model.parameters()),
                   sum(p.numel() for p in model.parameters() if p.requires_grad))


def _record(layer: Layer):
    def hook(module, inputs, output):
        layer.calls += 1
        if layer.output_shape is None:
            tensor = _first_tensor(output)
            layer.output_shape = tuple(tensor.shape) if tensor is not None else ()
    return hook


def _first_tensor(output):
    """The tensor a layer gives (an LSTM gives (outputs, (h, c)): its outputs)."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        for part in output:
            found = _first_tensor(part)
            if found is not None:
                return found
    if hasattr(output, "data") and isinstance(output.data, torch.Tensor):  # a PackedSequence
        return output.data
    return None


def _shape(shape) -> str:
    if shape is None:
        return "not called"
    return "(" + ", ".join(map(str, shape)) + ")"


def print_summary(summary: Summary, out=console) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"model={summary.model} on data={summary.data}", title_justify="left",
                  header_style="bold")
    table.add_column("layer", no_wrap=True)
    table.add_column("type", no_wrap=True)
    table.add_column("output shape", no_wrap=True)
    table.add_column("parameters", justify="right", no_wrap=True)
    table.add_column("trainable", justify="right", no_wrap=True)
    for layer in summary.layers:
        calls = f" x{layer.calls}" if layer.calls > 1 else ""
        table.add_row(escape(layer.name), layer.kind, _shape(layer.output_shape) + calls,
                      f"{layer.parameters:,}", f"{layer.trainable:,}")
    table.add_section()
    table.add_row("total", "", _shape(summary.output_shape), f"{summary.total:,}", f"{summary.trainable:,}")
    out.print(table)
    inputs = " and ".join(_shape(shape) for shape in summary.input_shape)
    out.print(f"input batch {inputs}; {summary.total:,} parameters, {summary.trainable:,} trainable, "
              f"{summary.total - summary.trainable:,} frozen.")


def model_summary(overrides: list[str], out=console) -> Summary:
    summary = summarize(overrides)
    print_summary(summary, out)
    return summary
