"""How a regression target is trained (``data.target_transform``): as it is (``none``),
standardized (``standardize``: ``(y - mean) / std``), or as its standardized logarithm (``log``:
``(log y - mean) / std``). Fitted on the training rows only, saved with the run's preprocessing,
and undone for every metric and prediction, which are always in the target's own units."""

from __future__ import annotations

from dataclasses import dataclass

from dltrain.errors import DltrainError

TARGET_TRANSFORMS = ("none", "standardize", "log")


@dataclass(frozen=True)
class TargetTransform:
    """``kind`` and the mean and std it subtracts and divides by (0 and 1 for ``none``). The
    affine part is applied whatever the kind says, so a spec that only has ``mean`` and ``std``
    (an older dltrain's checkpoint) decodes as it was trained."""

    kind: str = "none"
    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, kind: str, values) -> "TargetTransform":
        """The transform ``kind`` (one of TARGET_TRANSFORMS) fitted on ``values`` (the training
        rows' targets)."""
        if kind == "none":
            return cls()
        values = cls(kind).measured(values)
        return cls(kind, float(values.mean()), float(values.std()) or 1.0)

    @classmethod
    def of(cls, spec) -> "TargetTransform":
        """The transform a DataSpec (or a checkpoint's spec) describes."""
        return cls(getattr(spec, "target_transform", "none"), spec.target_mean, spec.target_std)

    def measured(self, values):
        """``values`` as float64, as the mean and std measure them: their logarithm for ``log``,
        which refuses a value that is not above 0 in one sentence."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        if self.kind != "log":
            return values
        bad = values[~(values > 0)]
        if bad.size:
            raise DltrainError(f"data.target_transform=log needs a target above 0 in every row, but the "
                               f"target holds {bad[0]:g}; use data.target_transform=standardize (or none).")
        return np.log(values)

    def encode(self, values):
        """Targets in their own units -> what the model is trained to output (float64)."""
        return (self.measured(values) - self.mean) / self.std

    def decode(self, values):
        """The model's outputs (a tensor or an array) -> values in the target's own units."""
        values = values * self.std + self.mean
        if self.kind == "log":
            import numpy as np

            return values.exp() if hasattr(values, "exp") else np.exp(values)
        return values

    def state(self) -> dict:
        """As the saved preprocessing holds it (preprocessing.json's ``target``)."""
        return {"transform": self.kind, "mean": self.mean, "std": self.std}

    @classmethod
    def from_state(cls, state) -> "TargetTransform":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader)."""
        return cls(state.text("transform", choices=TARGET_TRANSFORMS), state.number("mean"),
                   state.number("std", positive=True))
