"""Length-bucketed batches (notes §3.3): sequences of like length share a batch, so little of
each batch is padding; the loss still weights padding 0 (``ignore_index``) in the task.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.data.loaders import stateful_loader


class BucketBatchSampler(Sampler[list[int]]):
    """Sorts indices into length buckets, batches within each bucket, shuffles the batch order.

    ``boundaries`` (ascending) cut lengths into buckets [.., b0), [b0, b1), ...; None gives one
    bucket per distinct length. The order depends on ``seed`` + epoch (``set_epoch``, as for
    DistributedSampler) and is the same on every rank. With ``num_replicas`` > 1 the batch list
    is made a multiple of num_replicas long (splitting the largest batches in two) and rank r
    takes batches r, r + num_replicas, ...: shards are disjoint, complete and of equal count.
    """

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        boundaries: Sequence[int] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size={batch_size}; allowed: an integer >= 1")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank={rank}; allowed: 0 <= rank < num_replicas={num_replicas}")
        if len(lengths) < num_replicas:
            raise ValueError(f"{len(lengths)} examples cannot feed num_replicas={num_replicas}")
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        if boundaries is None:
            self.keys = list(lengths)
        else:
            self.keys = [bisect.bisect_right(boundaries, length) for length in lengths]
        # Lightning calls set_epoch on ``batch_sampler.sampler``: this sampler is its own.
        self.sampler = self
        self._count = len(self._batches()) // num_replicas  # independent of the epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        """Every rank's batches of this epoch, in order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        n = len(self.keys)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else range(n)
        buckets: dict[int, list[int]] = {}
        for index in order:
            buckets.setdefault(self.keys[index], []).append(index)
        batches = [
            bucket[start : start + self.batch_size]
            for _, bucket in sorted(buckets.items())
            for start in range(0, len(bucket), self.batch_size)
        ]
        while len(batches) % self.num_replicas:
            largest = max(range(len(batches)), key=lambda i: len(batches[i]))
            if len(batches[largest]) > 1:
                batch = batches.pop(largest)
                batches += [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
            else:  # every batch holds one example: merge two instead
                last = batches.pop()
                batches[-1] = batches[-1] + last
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._batches()[self.rank :: self.num_replicas]

    def __len__(self) -> int:
        return self._count


def padding_fraction(tokens: Tensor, pad_id: int = 0) -> float:
    """The share of a padded batch (B, S) that is padding."""
    return (tokens == pad_id).float().mean().item()


def bucketed_loader(
    dataset: Dataset,
    lengths: Sequence[int],
    batch_size: int,
    collate_fn: Callable,
    num_workers: int,
    trainer=None,
) -> StatefulDataLoader:
    """A training loader over length buckets, sharded over the trainer's processes if any.

    The seed is Lightning's global seed, the same on every rank (as Lightning's own
    DistributedSampler uses), so every rank cuts the same batches.
    """
    replicas = {"num_replicas": trainer.world_size, "rank": trainer.global_rank} if trainer else {}
    sampler = BucketBatchSampler(
        lengths, batch_size, seed=int(os.environ.get("PL_GLOBAL_SEED", 0)), **replicas
    )
    return stateful_loader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
    )
