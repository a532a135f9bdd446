"""Recurrent sequence classifier and regressor (LSTM, GRU or plain RNN): tokens through an
embedding, or numeric features per step (image rows, time-series windows); variable-length
batches are packed, so padding never changes a prediction."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from dltrain.errors import DltrainError
from dltrain.models import register_model
from dltrain.models.cnn import check_dropout, positive_int

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}


# Not stackable: aten::lstm (and gru, rnn) has no torch.vmap batching rule.
@register_model("lstm", tasks=("regression", "binary", "multiclass"),
                input_kinds=("tokens", "sequence", "image"), stackable=False)
class RecurrentNet(nn.Module):
    """Reads a sequence step by step and classifies (or regresses) from the last layer's final
    hidden state (both directions' when bidirectional).

    Inputs by data kind: ``tokens`` -> ``model(tokens, lengths)`` with tokens (batch, steps) of
    vocabulary indices (0 is padding); ``sequence`` -> ``model(x)`` or ``model(x, lengths)`` with
    x (batch, steps, features); ``image`` -> ``model(x)`` with x (batch, channels, height, width)
    read as ``height`` steps of ``channels * width`` features (one image row per step)."""

    def __init__(self, kind: str, input_shape, output_size: int, *, vocab_size: int = 0,
                 cell: str = "lstm", hidden_size: int = 128, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, embedding_dim: int = 64):
        super().__init__()
        if cell not in CELLS:
            raise DltrainError(f"model.cell must be one of {', '.join(CELLS)}; got {cell!r}.")
        for name, number in (("hidden_size", hidden_size), ("num_layers", num_layers),
                             ("embedding_dim", embedding_dim)):
            if not positive_int(number):
                raise DltrainError(f"model.{name} must be a positive integer, got {number!r}.")
        if not isinstance(bidirectional, bool):
            raise DltrainError(f"model.bidirectional must be true or false, got {bidirectional!r}.")
        dropout = check_dropout(dropout)
        self.kind = kind
        self.embedding = None
        if kind == "tokens":
            if vocab_size < 2:
                raise DltrainError("model=lstm on text needs a vocabulary; this data has none.")
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
            features = embedding_dim
        elif kind == "image":
            channels, _, width = input_shape
            features = channels * width
        else:
            if len(input_shape) != 2:
                raise DltrainError(
                    f"model=lstm needs sequences shaped (steps, features), but this data's input "
                    f"shape is {tuple(input_shape)}."
                )
            features = input_shape[1]
        self.rnn = CELLS[cell](features, hidden_size, num_layers=num_layers, batch_first=True,
                               bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        self.directions = 2 if bidirectional else 1
        self.head = nn.Linear(hidden_size * self.directions, output_size)

    @classmethod
    def from_spec(cls, spec, output_size: int, cell: str = "lstm", hidden_size: int = 128,
                  num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0,
                  embedding_dim: int = 64):
        return cls(spec.kind, spec.input_shape, output_size, vocab_size=spec.vocab_size, cell=cell,
                   hidden_size=hidden_size, num_layers=num_layers, bidirectional=bidirectional,
                   dropout=dropout, embedding_dim=embedding_dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if self.embedding is not None:
            x = self.embedding(x)
        elif x.dim() == 4:  # images: (batch, channels, height, width) -> rows as steps
            x = x.permute(0, 2, 1, 3).flatten(2)
        if lengths is not None:
            # Packing runs each sequence for its own length only: padding never reaches the state.
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(x)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        # hidden: (layers * directions, batch, hidden_size); keep the last layer's directions.
        last = hidden[-self.directions:].transpose(0, 1).flatten(1)
        return self.head(self.dropout(last))

    def padded(self) -> nn.Module:
        """This net reading padded token batches without packing, which torch.export and ONNX
        cannot trace, with the same outputs (for ``dltrain export``)."""
        if self.embedding is None:
            return self  # images and series: every sequence has every step, nothing is packed
        return PaddedRecurrentNet(self)


class PaddedRecurrentNet(nn.Module):
    """``net(tokens, lengths)`` of a RecurrentNet on text, computed on the whole padded batch with
    the packed outputs. Forward direction: the last layer's output at a text's last step is its
    final state, and the padding after that step cannot reach it. Backward direction (which must
    start at each text's own last token): each layer also runs on the texts shifted to end at the
    last step, where the padding comes after them in its order, and its outputs are shifted back."""

    def __init__(self, net: RecurrentNet):
        super().__init__()
        self.net = net
        rnn = net.rnn
        self.layers = nn.ModuleList()
        if net.directions == 2:  # one layer at a time: each layer's input is both directions' outputs
            for layer in range(rnn.num_layers):
                single = type(rnn)(rnn.input_size if layer == 0 else 2 * rnn.hidden_size, rnn.hidden_size,
                                   batch_first=True, bidirectional=True, bias=rnn.bias,
                                   **({"nonlinearity": rnn.nonlinearity} if isinstance(rnn, nn.RNN) else {}))
                suffixes = (f"_l{layer}", f"_l{layer}_reverse")
                single.load_state_dict({name.replace(f"_l{layer}", "_l0"): value
                                        for name, value in rnn.state_dict().items() if name.endswith(suffixes)})
                self.layers.append(single)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        net = self.net
        x = net.embedding(tokens)
        last = (lengths - 1).clamp(min=0)
        if not len(self.layers):
            steps, _ = net.rnn(x)  # (batch, steps, hidden_size)
            return net.head(net.dropout(_at(steps, last.view(-1, 1))).squeeze(1))
        count = x.shape[1]
        shift = (count - lengths).view(-1, 1)
        time = torch.arange(count, device=x.device).view(1, -1)
        to_end = (time - shift).clamp(min=0)  # the text shifted to end at the last step
        back = (time + shift).clamp(max=count - 1)  # and shifted back
        size = net.rnn.hidden_size
        for layer in self.layers:
            forward, _ = layer(x)
            backward, _ = layer(_at(x, to_end))
            x = torch.cat([forward[..., :size], _at(backward[..., size:], back)], dim=-1)
        final = torch.cat([_at(x[..., :size], last.view(-1, 1)).squeeze(1), x[:, 0, size:]], dim=-1)
        return net.head(net.dropout(final))


def _at(steps: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``steps[b, index[b, t]]`` for every row b: (batch, len(index[b]), features)."""
    return steps.gather(1, index.unsqueeze(-1).expand(-1, -1, steps.shape[2]))
