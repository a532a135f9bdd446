"""A seed ensemble as one model: its members' outputs combined into outputs whose scores (the
objective's probabilities or predictions) are the mean of the members' scores, so that eval,
predict and export use it as they use any model."""

from __future__ import annotations

import torch
from torch import nn


class Ensemble(nn.Module):
    """``members`` (models of one shape) for a ``task`` with ``output_size`` outputs; a
    regression's outputs are averaged in the target's own units (``transform``: the kind, mean
    and std of data.target_transform) and given back in the trained units."""

    def __init__(self, members: list[nn.Module], task: str, output_size: int, transform=None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.task, self.output_size = task, output_size
        self.kind, self.mean, self.std = ((transform.kind, transform.mean, transform.std) if transform is not None
                                          else ("none", 0.0, 1.0))

    def forward(self, *inputs):
        outputs = torch.stack([member(*inputs) for member in self.members])
        if self.task == "regression":
            values = outputs * self.std + self.mean
            if self.kind == "log":
                return (torch.log(values.exp().mean(0)) - self.mean) / self.std
            return (values.mean(0) - self.mean) / self.std
        if self.output_size == 1:  # sigmoid: the logit of the mean probability
            probability = torch.sigmoid(outputs).mean(0).clamp(1e-7, 1 - 1e-7)
            return torch.log(probability) - torch.log1p(-probability)
        return torch.log(torch.softmax(outputs, dim=-1).mean(0).clamp_min(1e-12))  # softmax: the mean's
