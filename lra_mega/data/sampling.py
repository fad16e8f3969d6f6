"""The training order: a shuffle that is a pure function of (seed, epoch) and can start mid-epoch.

Lightning calls :meth:`EpochShuffleSampler.set_epoch` at the start of every epoch; a resumed run
calls :meth:`EpochShuffleSampler.resume_at` so the interrupted epoch continues with the example
that would have come next (exact resume).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class EpochShuffleSampler(Sampler[int]):
    """Indices ``0..n-1`` in the order ``permutation(seed, epoch)``; the same for any process.

    ``len()`` is always ``n`` (a whole epoch); after :meth:`resume_at` the first epoch iterated
    skips its first ``start`` indices, later epochs are whole.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = int(n)
        self.seed = int(seed)
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch``: numpy's PCG64 seeded with ``[seed, epoch]``."""
        return np.random.default_rng([self.seed, int(epoch)]).permutation(self.n)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def resume_at(self, epoch: int, start: int) -> None:
        """Continue epoch ``epoch`` after its first ``start`` indices (those already trained on)."""
        self.epoch = int(epoch)
        self._resume = (int(epoch), max(0, int(start)))

    def __iter__(self) -> Iterator[int]:
        start = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            start = self._resume[1]
            self._resume = None
        return iter(self.order(self.epoch)[start:].tolist())

    def __len__(self) -> int:
        return self.n
