"""Data paths: where a training step's augmented views come from.

A data path yields, for each step of an epoch, a batch dict

    {"views": [Tensor [b, C, S_v, S_v] float, normalised, on the device] * n_views,
     "index": LongTensor [b] (dataset rows), "labels": LongTensor [b] (−1 unknown)}

with b = global batch / world size. A neighbour-pair path (given a `neighbors` table [N, q],
`ccli.data.pairs`) adds "neighbor_views" (one neighbour per anchor, drawn by
`sample_neighbors`, augmented by `neighbor_views`) and "neighbor_index" [b]. Every random choice is a function of (seed, epoch, step or
sample index, rank), so an epoch is reproducible on its own; that is what makes `--resume`
continue exactly.

- `DeviceDataPath` (`--augment-on gpu`): the uint8 dataset lives on the device (in pinned host
  memory when it would take over a quarter of the free GPU memory) and `BatchAugmenter` makes
  each view of the whole batch in batched kernels.
- `LoaderDataPath` (`--augment-on cpu`): a DataLoader whose workers run `SampleAugmenter` per
  image; each image's views are seeded by (seed, epoch, index), independent of the worker.

`make_data_path(...)` picks one from the `augment_on` string. On the device path the neighbour
images are gathered from the uint8 dataset already on the device: only the b indices move.
"""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from ccli.data.augment import SampleAugmenter, ViewAug
from ccli.engine.ddp import DistContext

_M1, _M2 = 1_000_003, 998_244_353


def mix_seed(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (seed, epoch, index, …)."""
    value = 0x9E3779B97F4A7C15
    for p in parts:
        value = (value * _M1 + int(p) + 1) % (2**63 - 25)
        value = (value ^ (value >> 29)) * _M2 % (2**63 - 25)
    return value


def default_workers() -> int:
    """DataLoader workers: leave one core to the training process, at most 8."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cpus - 1))


class DeviceDataPath:
    """Batched augmentation of a uint8 dataset held on the device."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, views: Sequence[ViewAug], mean, std,
                 batch_size: int, device, seed: int = 0, dist: DistContext = DistContext(), drop_last: bool = True,
                 host_memory: bool = False, neighbors: np.ndarray | None = None,
                 neighbor_views: Sequence[ViewAug] = ()):
        import torch

        from ccli.data.gpu_augment import BatchAugmenter
        from ccli.data.pairs import neighbor_counts

        self.device = torch.device(device)
        self.dist = dist
        tensor = torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).contiguous()
        if self.device.type == "cuda" and not host_memory:
            # A dataset that would take more than a quarter of the free GPU memory stays in pinned
            # host memory; each batch is copied over as uint8 (4× less traffic than float).
            free, _ = torch.cuda.mem_get_info(self.device)
            host_memory = tensor.numel() > 0.25 * free
        if host_memory and self.device.type == "cuda":
            self.images = tensor.pin_memory()
        else:
            self.images = tensor.to(self.device)
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.augmenter = BatchAugmenter(views, mean, std)
        self.neighbors = None if neighbors is None else np.asarray(neighbors, dtype=np.int64)
        self.neighbor_counts = None if neighbors is None else neighbor_counts(self.neighbors)
        self.neighbor_augmenter = BatchAugmenter(neighbor_views, mean, std) if neighbors is not None else None
        self.global_batch = int(batch_size)
        self.local_batch = self.global_batch // dist.world_size
        self.seed = int(seed)
        self.drop_last = drop_last
        self.n = len(self.labels)

    def __len__(self) -> int:
        full = self.n // self.global_batch
        return full if self.drop_last or self.n % self.global_batch == 0 else full + 1

    def batches(self, epoch: int) -> Iterator[dict]:
        import torch

        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(mix_seed(self.seed, epoch)))
        gen = torch.Generator(device=self.device).manual_seed(mix_seed(self.seed, epoch, self.dist.rank, 7))
        r, b = self.dist.rank, self.local_batch
        for step in range(len(self)):
            chunk = order[step * self.global_batch : (step + 1) * self.global_batch]
            idx = chunk[r * b : (r + 1) * b] if len(chunk) == self.global_batch else chunk[r::self.dist.world_size]
            x = self.images[idx.to(self.images.device)].to(self.device, non_blocking=True)
            batch = {"views": self.augmenter(x, gen), "index": idx, "labels": self.labels[idx]}
            if self.neighbors is not None:
                batch.update(self._neighbor_batch(idx, epoch, gen))
            yield batch

    def _neighbor_batch(self, idx, epoch: int, gen) -> dict:
        import torch

        from ccli.data.pairs import sample_neighbors

        partner = torch.from_numpy(sample_neighbors(self.neighbors, idx.numpy(), epoch, self.seed, self.neighbor_counts))
        x = self.images[partner.to(self.images.device)].to(self.device, non_blocking=True)
        return {"neighbor_views": self.neighbor_augmenter(x, gen), "neighbor_index": partner}


class _ViewsDataset:
    """Map-style dataset over (epoch, index) keys returning the views of one image."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, augmenter: SampleAugmenter, seed: int,
                 neighbors: np.ndarray | None = None, neighbor_augmenter: SampleAugmenter | None = None):
        from ccli.data.pairs import neighbor_counts

        self.images = images_nhwc
        self.labels = np.asarray(labels, dtype=np.int64)
        self.augmenter = augmenter
        self.seed = seed
        self.neighbors = neighbors
        self.neighbor_counts = None if neighbors is None else neighbor_counts(neighbors)
        self.neighbor_augmenter = neighbor_augmenter

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key):
        import torch

        epoch, i = key
        image = torch.from_numpy(np.ascontiguousarray(self.images[i])).permute(2, 0, 1)
        views = self.augmenter(image, mix_seed(self.seed, epoch, i))
        if self.neighbors is None:
            return views, i, int(self.labels[i])
        from ccli.data.pairs import sample_neighbors

        j = int(sample_neighbors(self.neighbors, [i], epoch, self.seed, self.neighbor_counts)[0])
        partner = torch.from_numpy(np.ascontiguousarray(self.images[j])).permute(2, 0, 1)
        # Seeded by the anchor (not the partner) so two anchors sharing a neighbour see two draws.
        return views, i, int(self.labels[i]), self.neighbor_augmenter(partner, mix_seed(self.seed, epoch, i, 1)), j


