"""A resumable, DDP-aware sampler: the epoch's order depends only on (seed, epoch).

``torch.utils.data.DistributedSampler`` covers the sharding but not restarting in the middle of an
epoch. Here the permutation of epoch ``e`` is drawn from a generator seeded with ``seed + e``, so an
interrupted run that resumes at batch ``k`` of epoch ``e`` sees exactly the samples it would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    def __init__(
        self,
        length: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        pad: bool = True,
    ) -> None:
        self.length = length
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.epoch = 0
        self.start_index = 0  # samples of this rank's shard to skip (mid-epoch resume)
        self.pad = pad
        if drop_last:
            self.per_rank = length // world_size
        elif not pad:  # validation: no duplicated samples, ranks may differ by one
            self.per_rank = len(range(rank, length, world_size))
        else:
            self.per_rank = math.ceil(length / world_size)

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        self.epoch = epoch
        self.start_index = start_index

    def indices(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if not self.pad:
            return order[self.rank :: self.world_size]
        total = self.per_rank * self.world_size
        if total > len(order):  # pad by repeating the start so every rank gets the same count
            order += order[: total - len(order)]
        order = order[:total]
        return order[self.rank : total : self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start_index :])

    def __len__(self) -> int:
        return self.per_rank - self.start_index
