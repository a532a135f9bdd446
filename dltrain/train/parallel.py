"""Data-parallel training (torch.distributed, DistributedDataParallel): how many processes a fit
runs as, each rank's process group, and the split of every step's global batch across ranks with
the reductions that make the epoch's metrics whole again. Nothing here runs in a plain
single-process fit; starting the ranks is ``dltrain fit``'s job (commands/fit.py)."""

from __future__ import annotations

import os
import re
from contextlib import contextmanager

from dltrain.errors import DltrainError


def world_size() -> int:
    """The processes of a job started by torchrun (WORLD_SIZE), 1 for a plain process."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """This process is a rank of a data-parallel job: started by torchrun or dltrain's own launch
    (torch's elastic agent sets TORCHELASTIC_RUN_ID), or by another launcher with WORLD_SIZE above
    1. A job of one process is one too: it trains through the process group like any other."""
    return world_size() > 1 or "TORCHELASTIC_RUN_ID" in os.environ


def secondary_rank() -> bool:
    """A rank other than 0 of a data-parallel fit: it shares rank 0's run folder, writes nothing."""
    shard = current_shard()
    return shard is not None and shard.rank != 0


def _uses_cuda(device: str) -> bool:
    import torch

    return torch.cuda.is_available() if device == "auto" else device.startswith("cuda")


def local_processes(trainer) -> int:
    """How many processes on this machine trainer.strategy / trainer.devices ask for (torchrun's
    own count when it started this one); 1 is a plain single-process fit."""
    if launched():
        return int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    if trainer.devices != "auto":
        return trainer.devices
    if trainer.strategy == "ddp" and _uses_cuda(trainer.device):
        import torch

        return max(torch.cuda.device_count(), 1)
    return 1


def check(trainer) -> int:
    """The number of local processes, after refusing combinations that cannot run (one sentence)."""
    processes = local_processes(trainer)
    if launched() and trainer.devices not in ("auto", processes):
        raise DltrainError(
            f"trainer.devices={trainer.devices} but torchrun started {processes} processes on this "
            f"machine (--nproc_per_node); leave trainer.devices=auto under torchrun."
        )
    if not launched() and processes == 1:
        return 1
    if trainer.device == "mps":
        raise DltrainError("trainer.device=mps cannot train data-parallel (that needs CUDA GPUs or the CPU); "
                           "use trainer.devices=1, or trainer.device=cpu for CPU processes.")
    if re.fullmatch(r"cuda:\d+", trainer.device):
        raise DltrainError(
            f"trainer.device={trainer.device} names one GPU, but data-parallel training puts process N "
            f"on cuda:N; use trainer.device=cuda (or auto)."
        )
    if _uses_cuda(trainer.device):
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if processes > count:
            raise DltrainError(
                f"{processes} processes on this machine need {processes} CUDA GPUs but {count} "
                f"{'is' if count == 1 else 'are'} available; use trainer.devices=1"
                + (f" to {count}" if count > 1 else "") + ", or trainer.device=cpu for CPU processes."
            )
    return processes


def refuse_in_one_process(trainer) -> None:
    """Data-parallel settings reaching a run that trains in one process (a fold of dltrain cv, a
    point of a sweep, e.g. from a recipe): one sentence instead of a run that ignores them."""
    if current_shard() is None and (world_size() > 1 or local_processes(trainer) > 1):
        raise DltrainError(
            "Data-parallel training (trainer.strategy=ddp, trainer.devices above 1, or torchrun) runs "
            "only as dltrain fit without -m; dltrain cv and sweeps train one process per run, so drop "
            "trainer.strategy and trainer.devices there."
        )


# --------------------------------------------------------------------------- the process group


@contextmanager
def process_group(trainer):
    """Join the process group of a job started by torchrun: nccl with each rank on
    cuda:LOCAL_RANK when training on CUDA, gloo on the CPU. Ranks other than 0 print nothing."""
    import torch
    import torch.distributed as dist

    if _uses_cuda(trainer.device):
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend)
    if dist.get_rank() != 0:
        quiet()
    try:
        yield
    finally:
        dist.destroy_process_group()


def quiet() -> None:
    from dltrain.console import console, error_console

    console.quiet = error_console.quiet = True


def shared(value):
    """Rank 0's ``value`` on every rank of a data-parallel job (``value`` itself otherwise):
    for the run folder, whose name is random."""
    if not launched():
        return value
    import torch.distributed as dist

    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@contextmanager
