"""``trainer.deterministic=true``: the same run, on the same machine and software, computes the
same numbers every time. While a fit trains, torch uses only deterministic algorithms (an op
that has none is refused in one sentence), cuDNN neither benchmarks nor picks non-deterministic
convolutions, cuBLAS gets a fixed workspace, and torch.compile's inductor does no timing-based
autotuning; each global setting is restored afterwards."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

from dltrain.errors import DltrainError

CUBLAS = "CUBLAS_WORKSPACE_CONFIG"
# The values with which cuBLAS (CUDA 10.2 and later) computes the same results on every run;
# torch refuses a cuBLAS op under deterministic algorithms with any other.
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")

# torch's words for an op without a deterministic implementation:
# "put_ does not have a deterministic implementation, but you set 'torch.use_deterministic_algorithms(True)'..."
_NO_DETERMINISTIC = re.compile(r"(\S+) does not have a deterministic implementation")


@contextmanager
def deterministic(settings):
    """While the block runs, with ``settings.deterministic`` (TrainerSettings): deterministic
    algorithms only, cuDNN's benchmark off, CUBLAS_WORKSPACE_CONFIG set (before any CUDA work of
    the block: enter it first) and, with trainer.compile on inductor, inductor's deterministic
    mode; torch's refusal of an op that has no deterministic implementation becomes one
    sentence. Nested blocks are harmless: each restores what it found."""
    if not settings.deterministic:
        yield
        return
    import torch

    cublas = os.environ.get(CUBLAS)
    if cublas is not None and cublas not in CUBLAS_DETERMINISTIC:
        raise DltrainError(f"trainer.deterministic=true cannot run with {CUBLAS}={cublas} in the environment, "
                           f"with which cuBLAS can differ from run to run; unset it or set "
                           f"{' or '.join(CUBLAS_DETERMINISTIC)} (or use trainer.deterministic=false).")
    inductor = _inductor_config(settings)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              inductor.deterministic if inductor is not None else None)
    if cublas is None:
        os.environ[CUBLAS] = CUBLAS_DETERMINISTIC[0]
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    if inductor is not None:
        inductor.deterministic = True
    try:
        yield
    except RuntimeError as error:
        op = nondeterministic_op(error)
        if op is None:
            raise
        raise DltrainError(f"The model uses {op}, which has no deterministic implementation in PyTorch, "
                           f"so trainer.deterministic=true refuses it; trainer.deterministic=false "
                           f"allows it (or change the model to avoid it).") from None
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before[2], before[3]
        if inductor is not None:
            inductor.deterministic = before[4]
        if cublas is None:
            os.environ.pop(CUBLAS, None)


def nondeterministic_op(error: BaseException) -> str | None:
    """The op torch refused under deterministic algorithms, as torch names it (``put_``,
    ``index_add_cuda_``); None for any other error."""
    match = _NO_DETERMINISTIC.search(str(error))
    return match.group(1) if match else None


def _inductor_config(settings):
    """torch.compile's inductor settings when the model is compiled with inductor (None
    otherwise: eager and aot_eager run torch's own ops, which deterministic algorithms cover)."""
    if not (settings.compile and settings.compile_backend == "inductor"):
        return None
    import torch._inductor.config as config  # torch.compile imports it anyway

    if not hasattr(config, "deterministic"):  # older torch: inductor autotunes by timing, always
        raise DltrainError("trainer.deterministic=true cannot run with trainer.compile=true on inductor in "
                           "this version of torch, whose inductor picks kernels by timing them; use "
                           "trainer.compile_backend=aot_eager, trainer.compile=false, or a newer torch.")
    return config
