"""The model registry: ``create_model(name, spec, output_size, **options)`` is the one door in.

Each module of this package registers its models with ``@register_model(name, tasks=...,
input_kinds=..., stackable=...)`` on a class that has ``from_spec(spec, output_size, **options)``;
shapes come from the DataSpec. The modules (and torch) are imported on the first lookup.
``model=custom`` is no entry: it is the user's own class (custom.py)."""

from __future__ import annotations

from pathlib import Path

from dltrain.checks import check_keywords
from dltrain.data import DATASETS
from dltrain.data.spec import INPUT_KINDS, TASKS
from dltrain.errors import DltrainError
from dltrain.models.custom import CUSTOM, build_custom
from dltrain.models.init import initialise, split_init
from dltrain.registry import REQUIRED, Registry, one_of

MODELS = Registry("model", {
    "tasks": REQUIRED,        # the targets it serves: regression, binary, multiclass
    "input_kinds": REQUIRED,  # the data it reads: tabular, image, sequence, tokens
    # k copies can be stacked with torch.func and trained under torch.vmap (batch norm, a
    # runtime setting, is checked where the stacking happens).
    "stackable": REQUIRED,
}, package=__name__)


def register_model(name: str, *, tasks: tuple[str, ...], input_kinds: tuple[str, ...],
                   stackable: bool):
    """Class decorator: register a model class (with ``from_spec``) under ``name``."""
    unknown = [t for t in tasks if t not in TASKS] + [k for k in input_kinds if k not in INPUT_KINDS]
    if unknown or not tasks or not input_kinds:
        raise ValueError(f"model '{name}' declares unknown or no tasks / input kinds {unknown}; "
                         f"tasks are {TASKS}, input kinds {tuple(INPUT_KINDS)}")
    return MODELS.register(name, tasks=tuple(tasks), input_kinds=tuple(input_kinds),
                           stackable=bool(stackable))


def model_class(name: str):
    return MODELS[name].constructor


def create_model(name: str, spec, output_size: int, **options):
    """Build model ``name`` for data described by ``spec`` with ``output_size`` outputs and
    initialise it as ``model.init`` says (init.py); ``custom``: the user's class that
    ``options['_target_']`` names (custom.py), initialised by its own constructor."""
    if name == CUSTOM:
        return build_custom(spec, output_size, **options)
    options, init = split_init(options)
    entry = MODELS[name]
    if spec.task not in entry.tasks:
        raise DltrainError(
            f"model={name} is for {' or '.join(entry.tasks)} targets, but this data is {spec.task}; "
            f"{_suggest(spec)}"
        )
    if spec.kind not in entry.input_kinds:
        readable = " or ".join(f"{INPUT_KINDS[k]} ({kind_data(k)})" for k in entry.input_kinds)
        raise DltrainError(
            f"model={name} needs {readable}, but this data is {INPUT_KINDS.get(spec.kind, spec.kind)}."
        )
    cls = entry.constructor
    check_keywords(cls.from_spec, options, f"model={name}", "model")
    check_fits_in_memory(name, cls.from_spec, spec, output_size, options)
    model = cls.from_spec(spec, output_size, **options)
    initialise(model, **init)
    return model


def check_fits_in_memory(name: str, from_spec, spec, output_size: int, options: dict) -> None:
    """Refuse, before a byte of it is allocated, a model whose weights and their gradients (the
    least that training holds) would not fit in the memory this machine has free: its shape is
    built on torch's meta device, which allocates nothing."""
    import torch

    with torch.device("meta"):
        shape = from_spec(spec, output_size, **options)
    tensors = [*shape.parameters(), *shape.buffers()]
    needed = 2 * sum(t.numel() * t.element_size() for t in tensors)
    free = free_memory()
    if free is not None and needed > free:
        count = sum(p.numel() for p in shape.parameters())
        raise DltrainError(
            f"model={name} with these settings has {count:,} parameters, which need {_size(needed)} to "
            f"train (weights and gradients) but this machine has {_size(free)} of memory free; use "
            f"fewer or smaller layers."
        )


# A container's memory limit and what it uses (cgroup v2, then v1): the machine's free memory
# may be far more than the container may take.
_CGROUP_MEMORY = (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                  ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"))


def free_memory() -> int | None:
    """Bytes of memory free for this process: Linux's MemAvailable (the physical memory where
    that is unknown), less where a container's limit leaves less; None where nothing says."""
    import os

    free = None
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            free = next((int(line.split()[1]) * 1024 for line in stream if line.startswith("MemAvailable:")), None)
    except (OSError, ValueError, IndexError):
        pass
    if free is None:
        try:
            free = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, OSError, ValueError):
            return None
    for limit_file, usage_file in _CGROUP_MEMORY:
        try:
            limit, usage = (int(Path(name).read_text().strip()) for name in (limit_file, usage_file))
        except (OSError, ValueError):  # no such cgroup, or no limit ("max")
            continue
        return min(free, max(limit - usage, 0))
    return free


def _size(count: int) -> str:
    return f"{count / 2**30:,.1f} GiB" if count >= 2**30 else f"{count / 2**20:,.0f} MiB"


def _suggest(spec) -> str:
    """The models for this task, those that read this kind of data first."""
    fitting = MODELS.where(tasks=spec.task, input_kinds=spec.kind) or MODELS.where(tasks=spec.task)
    return f"use {one_of([f'model={entry.name}' for entry in fitting])}."


def kind_data(kind: str) -> str:
    """The data options of one input kind, so that a refusal can say which data suits a model."""
    native = [entry.name for entry in DATASETS.where(kind=kind)]
    parts = [f"data={', '.join(native)}"] if native else []
    if kind == "sequence":
        viewed = [entry.name for entry in DATASETS.where(as_sequence=True)]
        if viewed:
            parts.append(f"data.as_sequence=true with {one_of(viewed)}")
    return ", or ".join(parts) or "no dataset yet"


def stacking_refusal(name: str) -> str | None:
    """Why copies of model ``name`` cannot be stacked with torch.func and trained under
    torch.vmap, as its registry entry declares (None when they can)."""
    if name == CUSTOM:
        return "model=custom is your own class, which dltrain cannot know to have a torch.vmap batching rule"
    if MODELS[name].stackable:
        return None
    return f"model={name} cannot be stacked: its layers have no torch.vmap batching rule"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The most weights a model may have for every epoch row to show them (the y = 2x toy has 1).
MAX_SHOWN_WEIGHTS = 4


def shows_weights(model) -> bool:
    """Whether ``model`` is small enough for its w and b to be shown every epoch: at most
    MAX_SHOWN_WEIGHTS weights (the parameters that are no bias)."""
    named = list(model.named_parameters())
    return bool(named) and sum(p.numel() for n, p in named if not n.endswith("bias")) <= MAX_SHOWN_WEIGHTS


def weights_text(model, target=None) -> str:
    """A small model's w and b in one line: its own ``describe`` where it has one (the affine
    models: in the target's own units, undoing ``target``, the TargetTransform), else every
    weight and every bias in the order of its parameters."""
    describe = getattr(model, "describe", None)
    text = describe(target=target) if callable(describe) else None
    if text:
        return text
    named = list(model.named_parameters())

    def values(biases: bool) -> str:
        return ", ".join(f"{v:.4f}" for n, p in named if n.endswith("bias") == biases
                         for v in p.detach().cpu().flatten().tolist())

    has_bias = any(n.endswith("bias") for n, _ in named)
    return f"w = [{values(False)}]" + (f", b = [{values(True)}]" if has_bias else "")
