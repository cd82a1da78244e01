"""The 2-process worker of the sharded-extraction test (importable for spawn)."""

from __future__ import annotations

import torch


def small_dataset():
    from simxir.data.dataset import ImageDataset, Split

    g = torch.Generator().manual_seed(0)
    split = lambda n: Split(torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g),  # noqa: E731
                            torch.randint(0, 3, (n,), generator=g))
    return ImageDataset("random", split(37), split(11), ["a", "b", "c"])


def features(batch_size: int = 8, main_only: bool = False):
    """(train, test) features of a seeded convnet-small over small_dataset, through simxir's eval path."""
    from simxir.augment import build_augment
    from simxir.eval.features import dataset_features
    from simxir.models import build_backbone

    ds = small_dataset()
    torch.manual_seed(0)
    model = build_backbone("convnet-small")
    aug = build_augment("tiny", 16, ds.mean, ds.std)
    tr, _, te, _ = dataset_features(model, ds, aug, batch_size, main_only=main_only)
    return tr, te


def extract_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tr, te = features()
        torch.save({"train": tr, "test": te}, out_file.replace(".pt", f".{rank}.pt"))
    finally:
        dist.destroy_process_group()


def mixed_dtype_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """Rank 1 stores its features as float16 (as when its host has less free memory), rank 0 as
    float32: the gathered rows must agree in dtype on every process."""
    import torch.distributed as dist

    from simxir.eval import features as F

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        F.feature_dtype = lambda n, d: torch.float16 if rank == 1 else torch.float32
        tr, te = features()
        torch.save({"train": tr, "test": te}, out_file.replace(".pt", f".{rank}.pt"))
    finally:
        dist.destroy_process_group()


def main_only_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    """dataset_features(main_only=True): rank 0 holds every row, the others none."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        tr, te = features(main_only=True)
        torch.save({"train": tr, "test": te}, out_file.replace(".pt", f".{rank}.pt"))
    finally:
        dist.destroy_process_group()
