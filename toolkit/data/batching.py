"""Batch samplers that group sentences of similar length (less padding, faster on CPU)."""

from __future__ import annotations

import random

import torch


class LengthBucketBatches(torch.utils.data.Sampler[list[int]]):
    """Shuffled batches of similar length: sort within random pools of ``pool`` batches.

    With ``max_tokens`` the batch size varies so that ``batch * longest <= max_tokens``
    (at most ``batch_size`` items): long sentences get small batches, short ones large.
    Padding less doubles CPU throughput on short, varied sentences.
    """

    def __init__(
        self,
        lengths: list[int],
        batch_size: int,
        seed: int = 0,
        pool: int = 50,
        max_tokens: int | None = None,
    ) -> None:
        self.lengths, self.batch_size, self.seed, self.pool = lengths, batch_size, seed, pool
        self.max_tokens = max_tokens
        self.epoch = 0
        self._count: int | None = None

    def _chunks(self, ordered: list[int]) -> list[list[int]]:
        if not self.max_tokens:
            return [
                ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)
            ]
        batches, current, longest = [], [], 0
        for i in ordered:
            n = max(longest, self.lengths[i])
            if current and (
                n * (len(current) + 1) > self.max_tokens or len(current) >= self.batch_size
            ):
                batches.append(current)
                current, n = [], self.lengths[i]
            current.append(i)
            longest = n
        if current:
            batches.append(current)
        return batches

    def _batches(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed + epoch)
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        size = self.batch_size * self.pool
        batches = []
        for start in range(0, len(order), size):
            chunk = sorted(order[start : start + size], key=self.lengths.__getitem__)
            batches += self._chunks(chunk)
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        batches = self._batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        if not self.max_tokens:
            return -(-len(self.lengths) // self.batch_size)
        if self._count is None:
            self._count = len(self._batches(0))
        return self._count
