"""A non-finite loss, caught without making the host wait for the device at every step."""

from __future__ import annotations

import torch


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf: stop instead of pruning garbage."""


class LossWatch:
    """Remembers, on the loss's device, the first non-finite loss of a fit and the step it came at.

    ``if not torch.isfinite(loss)`` at every step is a host sync on a GPU (the CPU waits for the
    step's kernels to finish). Here a step only queues a few scalar ops; ``check`` reads the state
    back and raises, and the module calls it where a sync is cheap and before anything is kept: at
    logging steps, before an ADMM Z/U update and at the end of each epoch, before its checkpoint.
    Steps count the training batches of the fit, from ``start`` (the global step it began at).
    """

    def __init__(self, stage: str, start: int = 0) -> None:
        self.stage = stage
        self.start = start
        self._state: torch.Tensor | None = None  # [batches seen, first bad batch (-1: none), its loss]
        self._inc: torch.Tensor | None = None

    def update(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        if self._state is None:
            self._state = loss.new_tensor([0.0, -1.0, 0.0])
            self._inc = loss.new_tensor([1.0, 0.0, 0.0])
        seen, first, _ = self._state.unbind()
        newly = ~torch.isfinite(loss) & (first < 0)
        self._state = torch.where(newly, torch.stack([seen + 1, seen, loss]), self._state + self._inc)

    def check(self) -> None:
        """Raise NonFiniteLossError if any loss so far was NaN or inf (a host sync)."""
        if self._state is None:
            return
        _, first, value = self._state.tolist()
        if first >= 0:
            raise NonFiniteLossError(
                f"stage {self.stage}: loss is {value} at step {self.start + int(first)} "
                "(learning rate too high?); stopping before anything is pruned or saved")
