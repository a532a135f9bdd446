"""How many CPU threads torch's operators use (``trainer.threads``): ``auto`` gives a model whose
steps are too small to split one thread and leaves torch's default to the others; a number sets
exactly that many. The rule and its measurements: bench/README.md, "Threads"."""

from __future__ import annotations

import math

# Forward multiply-adds of one training batch below which auto uses one thread. Measured on the
# 2-core bench machine (bench/threads_rule.py, bench/README.md "Threads"), quiet: one thread as
# fast or faster up to 5.4M (0.91-0.95x of the 2-thread step), two threads faster from 15M on
# (1.14-1.89x, the course CNN at 30M 1.29x); loaded: two threads 10-100x slower for every model
# (OpenMP's barriers spin while another process holds the second core). 4M stays below the
# crossover, so auto never gives a model that gains from threads fewer of them.
SMALL_STEP_MACS = 4_000_000


def forward_macs(model, example_inputs) -> int:
    """Multiply-adds of one forward pass over ``example_inputs`` (one batch), counted by hooks on
    the layers that carry the work (linear, convolution, recurrent); the model's mode is kept."""
    import torch

    counted = 0

    def linear(module, inputs, output):
        nonlocal counted
        counted += output.numel() * module.in_features

    def convolution(module, inputs, output):
        nonlocal counted
        counted += output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    def recurrent(module, inputs, output):
        nonlocal counted
        x = inputs[0]
        if isinstance(x, torch.nn.utils.rnn.PackedSequence):
            steps_rows = x.data.shape[0]
        else:
            steps_rows = x.shape[0] * x.shape[1] if x.dim() == 3 else x.shape[0]
        gates = {"LSTM": 4, "GRU": 3}.get(type(module).__name__, 1)
        directions = 2 if module.bidirectional else 1
        size = module.input_size
        for _ in range(module.num_layers):
            counted += steps_rows * directions * gates * module.hidden_size * (size + module.hidden_size)
            size = module.hidden_size * directions

    hooks = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(module.register_forward_hook(linear))
        elif isinstance(module, torch.nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(convolution))
        elif isinstance(module, torch.nn.RNNBase):
            hooks.append(module.register_forward_hook(recurrent))
    was_training = model.training
    try:
        model.eval()  # no batch-norm statistics updated, no dropout randomness drawn
        with torch.no_grad():
            model(*example_inputs) if isinstance(example_inputs, tuple) else model(example_inputs)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return counted


def choose_threads(setting, model, example_inputs, batch_size: int, device=None) -> int:
    """The thread count for ``setting`` (``auto`` or a number). ``example_inputs``: a few training
    rows as the model takes them (only auto on a CPU runs the model on them, once); the count of
    multiply-adds is scaled from their rows to ``batch_size`` (0 or less: the rows given)."""
    return _decide(setting, model, example_inputs, batch_size, device)[0]


def _rows(inputs) -> int:
    first = inputs[0] if isinstance(inputs, (tuple, list)) else inputs
    return int(first.shape[0])


def _decide(setting, model, example_inputs, batch_size, device) -> tuple[int, str]:
    import torch

    default = torch.get_num_threads()
    if setting != "auto":
        return int(setting), "trainer.threads"
    if device is not None and torch.device(device).type != "cpu":
        return default, "auto: torch's default off the CPU"
    macs = forward_macs(model, example_inputs)
    if batch_size > 0:
        macs = macs * batch_size // max(_rows(example_inputs), 1)
    if macs < SMALL_STEP_MACS:
        return 1, f"auto: {macs / 1e6:.1f}M MACs per batch, too small to split"
    return default, f"auto: {macs / 1e6:.1f}M MACs per batch"


# torch's own default, read once before dltrain first changes it: each fold or sweep point in
# one process chooses afresh from it, not from the previous run's choice.
_TORCH_DEFAULT: list[int] = []


def apply_threads(setting, model, example_inputs, batch_size: int, device=None) -> str:
    """Set torch's intra-op thread count for a run (before its first step) and return a short
    note for the run's banner, e.g. ``"threads=1 (auto: 1.1M MACs per batch, too small to split)"``."""
    import torch

    if not _TORCH_DEFAULT:
        _TORCH_DEFAULT.append(torch.get_num_threads())
    torch.set_num_threads(_TORCH_DEFAULT[0])
    threads, why = _decide(setting, model, example_inputs, batch_size, device)
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return f"threads={threads} ({why})"
