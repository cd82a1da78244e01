"""The trained module: the method plus the online linear probe, placed on the device (channels_last,
SyncBatchNorm + DDP when distributed)."""

from __future__ import annotations

import inspect
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from simxir import distributed
from simxir.train.plan import PROBE_STREAM, epoch_seed
from simxir.train.syncbn import convert_sync_batchnorm


class Trainable(nn.Module):
    """The method plus the online linear probe, so that one DDP wrapper reduces all gradients.

    The probe sees ``feats1`` detached, in float32 outside autocast; without ``feats1`` (or labels)
    its loss is a zero that still touches its parameters (DDP needs every parameter used).
    """

    def __init__(self, method: nn.Module, probe: nn.Module | None):
        super().__init__()
        self.method = method
        self.probe = probe

    def forward(self, views: list[torch.Tensor], y: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = dict(self.method(views))
        if self.probe is not None:
            feats = out.get("feats1")
            with torch.autocast(device_type=views[0].device.type, enabled=False):
                if feats is not None and y is not None:
                    logits = self.probe(feats.detach().float())
                    out["probe_loss"] = F.cross_entropy(logits, y)
                    out["probe_logits"] = logits.detach()
                else:
                    out["probe_loss"] = sum(p.sum() for p in self.probe.parameters()) * 0.0
        return out


def build_probe(feature_dim: int, num_classes: int, seed: int) -> nn.Linear:
    """The online probe, initialised from its own seed stream (the same on every rank and resume)."""
    gen = torch.Generator().manual_seed(epoch_seed(seed, 0, PROBE_STREAM))
    probe = nn.Linear(feature_dim, num_classes)
    bound = 1.0 / math.sqrt(feature_dim)
    with torch.no_grad():
        probe.weight.uniform_(-bound, bound, generator=gen)
        probe.bias.zero_()
    return probe


# torch >= 2.12 names it forward_sync_buffers (buffers still broadcast once at construction);
# older versions only have broadcast_buffers (every rank builds the same buffers from the same seed)
NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                          if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                          else {"broadcast_buffers": False})


def prepare_model(method: nn.Module, probe: nn.Module | None, device: torch.device,
                  channels_last: bool, find_unused_parameters: bool = False
                  ) -> tuple[Trainable, nn.Module]:
    """(trainable, model_to_call): moved to ``device``, channels_last, SyncBatchNorm + DDP when distributed.

    SyncBatchNorm is ``nn.SyncBatchNorm`` on CUDA and :class:`~simxir.train.syncbn.PortableSyncBatchNorm`
    elsewhere (PyTorch's is GPU-only).
    """
    trainable = Trainable(method, probe).to(device)
    if channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    model: nn.Module = trainable
    if distributed.is_distributed():   # also a 1-process group (torchrun --nproc-per-node 1)
        trainable = convert_sync_batchnorm(trainable, device)
        # no buffer broadcast each forward: BatchNorm statistics are SyncBatchNorm's (global, equal on
        # every rank), MoCo's queue takes the keys gathered from all ranks, EMA targets follow equal
        # weights; broadcasting them would copy ~64 MB (MoCo's queue) per step for nothing
        model = DDP(trainable, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=find_unused_parameters, **NO_FORWARD_BUFFER_SYNC)
    return trainable, model
