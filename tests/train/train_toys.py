"""Tiny stand-ins for the engine tests: a dataset, an augmentation and a Method with BatchNorm."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from simxir import distributed


class Killed(Exception):
    """The process dying right after an epoch (raised by :func:`kill_after`'s callback)."""


def kill_after(n: int):
    """An engine callback that raises Killed after epoch ``n`` (and its checkpoint, when one was due)."""

    def kill(epoch: int, metrics: dict) -> None:
        if epoch == n:
            raise Killed

    return kill


@dataclass
class Split:
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class ToyDataset:
    train: Split
    test: Split
    num_classes: int = 4
    image_size: int = 8
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.25, 0.25, 0.25)


def toy_dataset(n_train: int = 64, n_test: int = 16, size: int = 8, seed: int = 0) -> ToyDataset:
    g = torch.Generator().manual_seed(seed)
    mk = lambda n: Split(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),  # noqa: E731
                         torch.randint(0, 4, (n,), generator=g))
    return ToyDataset(mk(n_train), mk(n_test), image_size=size)


class ToyAugment:
    """Random flips + Gaussian noise from torch's global RNG (like the real augment contract)."""

    def eval(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - 0.5) / 0.25

    def view(self, x: torch.Tensor) -> torch.Tensor:
        v = self.eval(x)
        flip = torch.rand(x.shape[0], device=x.device) < 0.5
        v = torch.where(flip[:, None, None, None], v.flip(3), v)
        return v + 0.1 * torch.randn(v.shape, device=x.device)

    def views(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.view(x), self.view(x)


class ToyBackbone(nn.Module):
    def __init__(self, width: int = 8, feature_dim: int = 16):
        super().__init__()
        self.feature_dim = feature_dim
        self.arch = "toy"
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, feature_dim, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        return F.adaptive_avg_pool2d(F.relu(self.conv2(x)), 1).flatten(1)


class ToyMethod(nn.Module):
    """Barlow-Twins-like: BN'd projector, cross-correlation of the gathered global batch.

    ``nan_at_step``: the loss becomes nan from that optimizer step on (counted by
    on_train_step_end), to test the guard.
    """

    name = "toy"

    def __init__(self, backbone: nn.Module | None = None, dim: int = 8, nan_at_step: int | None = None):
        super().__init__()
        self.backbone = backbone or ToyBackbone()
        self.projector = nn.Sequential(nn.Linear(self.backbone.feature_dim, dim, bias=False),
                                       nn.BatchNorm1d(dim), nn.ReLU(), nn.Linear(dim, dim))
        self.predictor = nn.Linear(dim, dim, bias=False)
        self.nan_at_step = nan_at_step
        self.steps_done = 0
        self.epochs_started: list[int] = []

    def forward(self, views):
        v1, v2 = views
        f1, f2 = self.backbone(v1), self.backbone(v2)
        z1, z2 = self.projector(f1), self.projector(f2)
        p1 = self.predictor(z1)
        a = distributed.gather_with_grad(p1.float())
        b = distributed.gather_with_grad(z2.float())
        a = (a - a.mean(0)) / (a.std(0) + 1e-5)
        b = (b - b.mean(0)) / (b.std(0) + 1e-5)
        c = a.T @ b / a.shape[0]
        loss = (torch.diagonal(c) - 1).pow(2).sum() + 0.01 * (c - torch.diag(torch.diagonal(c))).pow(2).sum()
        if self.nan_at_step is not None and self.steps_done >= self.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "z1": z1.detach(), "z2": z2.detach(), "feats1": f1.detach(),
                "diag": torch.diagonal(c).mean().detach()}

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        self.steps_done = step + 1

    def on_epoch_start(self, epoch: int) -> None:
        self.epochs_started.append(epoch)

    def predictor_weight(self):
        return self.predictor.weight

    def project(self, x):
        return self.projector(self.backbone(x))


# ---------------------------------------------------------------------------------------------
# DDP equivalence: one engine step on 2 gloo processes vs one single-process step

