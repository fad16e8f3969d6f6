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


class LengthGroupedSampler(EpochShuffleSampler):
    """The epoch's shuffle, regrouped so that each batch holds examples of similar length.

    The permutation of :class:`EpochShuffleSampler` is cut into pools of ``pool_batches``
    batches; each pool is sorted by length (longest first) and cut into batches; the full
    batches of the epoch are then shuffled (seeded by ``(seed, epoch)``) and the one short batch,
    if any, comes last. A DataLoader with the same ``batch_size`` over this order yields exactly
    these batches; every example appears once per epoch and ``resume_at`` works as for the plain
    shuffle (it counts indices). Batches padded to their longest sequence then waste few positions.
    """

    def __init__(self, lengths: np.ndarray, batch_size: int, seed: int, pool_batches: int = 64) -> None:
        super().__init__(len(lengths), seed)
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(f"batch_size={batch_size} and pool_batches={pool_batches} must be >= 1")
        self.lengths = np.asarray(lengths)
        self.batch_size = int(batch_size)
        self.pool_batches = int(pool_batches)

    def order(self, epoch: int) -> np.ndarray:
        perm = super().order(epoch)
        pool = self.batch_size * self.pool_batches
        batches = []
        for start in range(0, self.n, pool):
            idx = perm[start:start + pool]
            idx = idx[np.argsort(-self.lengths[idx], kind="stable")]
            batches.extend(idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size))
        short = [b for b in batches if len(b) < self.batch_size]
        full = [b for b in batches if len(b) == self.batch_size]
        rng = np.random.default_rng([self.seed, int(epoch), 1])
        full = [full[i] for i in rng.permutation(len(full))]
        parts = full + short
        return np.concatenate(parts) if parts else perm
