"""The training engine: one epoch loop over a population of members (train/member.py). Each
step takes every active member's batch (by indexing tensors already on the device), runs the
forward pass — the one model itself, or the members stacked with torch.func under torch.vmap —
then each member's own loss, one backward pass, and — after every
``trainer.accumulate_grad_batches`` batches — each member's own clipping, optimizer step and
schedule. Metrics are read once per epoch; then early stopping, best/last checkpoints and stop
requests (which finish their optimizer step, then raise StopRequested with the position saved)."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch

from dltrain.errors import DltrainError
from dltrain.models import shows_weights, weights_text
from dltrain.train.determinism import deterministic
from dltrain.train.epoch_record import EpochRecord
from dltrain.train.member import Member, flat_parameters, forward, tracked
from dltrain.train.speed import compiled, configure
from dltrain.train.staging import Staged, rows, to_device
from dltrain.train.threads import apply_threads


class StopRequested(Exception):
    """Raised out of ``Trainer.fit`` after a stop request (Ctrl-C, SIGTERM) finished its step;
    each member's ``cursor`` then holds its position inside the interrupted epoch."""

    def __init__(self, signal_number: int, epoch: int, step: int):
        super().__init__(f"stopped in epoch {epoch} after step {step}")
        self.signal_number, self.epoch, self.step = signal_number, epoch, step


def batch_size_for(rows: int, batch_size: int) -> int:
    """The rows of one batch: all of them for 0 (full-batch gradient descent) or a larger size."""
    return rows if batch_size <= 0 or batch_size >= rows else batch_size


def batch_count(rows: int, batch_size: int) -> int:
    return math.ceil(rows / batch_size_for(rows, batch_size))


def optimizer_steps(rows: int, batch_size: int, accumulate: int) -> int:
    """The optimizer steps of one epoch: one per ``accumulate`` batches, the last group partial."""
    return math.ceil(batch_count(rows, batch_size) / accumulate)


def group_share(step: int, steps: int, size: int, rows: int, accumulate: int) -> float:
    """The weight of batch ``step``'s mean loss (of ``steps`` batches of ``size`` over ``rows``
    rows) in its group of ``accumulate`` batches: its rows over the group's rows, so that the
    group's summed gradients are those of one batch of all the group's rows. The epoch's last
    group, partial, is so one batch of the rows it has."""
    first = step - step % accumulate
    last = min(first + accumulate, steps)
    return (min((step + 1) * size, rows) - step * size) / (min(last * size, rows) - first * size)


def stack_refusal(members: list[Member], batch_size: int, model_refusal: str | None) -> str | None:
    """Why these members cannot train as one stacked model under torch.vmap (None when they can);
    ``model_refusal``: what the model's registry entry says against stacking it."""
    first = members[0]
    if model_refusal is not None:
        return model_refusal
    shapes = {tuple((name, tuple(p.shape)) for name, p in m.model.named_parameters()) for m in members}
    if len(shapes) > 1:
        return "the members' models differ in shape (their parameters cannot be stacked)"
    if isinstance(first.data.train.x, tuple):
        return "this data's inputs are token sequences with lengths, which torch.vmap cannot batch"
    if first.data.train.augment is not None:
        return "data.augment augments each batch with the member's own random draws"
    if any(True for _ in first.model.buffers()):
        return ("the model keeps running statistics (batch norm) that torch.vmap cannot update per "
                "member; set model.batch_norm=false")
    steps = {batch_count(len(m.data.train), batch_size) for m in members}
    if len(steps) > 1:
        sizes = sorted({len(m.data.train) for m in members})
        return (f"the {' and '.join(map(str, sizes))} training rows make "
                f"{' and '.join(map(str, sorted(steps)))} batches per epoch with "
                f"data.batch_size={batch_size}, so their optimizer steps would differ")
    return None


