"""JPEG folders for the streaming tests, and the 2-process worker (importable for spawn)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

RED = (255, 0, 0)


def photo(rng: np.random.Generator, w: int = 500, h: int = 375, stripe: int = 10, colour=(90, 140, 60)) -> np.ndarray:
    """A noisy image of one colour with red marker stripes at the left and right edges."""
    x = np.clip(rng.normal(colour, 25, (h, w, 3)), 0, 255).astype(np.uint8)
    x[:, :stripe] = RED
    x[:, w - stripe:] = RED
    return x


def jpeg_folder(root: Path, n_train: int, n_val: int = 4, classes: int = 2, w: int = 500, h: int = 375,
                seed: int = 0, ext: str = ".jpg") -> Path:
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = [(60, 60, 200), (60, 200, 60), (200, 200, 60), (60, 200, 200)]  # none red
    for split, n in (("train", n_train), ("val", n_val)):
        for i in range(n):
            c = i % classes
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo(rng, w, h, colour=colours[c])).save(d / f"{i:05d}{ext}", quality=90)
    return root


def stream_plan(n: int, batch: int, seed: int = 0, accumulate: int = 1, world: int | None = None):
    from simxir.train.config import TrainConfig
    from simxir.train.plan import plan_run

    cfg = TrainConfig(batch_size=batch, seed=seed, epochs=2, accumulate=accumulate, precision="fp32",
                      channels_last=False)
    return plan_run(cfg, n, torch.device("cpu"))


def step_worker(rank: int, world: int, init_file: str, root: str, out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = stream_step(root)
        torch.save(result, out_file.replace(".pt", f".{rank}.pt"))
    finally:
        dist.destroy_process_group()


def plain_augment(size: int):
    """Crops only (no colour ops): the views are the loader's crops, normalized."""
    from simxir.augment import Augment, ViewSpec

    v = ViewSpec(scale=(0.2, 1.0), jitter_p=0.0, gray_p=0.0)
    return Augment("plain", size, (0.5,) * 3, (0.25,) * 3, [v, v])


def stream_step(root: str, batch: int = 8, size: int = 16) -> dict:
    """One engine step of the toy method on the streamed folder: this rank's sample indices of
    epoch 0 and the state after the step."""
    from train_toys import ToyMethod

    from simxir.data import LoaderConfig, open_dataset
    from simxir.train import prepare_model, train_step
    from simxir.train.config import OptimConfig
    from simxir.train.optim import build_optimizer
    from simxir.train.source import RankBatches, StreamSource

    ds = open_dataset(f"folder:{root}", size, LoaderConfig(stream="on", workers=0, stats_sample=4))
    plan = stream_plan(len(ds.train), batch)
    src = StreamSource(ds, plan, plain_augment(size))
    sampler = RankBatches(len(ds.train), plan)
    indices = [j for b in sampler for _, j in b]
    torch.manual_seed(0)
    method = ToyMethod()
    trainable, model = prepare_model(method, None, torch.device("cpu"), channels_last=False,
                                     find_unused_parameters=False)
    opt = build_optimizer(OptimConfig(name="sgd", weight_decay=0.0), trainable.method, 0.1)
    loss, _ = train_step(model, opt, next(src.steps(0)), 1, None)
    state = {k: v.detach().clone() for k, v in trainable.state_dict().items()}
    return {"indices": torch.tensor(indices), "state": state, "loss": torch.tensor(loss)}