DDP_GLOBAL_BATCH = 16
DDP_CASES = {  # name -> (method config single-process, method config per process of 2)
    "toy": (None, None),
    "byol": ({"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 32}, None),
    "barlow_twins": ({"proj_sizes": [32, 32]}, None),
    # eq. 19: each process's batch is one partition, so k=2 on one process equals k=1 on each of 2
    "bridge": ({"proj_sizes": [32, 16], "partitions": 2}, {"proj_sizes": [32, 16], "partitions": 1}),
    # a user's own module (no .arch, no .feature_dim) under SimSiam and under SimXIR
    "user-module-simsiam": ({"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 32}, None),
    "user-module-simxir": ({}, None),
    # multi-crop: 2 global + 2 local (8 px) views; DINO's centre is averaged over the processes
    "dino": ({"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16}, None),
    "simsiam-multicrop": ({"proj_hidden": 32, "proj_dim": 16, "pred_hidden": 32}, None),
}
USER_CASES = ("user-module-simsiam", "user-module-simxir")
LOCAL_CROPS = {"dino": 2, "simsiam-multicrop": 2}


class PlainEncoder(nn.Module):
    """What a user brings: images -> features, nothing simxir-specific."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_case(name: str, distributed_run: bool):
    """(method, views, y): identical weights and pre-augmented views in every process."""
    from simxir.methods import build_method
    from simxir.models import build_backbone

    torch.manual_seed(0)
    if name == "toy":
        method = ToyMethod()
    elif name in USER_CASES:
        method = build_method(name.rsplit("-", 1)[1], PlainEncoder(), dict(DDP_CASES[name][0]))
    else:
        single, multi = DDP_CASES[name]
        cfg = multi if (distributed_run and multi is not None) else single
        method = build_method(name.removesuffix("-multicrop"), build_backbone("convnet-small"), dict(cfg))
    local = LOCAL_CROPS.get(name, 0)
    if local:
        method.use_views(2, local)
    g = torch.Generator().manual_seed(1)
    views = [torch.randn(DDP_GLOBAL_BATCH, 3, s, s, generator=g) for s in [16, 16] + [8] * local]
    y = torch.randint(0, 4, (DDP_GLOBAL_BATCH,), generator=g)
    return method, views, y


def one_engine_step(name: str, distributed_run: bool, rank: int = 0, world: int = 1) -> dict:
    """Build the case, prepare it like the engine (SyncBN + DDP when distributed), take one LARS
    step with momentum and weight decay, run on_train_step_end; return the state_dict."""
    from simxir.train import prepare_model, train_step
    from simxir.train.config import OptimConfig
    from simxir.train.optim import build_optimizer

    method, views, y = build_case(name, distributed_run)
    torch.manual_seed(2)
    probe = nn.Linear(method.backbone.feature_dim, 4)
    trainable, model = prepare_model(method, probe, torch.device("cpu"), channels_last=False,
                                     find_unused_parameters=False)
    opt = build_optimizer(OptimConfig(name="lars", weight_decay=1e-3, eta=0.02), trainable.method, 0.5,
                          [{"params": list(probe.parameters()), "lr": 0.1}])
    n = DDP_GLOBAL_BATCH // world
    sl = slice(rank * n, (rank + 1) * n)
    loss, _ = train_step(model, opt, [([v[sl] for v in views], y[sl])], 1, None)
    trainable.method.on_train_step_end(0, 10)
    state = {k: v.detach().clone() for k, v in trainable.state_dict().items()}
    state["__loss__"] = torch.tensor(loss)
    return state


def ddp_worker(rank: int, world: int, init_file: str, names: list[str], out_file: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {name: one_engine_step(name, True, rank, world) for name in names}
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()   # no rank tears gloo down while another still talks to it (a SIGABRT under load)
    finally:
        dist.destroy_process_group()


def nan_worker(rank: int, world: int, init_file: str, run_dir: str, out_file: str) -> None:
    """A 2-process run whose loss turns nan in epoch 3 (4 steps per epoch), checkpointing only after
    epoch 1 (checkpoint_interval_s=3600): each rank writes its TrainingDiverged message."""
    import torch.distributed as dist

    from simxir.errors import TrainingDiverged
    from simxir.train import TrainConfig, train
    from simxir.train.config import MonitorConfig, OptimConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(epochs=3, batch_size=16, precision="fp32", channels_last=False, device="cpu",
                          tensorboard=False, checkpoint_interval_s=3600, optim=OptimConfig(name="sgd", lr=0.1),
                          monitor=MonitorConfig(eval_size=16))
        torch.manual_seed(0)
        message = "no error"
        try:
            train(cfg, ToyMethod(nan_at_step=8), toy_dataset(), ToyAugment(), run_dir)
        except TrainingDiverged as exc:
            message = str(exc)
        with open(f"{out_file}.{rank}", "w") as f:
            f.write(message)
        dist.barrier()   # no rank tears gloo down while another still talks to it (a SIGABRT under load)
    finally:
        dist.destroy_process_group()


def slow_eval_worker(rank: int, world: int, init_file: str, run_dir: str, out_file: str, timeout_s: float,
                     eval_s: float) -> None:
    """A 2-process run whose collectives time out after ``timeout_s``, while rank 0's evaluation at
    each epoch end takes ``eval_s`` (longer): each rank writes "done" or its error."""
    import datetime
    import time

    import torch.distributed as dist

    from simxir.train import TrainConfig, train
    from simxir.train.config import MonitorConfig, OptimConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        cfg = TrainConfig(epochs=2, batch_size=16, precision="fp32", channels_last=False, device="cpu",
                          tensorboard=False, optim=OptimConfig(name="sgd", lr=0.1),
                          monitor=MonitorConfig(eval_size=16))
        torch.manual_seed(0)

        def slow(backbone, epoch):  # noqa: ANN001, ANN202
            time.sleep(eval_s)
            return {"slow_eval": float(epoch)}

        try:
            train(cfg, ToyMethod(), toy_dataset(), ToyAugment(), run_dir, evaluator=slow)
            message = "done"
        except Exception as exc:  # noqa: BLE001 - the test reads what went wrong
            message = f"{type(exc).__name__}: {exc}"
        with open(f"{out_file}.{rank}", "w") as f:
            f.write(message)
    finally:
        distributed.shutdown()


class RankTagged(ToyMethod):
    """ToyMethod that also logs its process's rank (a per-process value, as z_spread or the probe's hits)."""

    def forward(self, views):
        out = super().forward(views)
        out["rank_tag"] = torch.full((), float(distributed.rank()), device=out["loss"].device)
        return out


def metrics_worker(rank: int, world: int, init_file: str, run_dir: str, out_file: str) -> None:
    """A 2-process run of RankTagged: each rank writes its epoch metrics."""
    import json

    import torch.distributed as dist

    from simxir.train import TrainConfig, train
    from simxir.train.config import MonitorConfig, OptimConfig

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        cfg = TrainConfig(epochs=1, batch_size=16, precision="fp32", channels_last=False, device="cpu",
                          tensorboard=False, optim=OptimConfig(name="sgd", lr=0.1), monitor=MonitorConfig(eval_size=16))
        torch.manual_seed(0)
        r = train(cfg, RankTagged(), toy_dataset(), ToyAugment(), run_dir)
        with open(f"{out_file}.{rank}", "w") as f:
            json.dump(r["epochs"][-1], f)
    finally:
        distributed.shutdown()
