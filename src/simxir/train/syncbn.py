"""SyncBatchNorm that also runs on CPU (gloo): PyTorch's ``nn.SyncBatchNorm`` is GPU-only.

:func:`convert_sync_batchnorm` uses ``nn.SyncBatchNorm`` on CUDA and :class:`PortableSyncBatchNorm`
elsewhere. The portable layer computes the global batch mean and (biased) variance with two
differentiable all-reduces (whose backward sums the incoming gradients over processes), so each process gets the
gradient of the sum of all processes'
losses through the shared statistics; DDP's averaging then gives what one process computes on the
global batch, as native SyncBatchNorm + DDP do. Same parameters, buffers and state_dict keys as
``nn.BatchNorm*d``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the incoming gradients over processes too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        y = x.contiguous().clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def _all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class PortableSyncBatchNorm(_BatchNorm):
    """BatchNorm over the union of all processes' batches, for any device and backend."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        sync = (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1)
        if not sync:
            return super().forward(input)
        dims = [0] + list(range(2, input.dim()))
        x = input.float()
        count = torch.full((1,), float(x.numel() // x.shape[1]), device=x.device)   # a fill: no host copy
        total = _all_reduce_sum(torch.cat([x.sum(dim=dims), count]))
        n = total[-1]
        mean = total[:-1] / n
        shape = [1, -1] + [1] * (input.dim() - 2)
        xc = x - mean.view(shape)
        var = _all_reduce_sum(xc.pow(2).sum(dim=dims)) / n
        y = xc * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var.detach() * n / torch.clamp(n - 1, min=1)
                self.running_mean.mul_(1 - m).add_(mean.detach().to(self.running_mean.dtype), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.to(self.running_var.dtype), alpha=m)
        return y.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer by a synchronised one: native on CUDA, portable elsewhere."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, (PortableSyncBatchNorm, nn.SyncBatchNorm)):
        out = PortableSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)
        if module.affine:
            with torch.no_grad():
                out.weight = module.weight
                out.bias = module.bias
        out.running_mean = module.running_mean
        out.running_var = module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
        if hasattr(module, "qconfig"):
            out.qconfig = module.qconfig
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out