class _EpochBatchSampler:
    """Yields this rank's slice of each global batch as (epoch, index) keys; `set_epoch` before iterating."""

    def __init__(self, n: int, global_batch: int, seed: int, dist: DistContext, drop_last: bool):
        self.n, self.global_batch, self.seed, self.dist, self.drop_last = n, global_batch, seed, dist, drop_last
        self.local_batch = global_batch // dist.world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        full = self.n // self.global_batch
        return full if self.drop_last or self.n % self.global_batch == 0 else full + 1

    def __iter__(self):
        order = np.random.default_rng(mix_seed(self.seed, self.epoch)).permutation(self.n)
        r, b = self.dist.rank, self.local_batch
        for step in range(len(self)):
            chunk = order[step * self.global_batch : (step + 1) * self.global_batch]
            idx = chunk[r * b : (r + 1) * b] if len(chunk) == self.global_batch else chunk[r::self.dist.world_size]
            yield [(self.epoch, int(i)) for i in idx]


def _worker_init(_worker_id: int) -> None:
    import torch

    # Each worker augments one image at a time; intra-op threads would only fight each other.
    torch.set_num_threads(1)


class LoaderDataPath:
    """Per-sample torchvision augmentation in DataLoader worker processes."""

    def __init__(self, images_nhwc: np.ndarray, labels: np.ndarray, views: Sequence[ViewAug], mean, std,
                 batch_size: int, device, seed: int = 0, dist: DistContext = DistContext(), drop_last: bool = True,
                 workers: int | None = None, neighbors: np.ndarray | None = None,
                 neighbor_views: Sequence[ViewAug] = ()):
        import torch
        from torch.utils.data import DataLoader

        self.device = torch.device(device)
        self.sampler = _EpochBatchSampler(len(images_nhwc), int(batch_size), int(seed), dist, drop_last)
        self.pairs = neighbors is not None
        dataset = _ViewsDataset(images_nhwc, labels, SampleAugmenter(views, mean, std), int(seed),
                                None if neighbors is None else np.asarray(neighbors, dtype=np.int64),
                                SampleAugmenter(neighbor_views, mean, std) if neighbors is not None else None)
        workers = default_workers() if workers is None or workers < 0 else int(workers)
        self.loader = DataLoader(
            dataset, batch_sampler=self.sampler, num_workers=workers, persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda", worker_init_fn=_worker_init if workers > 0 else None,
            prefetch_factor=4 if workers > 0 else None,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def batches(self, epoch: int) -> Iterator[dict]:
        self.sampler.set_epoch(epoch)
        for item in self.loader:
            views, index, labels = item[:3]
            batch = {"views": [v.to(self.device, non_blocking=True) for v in views], "index": index, "labels": labels}
            if self.pairs:
                batch["neighbor_views"] = [v.to(self.device, non_blocking=True) for v in item[3]]
                batch["neighbor_index"] = item[4]
            yield batch


def make_data_path(augment_on: str, images_nhwc: np.ndarray, labels: np.ndarray, views: Sequence[ViewAug], mean,
                   std, batch_size: int, device, seed: int = 0, dist: DistContext = DistContext(),
                   drop_last: bool = True, workers: int | None = None, neighbors: np.ndarray | None = None,
                   neighbor_views: Sequence[ViewAug] = ()):
    """`augment_on` 'gpu' → DeviceDataPath (on whatever device is in use), 'cpu' → LoaderDataPath."""
    pairs = {"neighbors": neighbors, "neighbor_views": neighbor_views}
    if augment_on == "gpu":
        return DeviceDataPath(images_nhwc, labels, views, mean, std, batch_size, device, seed, dist, drop_last,
                              **pairs)
    if augment_on == "cpu":
        return LoaderDataPath(images_nhwc, labels, views, mean, std, batch_size, device, seed, dist, drop_last,
                              workers, **pairs)
    raise ValueError(f"augment_on must be 'cpu' or 'gpu', not {augment_on!r}")