def rank_zero_first():
    """Rank 0 runs the block (loading data, which may download it) before the other ranks do,
    so that they read finished files; a plain process just runs it."""
    shard = current_shard()
    if shard is not None and shard.rank != 0:
        import torch.distributed as dist

        dist.barrier()
    yield
    if shard is not None and shard.rank == 0:
        import torch.distributed as dist

        dist.barrier()


def current_shard():
    """This process's Shard when it is a rank of an initialized process group, else None."""
    if not launched():
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        return None
    return Shard(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# --------------------------------------------------------------------------- one rank's share


class Shard:
    """Rank ``rank`` of ``world_size``. Every rank draws the same shuffled order of the training
    rows (same seeded generator); step s's global batch is order[s*B:(s+1)*B], as in a single
    process, and is cut into world_size contiguous parts that differ by at most one row. Each
    rank's mean loss is weighted by world_size * its rows / the batch's rows, so the gradient
    DDP averages over ranks is exactly the mean over the whole batch (mean-reduced losses)."""

    def __init__(self, rank: int, world_size: int, local_rank: int):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank

    def device(self, device):
        """cuda:LOCAL_RANK on CUDA; the CPU otherwise (trainer.device=auto on a Mac means the CPU
        here: gloo does not reduce MPS tensors)."""
        import torch

        return torch.device("cuda", self.local_rank) if device.type == "cuda" else torch.device("cpu")

    def wrap(self, model):
        from torch.nn.parallel import DistributedDataParallel

        device = next(model.parameters()).device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def check_rows(self, train_rows: int) -> None:
        if train_rows < self.world_size:
            raise DltrainError(f"The training split has {train_rows} rows, fewer than the {self.world_size} "
                               f"data-parallel processes; use fewer trainer.devices.")

    def _parts(self, rank: int, n: int, size: int, steps: int) -> list[tuple[int, int, int]]:
        """(start, rows, batch rows) of ``rank``'s part of every step."""
        parts = []
        for step in range(steps):
            first = step * size
            batch = min(size, n - first)
            base, extra = divmod(batch, self.world_size)
            parts.append((first + rank * base + min(rank, extra), base + (rank < extra), batch))
        return parts

    def spans(self, n: int, size: int, steps: int) -> list[tuple[int, int, float]]:
        """(start, stop, loss weight) of this rank's rows in the epoch's order, per step. A rank
        left without a row (a last batch smaller than world_size) runs one row with weight 0:
        every rank must take part in every gradient all-reduce."""
        spans = []
        for start, rows, batch in self._parts(self.rank, n, size, steps):
            if rows:
                spans.append((start, start + rows, self.world_size * rows / batch))
            else:
                spans.append((start - batch, start - batch + 1, 0.0))  # the batch's first row
        return spans

    def epoch_loss(self, step_losses, spans, n: int) -> float:
        """The mean training loss over all ranks' rows: one all-reduce per epoch."""
        import torch
        import torch.distributed as dist

        rows = torch.tensor([stop - start if weight else 0 for start, stop, weight in spans],
                            dtype=step_losses.dtype, device=step_losses.device)
        total = (step_losses * rows).sum()
        dist.all_reduce(total)
        return float(total / n)

    def gather(self, outputs, order, n: int, size: int, steps: int):
        """Every rank's training outputs, and the order positions they belong to (rank by rank)."""
        import torch
        import torch.distributed as dist

        starts, rows = [], []  # every rank's parts, rank by rank
        for rank in range(self.world_size):
            for start, count, _ in self._parts(rank, n, size, steps):
                starts.append(start)
                rows.append(count)
        rows_per_rank = torch.tensor(rows).view(self.world_size, steps).sum(dim=1).tolist()
        padded = outputs.new_zeros((max(rows_per_rank), *outputs.shape[1:]))
        padded[:len(outputs)] = outputs
        gathered = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded)
        everything = torch.cat([part[:count] for part, count in zip(gathered, rows_per_rank)])
        # position i of a part that starts at s is s + i: one arange shifted part by part
        starts, rows = torch.tensor(starts), torch.tensor(rows)
        shift = torch.repeat_interleave(starts - (torch.cumsum(rows, 0) - rows), rows)
        positions = shift + torch.arange(int(rows.sum()))
        return everything, order[positions.to(order.device)]

    def agree(self, row: dict, stop: int) -> tuple[dict, int]:
        """Rank 0's epoch row (so every rank takes the same best/early-stopping/scheduler
        decisions) and a stop request any rank received: one collective per epoch."""
        import torch.distributed as dist

        everyone = [None] * self.world_size
        dist.all_gather_object(everyone, (row, int(stop)))
        return everyone[0][0], max(signal_number for _, signal_number in everyone)
