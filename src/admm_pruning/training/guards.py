"""A non-finite loss, caught without making the host wait for the device at every step."""

from __future__ import annotations

import torch


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf: stop instead of pruning garbage."""


class LossWatch:
    """Finds the first non-finite loss of a fit and the step it came at.

    ``if not torch.isfinite(loss)`` at every step is a host sync on a GPU (the CPU waits for the
    step's kernels to finish). Here a step only keeps its loss tensor, with no op queued;
    ``check`` stacks the losses kept since the last check, reads them back and raises, and the
    module calls it where a sync is cheap and before anything is kept: at
    logging steps, before an ADMM Z/U update and at the end of each epoch, before its checkpoint.
    Steps count the training batches of the fit, from ``start`` (the global step it began at).
    """

    def __init__(self, stage: str, start: int = 0) -> None:
        self.stage = stage
        self.start = start
        self._pending: list[torch.Tensor] = []  # the losses since the last clean check, where they are
        self._checked = 0  # batches before them
        self._sum, self._count = 0.0, 0  # checked losses since the last epoch_mean

    def update(self, loss: torch.Tensor) -> None:
        """Keep the loss (detached: no graph is held); no op is queued, so a step pays nothing."""
        self._pending.append(loss.detach())

    def check(self) -> None:
        """Raise NonFiniteLossError if any loss so far was NaN or inf (a host sync)."""
        if not self._pending:
            return
        losses = torch.stack(self._pending).float()
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            first = int(bad[0])
            raise NonFiniteLossError(
                f"stage {self.stage}: loss is {losses[first].item()} at step {self.start + self._checked + first} "
                "(learning rate too high?); stopping before anything is pruned or saved")
        self._checked += len(self._pending)
        self._sum, self._count = self._sum + float(losses.sum()), self._count + len(losses)
        self._pending.clear()

    def epoch_mean(self) -> float | None:
        """The mean of the losses checked since the last call (after ``check``), for the epoch line."""
        mean = self._sum / self._count if self._count else None
        self._sum, self._count = 0.0, 0
        return mean