class Stacked:
    """The forward pass of several members of one model shape at once: their parameters
    stacked along a new first dimension, one ``functional_call`` of the shared structure under
    ``torch.vmap`` over that dimension and over the members' batches (padded to the longest with
    zero rows, cut off again after the pass). Gradients flow back through the stack into each
    member's own parameters, so every member keeps its own optimizer, clipping and schedule."""

    def __init__(self, members: list[Member]):
        import copy

        from torch.func import functional_call

        self.structure = copy.deepcopy(members[0].model).to("meta")
        self.names = [name for name, _ in members[0].model.named_parameters()]
        self.parameters = {id(m): dict(m.model.named_parameters()) for m in members}
        # Members of one shape may drop out at their own rates (hyperparameter points): then each
        # dropout of the shared structure reads its member's rate from a tensor mapped with it.
        dropouts = [name for name, module in self.structure.named_modules() if isinstance(module, torch.nn.Dropout)]
        self.rates = {id(m): [m.model.get_submodule(name).p for name in dropouts] for m in members}
        self.per_member_rates = len({tuple(rates) for rates in self.rates.values()}) > 1
        if self.per_member_rates:
            self.current = None
            for index, name in enumerate(dropouts):
                parent, _, leaf = name.rpartition(".")
                setattr(self.structure.get_submodule(parent) if parent else self.structure, leaf,
                        _MemberDropout(self, index))

        def one(parameters, rates, x):
            self.current = rates
            return functional_call(self.structure, parameters, (x,))

        self.vmapped = torch.vmap(one, randomness="different")

    def __call__(self, members: list[Member], inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        stacked = {name: torch.stack([self.parameters[id(m)][name] for m in members])
                   for name in self.names}
        longest = max(len(x) for x in inputs)
        batch = inputs[0].new_zeros((len(inputs), longest, *inputs[0].shape[1:]))
        for i, x in enumerate(inputs):
            batch[i, :len(x)] = x
        rates = torch.tensor([self.rates[id(m)] for m in members], dtype=batch.dtype, device=batch.device) \
            if self.per_member_rates else batch.new_zeros((len(members), 0))
        outputs = self.vmapped(stacked, rates, batch)
        return [outputs[i, :len(x)] for i, x in enumerate(inputs)]


class _MemberDropout(torch.nn.Module):
    """Dropout at the rate of the member whose slice of the stacked pass this is (inverted
    dropout, as torch.nn.Dropout: kept activations scaled by 1 / (1 - rate))."""

    def __init__(self, stacked: Stacked, index: int):
        super().__init__()
        self.stacked, self.index = [stacked], index  # a list: not a submodule of the structure

    def forward(self, x):
        if not self.training:
            return x
        rate = self.stacked[0].current[self.index]
        return x * (torch.rand_like(x) >= rate) / (1 - rate)


class Trainer:
    """Trains ``members`` for ``settings.epochs`` (TrainerSettings). ``stacked``: one vmapped
    forward pass for all members (they share the model's shape); otherwise a population of one
    whose model the steps call directly (through DDP's wrapper under data-parallel, ``shard``,
    and torch.compile's when asked for)."""

    def __init__(self, members: list[Member], *, settings, device, batch_size: int, shuffle: bool,
                 stacked: bool = False, eval_batch_size: int = 1024, table=None, progress=None,
                 shard=None, count_column: str = "members", drop_diverged: bool = False):
        if len(members) > 1 and not stacked:
            raise ValueError("several members train together only stacked")
        self.members = members
        self.settings = settings
        self.device = device
        self.batch_size, self.shuffle = batch_size, shuffle
        self.table, self.progress, self.count_column = table, progress, count_column
        self.shard = shard
        self.speed = configure(members[0].model, settings, device)
        for member in members:
            member.model.to(device)
            member.objective.to(device)
            if self.speed.channels_last:
                member.model.to(memory_format=torch.channels_last)
            member.device, member.speed, member.eval_batch_size = device, self.speed, eval_batch_size
        # trainer.threads before the first step: one thread for a small model, torch's default else.
        # Sized by one member's batch: a stacked population's losses and optimizer steps are each
        # member's own small operators, which threads slow down (10x and more on a busy CPU:
        # bench/README.md "Threads"), however many members share the step.
        first = members[0]
        step_rows = batch_size_for(len(first.data.train), batch_size)
        example = to_device(rows(first.data.train.x, slice(0, 64)), device)
        self.threads_note = apply_threads(settings.threads, first.model, example, step_rows, device)
        if stacked:
            self.forward = Stacked(members)
        else:
            member = members[0]
            trained = shard.wrap(member.model) if shard is not None else member.model
            step_model = compiled(trained, settings)  # shares the model's parameters
            member.eval_model = step_model if shard is None else member.model
            self.forward = lambda active, inputs: [forward(step_model, inputs[0])]
        self.stop_requested = 0  # the signal number once Ctrl-C or SIGTERM asked to stop
        self.weights_shown = len(members) == 1 and shows_weights(members[0].model)
        # A member whose training loss is not a finite number: one sentence that stops the run,
        # or (a tune's points) stopped alone, its monitored value nan from then on.
        self.drop_diverged = drop_diverged

    # ------------------------------------------------------------------ the run

    def fit(self, until: int | None = None) -> None:
        """Train until ``settings.epochs`` (or epoch ``until``, a rung's end: continuing loaded
        states), until every member stopped early, or until a stop request (raises StopRequested
        after finishing its step); with trainer.deterministic, with deterministic algorithms only
        (an op that has none is refused in one sentence)."""
        with deterministic(self.settings):
            self._epochs(until)

    def _epochs(self, until: int | None) -> None:
        settings, members = self.settings, self.members
        max_bytes = settings.device_data_max_mb * 2**20
        layout = self.speed.channels_last
        for m in members:
            m.train = Staged(m.data.train.x, m.data.train.y, self.device, max_bytes, layout,
                             augment=m.data.train.augment)
            m.val = None
            if m.data.val is not None:
                staged = Staged(m.data.val.x, m.data.val.y, self.device, max_bytes, layout)
                m.val = (staged.x, staged.y)
        for m in members:  # a resumed member's path goes on from its checkpoint's
            if m.trajectory is None and tracked(m.model):
                m.trajectory = [flat_parameters(m.model)]
        first = members[0]
        first_epoch = first.cursor["epoch"] if first.cursor else len(first.rows) + 1
        last_epoch = settings.epochs if until is None else min(until, settings.epochs)
        for epoch in range(first_epoch, last_epoch + 1):
            active = [m for m in members if not m.stopping.stopped]
            if not active:
                break
            started = time.perf_counter()
            lrs = [m.optimizer.param_groups[0]["lr"] for m in active]
            rows = []
            for m, train, lr in zip(active, self.train_epoch(active, epoch), lrs):
                if train is None:  # diverged (drop_diverged)
                    rows.append({"epoch": epoch, "train_loss": math.nan, m.monitor: math.nan, "lr": lr})
                    continue
                row = {"epoch": epoch, **{f"train_{k}": v for k, v in train.items()}}
                if m.val is not None:
                    row.update({f"val_{k}": v for k, v in m.evaluate(*m.val).items()})
                row["lr"] = lr
                rows.append(row)
            stop = self.stop_requested
            seconds = time.perf_counter() - started  # the epoch of every active member
            for row in rows:
                row["seconds"] = seconds
            if self.shard is not None:  # every rank follows rank 0's row
                rows[0], stop = self.shard.agree(rows[0], stop)
            for m, row in zip(active, rows):
                m.schedule.after_epoch(row[m.monitor])
                m.rows.append(row)
                if m.stopping.update(epoch, row) and m.folder is not None:
                    m.folder.best(epoch, row)
                if not math.isfinite(row["train_loss"]):
                    m.stopping.stopped = True
            self._show(rows)
            for m, row in zip(active, rows):
                if m.logger is not None:
                    m.logger.epoch_end(epoch, row)
                for callback in m.callbacks:
                    callback(epoch, row)
                if m.folder is not None:  # after the logger: a checkpoint covers what it logged
                    m.folder.last(epoch, row)
            still = any(not m.stopping.stopped for m in members)
            if stop and epoch < last_epoch and still:
                raise StopRequested(stop, epoch, 0)

    def _show(self, rows: list[dict]) -> None:
        if self.table is None:
            return
        if len(self.members) == 1:
            member = self.members[0]  # a model of a few weights shows them every epoch (the y = 2x toy)
            note = weights_text(member.model, member.data.target) if self.weights_shown else None
            self.table.row(rows[0], note=note)
            return
        columns = [c for c in rows[0] if all(c in row for row in rows)]
        mean = {c: sum(row[c] for row in rows) / len(rows) for c in columns}
        self.table.row({**mean, "epoch": rows[0]["epoch"], self.count_column: len(rows)})

    # ------------------------------------------------------------------ one epoch

    def train_epoch(self, active: list[Member], epoch: int) -> list[dict]:
        """One pass over every active member's training rows; each member's training metrics.
        The gradients of ``accumulate`` batches add up before each optimizer step (each batch's
        loss weighted by group_share); a stop request waits for the group's optimizer step, so a
        saved position is always at a group's start."""
        shard, accumulate = self.shard, self.settings.accumulate_grad_batches
        sizes = [batch_size_for(len(m.train), self.batch_size) for m in active]
        steps = math.ceil(len(active[0].train) / sizes[0])
        orders, cursors, records = [], [], []
        first_step = 0
        if isinstance(self.forward, Stacked):
            self.forward.structure.train()  # dropout in the pass the members share
        for m, size in zip(active, sizes):
            m.model.train()
            cursor, m.cursor = m.cursor, None
            cursors.append(cursor)
            if cursor is not None:  # continue an epoch that a stop request interrupted
                _check_cursor(cursor, steps, size, m.objective.output_size, accumulate)
                orders.append(cursor["order"])
                first_step = cursor["step"]
            else:
                n = len(m.train)
                orders.append(torch.randperm(n, generator=m.generator) if self.shuffle else torch.arange(n))
        device_orders = [order.to(m.train.index_device) for order, m in zip(orders, active)]
        spans = shard.spans(len(active[0].train), sizes[0], steps) if shard is not None else None
        for m, cursor in zip(active, cursors):
            visited = len(m.train) if spans is None else sum(stop - start for start, stop, weight in spans if weight)
            records.append(EpochRecord(steps, visited) if cursor is None else
                           EpochRecord.resumed(steps, visited, cursor["losses"].to(self.device),
                                               cursor["outputs"].to(self.device)))
        if self.progress is not None:
            self.progress.start_epoch(epoch, steps)

        def indices(order, size):
            for step in range(first_step, steps):
                if spans is None:
                    yield order[step * size:(step + 1) * size]
                else:  # this rank's part of the step's global batch (only these rows are read)
                    start, stop, _ = spans[step]
                    yield order[start:stop]

        feeds = [m.train.batches(indices(order, size)) for m, order, size in zip(active, device_orders, sizes)]
        try:
            return self._steps(active, epoch, feeds, first_step, steps, sizes, spans, orders, device_orders,
                               records)
        finally:
            for feed in feeds:
                feed.close()  # an epoch cut short stops its background reader

    def _steps(self, active, epoch, feeds, first_step, steps, sizes, spans, orders, device_orders,
               records) -> list[dict]:
        """The epoch's steps from ``first_step``, each on the next batch of every member's feed."""
        settings, shard = self.settings, self.shard
        accumulate = settings.accumulate_grad_batches
        autocast, scaler = self.speed.autocast, self.speed.scaler
        for step in range(first_step, steps):
            inputs, targets = [], []
            weight = spans[step][2] if spans is not None else 1.0  # its share of the step's global batch
            for feed in feeds:
                x, y = next(feed)
                inputs.append(x)
                targets.append(y)
            if step % accumulate == 0:
                for m in active:
                    m.optimizer.zero_grad(set_to_none=True)
            with autocast():
                step_outputs = self.forward(active, inputs)
                step_losses = [m.objective.loss(o, y, training=True) for m, o, y in zip(active, step_outputs, targets)]
                total = 0
                for m, loss, size in zip(active, step_losses, sizes):
                    term = loss if spans is None else loss * weight
                    if m.regularizer.l1:
                        term = term + m.regularizer.penalty()
                    if accumulate > 1:
                        term = term * group_share(step, steps, size, len(m.train), accumulate)
                    total = total + term
            (total if scaler is None else scaler.scale(total)).backward()
            group_end = (step + 1) % accumulate == 0 or step + 1 == steps
            if group_end:
                self._optimizer_step(active)
            self._after_batch(active, step, steps, epoch, records, step_losses, step_outputs, spans, weight)
            # Data-parallel ranks stop only at an epoch's end, where they agree on it.
            if self.stop_requested and group_end and step + 1 < steps and shard is None:
                for i, m in enumerate(active):
                    m.cursor = {"epoch": epoch, "step": step + 1, "order": orders[i], **records[i].saved()}
                raise StopRequested(self.stop_requested, epoch, step + 1)
        return [self._epoch_metrics(m, records[i].losses, records[i].outputs, device_orders[i], sizes[i],
                                    steps, spans, epoch)
                for i, m in enumerate(active)]

    def _optimizer_step(self, active: list[Member]) -> None:
        """Each member's clipping, optimizer step and per-batch schedule, on the gradients summed
        since the last one."""
        clip, scaler = self.settings.grad_clip, self.speed.scaler
        for m in active:
            if clip > 0:
                if scaler is not None:  # unscale before clipping
                    scaler.unscale_(m.optimizer)
                torch.nn.utils.clip_grad_norm_(m.model.parameters(), clip)
            if scaler is None:
                m.optimizer.step()
            else:
                scaler.step(m.optimizer)
        if scaler is not None:
            scaler.update()
        for m in active:
            m.schedule.after_batch()
            if m.trajectory is not None:
                m.trajectory.append(flat_parameters(m.model))

    def _after_batch(self, active, step: int, steps: int, epoch: int, records, step_losses, step_outputs,
                     spans, weight) -> None:
        """Keep the batch's losses and outputs for the epoch's metrics; log and show its progress."""
        for i, m in enumerate(active):
            records[i].add_loss(step_losses[i])
            if spans is None or weight:
                records[i].add_outputs(step_outputs[i])
            every = m.logger.step_every if m.logger is not None else 0
            if every and ((epoch - 1) * steps + step + 1) % every == 0:
                m.logger.step((epoch - 1) * steps + step + 1, records[i].last_loss())
        if self.progress is not None:
            self.progress.advance()

    def _epoch_metrics(self, m: Member, step_losses, outputs, order, size: int, steps: int, spans,
                       epoch: int) -> dict:
        n, shard = len(m.train), self.shard
        if shard is None:
            counts = torch.full((steps,), float(size), device=step_losses.device)
            counts[-1] = n - size * (steps - 1)
            mean_loss = float((step_losses * counts).sum() / n)
        else:
            mean_loss = shard.epoch_loss(step_losses, spans, n)
        if not math.isfinite(mean_loss) and self.drop_diverged:
            return None
        if not math.isfinite(mean_loss):
            bad = torch.nonzero(~torch.isfinite(step_losses)).flatten()
            bad_step = int(bad[0]) + 1 if len(bad) else steps
            whose = f" of {m.label}" if m.label else ""
            raise DltrainError(
                f"The training loss{whose} became "
                f"{float(step_losses[bad_step - 1]) if len(bad) else mean_loss} in epoch {epoch} at "
                f"step {bad_step} of {steps}; lower optimizer.lr (now "
                f"{m.optimizer.param_groups[0]['lr']:g}) or check the data for extreme values."
            )
        # outputs are in visiting order: compare them with the targets in that order
        if shard is not None:
            everything, visited = shard.gather(outputs, order, n, size, steps)
            return m.summarise(mean_loss, everything, m.train.targets(visited))
        return m.summarise(mean_loss, outputs, m.train.targets(order))


# Who hears a stop request now, outermost first: a cross-validation, then its fold's trainer.
_listening: list = []


def requested_stop() -> int:
    """The signal number of the stop request that the listeners of ``stop_on_signals`` hold (0:
    none), for code between two trainings to act on."""
    return next((listener.stop_requested for listener in _listening if listener.stop_requested), 0)


def _request_stop(signal_number, frame):
    import signal

    if signal_number == signal.SIGINT and requested_stop():
        raise KeyboardInterrupt
    for listener in _listening:
        listener.stop_requested = listener.stop_requested or signal_number


def _check_cursor(cursor: dict, steps: int, size: int, output_size: int, accumulate: int) -> None:
    """A saved position inside an epoch (Member checked its form) that fits this epoch's steps:
    every step before it full, at the start of a group of ``accumulate`` batches, its outputs one
    row per training row seen."""
    step, outputs = cursor["step"], cursor["outputs"]
    if step >= steps or step % accumulate or tuple(outputs.shape) != (step * size, output_size):
        raise DltrainError(
            f"The checkpoint's position inside epoch {cursor['epoch']} (step {step}, outputs "
            f"{'x'.join(map(str, outputs.shape))}) does not fit this run's {steps} steps of {size} rows "
            f"and {output_size} outputs; resume with the run's own settings."
        )


@contextmanager
def stop_on_signals(listener):
    """Ctrl-C or SIGTERM sets ``listener.stop_requested`` to the signal's number instead of
    stopping the program: a Trainer then stops after its current step (and saves a checkpoint),
    a cross-validation before its next fold. Nested, a request reaches every listener: one that
    a fold's trainer no longer acts on (it came in the last epoch, or as the fold ended) still
    stops the cross-validation, and a listener that starts after a request holds it at once. A
    second Ctrl-C stops at once (KeyboardInterrupt)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    listener.stop_requested = listener.stop_requested or requested_stop()
    previous = {}
    if not _listening:
        previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    _listening.append(listener)
    try:
        yield
    finally:
        _listening.remove(listener)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
