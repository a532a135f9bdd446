"""Weight initialisation (``model.init``), applied to a built-in model right after it is built,
so that every member of a population, seeded on its own, draws its own initial weights."""

from __future__ import annotations

from dltrain.errors import DltrainError

# default: PyTorch's own (per layer); the rest set every weight matrix or kernel as named and
# every bias to zero (zeros: the weights too, to show why symmetric weights never learn).
INITS = ("default", "normal", "uniform", "xavier", "kaiming", "zeros")
INIT_KEYS = ("init", "init_std", "init_range")


def split_init(options: dict) -> tuple[dict, dict]:
    """A built-in model's settings apart from its initialisation settings: (model's, init's)."""
    init = {key: options[key] for key in INIT_KEYS if key in options}
    return {k: v for k, v in options.items() if k not in INIT_KEYS}, init


def initialise(model, init: str = "default", init_std: float = 0.01, init_range: float = 0.05) -> None:
    """Set ``model``'s parameters as ``init`` says: weights (parameters of two or more dimensions:
    linear, convolution, recurrent and embedding matrices) from N(0, init_std²) (normal),
    U(-init_range, init_range) (uniform), Glorot's uniform (xavier), He's normal for ReLU (kaiming)
    or 0 (zeros); biases 0. Norm layers' scales stay 1. ``default`` leaves PyTorch's."""
    import torch
    from torch import nn

    if init not in INITS:
        raise DltrainError(f"model.init must be one of {', '.join(INITS)}; got {init!r}.")
    if init == "default":
        return
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2:
                if init == "normal":
                    nn.init.normal_(parameter, 0.0, init_std)
                elif init == "uniform":
                    nn.init.uniform_(parameter, -init_range, init_range)
                elif init == "xavier":
                    nn.init.xavier_uniform_(parameter)
                elif init == "kaiming":
                    nn.init.kaiming_normal_(parameter, nonlinearity="relu")
                else:
                    nn.init.zeros_(parameter)
            elif name.rsplit(".", 1)[-1].startswith("bias"):
                nn.init.zeros_(parameter)
