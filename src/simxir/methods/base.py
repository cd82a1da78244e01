"""The ``Method`` contract the training engine calls, plus shared momentum (EMA) helpers.

A method wraps a backbone with its heads and loss. The engine only calls::

    method.use_views(n_global, n_local)   # the views each image gives (refused if the method cannot)
    method.use_epochs(epochs)             # the run's length (refused where an epoch schedule exceeds it)
    out = method(views)             # views: global crops, then local; dict with "loss" (+ logged
                                    # scalars, "z1", "z2", "feats1")
    method.before_optimizer_step(step, total_steps)
    method.on_train_step_end(step, total_steps)
    method.on_epoch_start(epoch)
    method.predictor_weight()       # linear predictor matrix or None
    method.project(x)               # online projector output, for the analysis tools
    method.scale_sensitive          # True when shrinking z1/z2 towards zero lowers the loss
    method.raw_views()              # the views that are the un-augmented (evaluation) view
    method.run_outputs()            # files the run writes beside its encoder (DINO's checkpoint.pth)
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from simxir.errors import UserError

# AdamW 1e-3: the optimizer that learned at CPU-scale batches for the losses with large, badly scaled
# gradients (results/pretrain/README.md); the papers' LARS settings are in recipes/.
ADAMW_DEFAULTS: dict[str, Any] = {"optim": {"name": "adamw", "lr": 1e-3, "weight_decay": 1e-4}}


def feature_dim_of(backbone: nn.Module, image_size: int = 32) -> int:
    """The backbone's output width: its ``.feature_dim``, or, for a module without one (a user's own),
    measured once on a batch of two ``image_size`` images and kept as ``.feature_dim``."""
    dim = getattr(backbone, "feature_dim", None)
    if dim is None:
        dim = measure_feature_dim(backbone, image_size)
        backbone.feature_dim = dim
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise UserError(f"backbone {type(backbone).__name__}: expected a positive int .feature_dim, got {dim!r}")
    return dim


@torch.no_grad()
def measure_feature_dim(backbone: nn.Module, image_size: int = 32) -> int:
    """D of a module mapping images (N, 3, H, W) to features (N, D), from one forward in eval mode."""
    name = type(backbone).__name__
    param = next(iter(backbone.parameters()), None)
    x = torch.zeros(2, 3, image_size, image_size, device=param.device if param is not None else "cpu")
    was = backbone.training
    backbone.eval()
    try:
        out = backbone(x)
    except Exception as exc:  # noqa: BLE001 - any failure of the user's forward is reported in one line
        raise UserError(f"backbone {name}: forward on a (2, 3, {image_size}, {image_size}) image batch failed "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); set "
                        f"backbone.feature_dim to skip the measurement if it needs another input size") from None
    finally:
        backbone.train(was)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != 2 or not out.is_floating_point():
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise UserError(f"backbone {name}: expected a module mapping images (N, 3, H, W) to a feature batch "
                        f"(N, D), got {got} for N=2")
    return int(out.shape[1])


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Disable autocast so losses (covariances, softmaxes) run in float32 under bf16 training."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def cosine_tau(tau_base: float, step: int, total_steps: int) -> float:
    """BYOL's EMA decay schedule: tau = 1 - (1 - tau_base) * (cos(pi k / K) + 1) / 2.

    ``k = step`` (0 at the first step), ``K = total_steps``; tau goes from ``tau_base`` to 1.
    """
    if total_steps <= 0:
        return tau_base
    k = min(max(step, 0), total_steps)
    return 1.0 - (1.0 - tau_base) * (math.cos(math.pi * k / total_steps) + 1.0) / 2.0


def make_target(module: nn.Module) -> nn.Module:
    """A frozen copy of ``module`` (momentum/target network): no parameter requires grad."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update_(target: nn.Module, online: nn.Module, tau: float) -> None:
    """In place: target <- tau * target + (1 - tau) * online, for every parameter.

    Buffers (BatchNorm running statistics) are not averaged: the target's own forward passes
    in train mode update them, as in solo-learn.
    """
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    if len(t_params) != len(o_params):
        raise RuntimeError("ema_update_: target and online modules have different parameter lists")
    if not t_params:
        return
    t_data = [p.data for p in t_params]
    o_data = [p.data.to(p_t.dtype) for p, p_t in zip(o_params, t_data)]
    # One fused pass: t + (1 - tau) * (o - t) == tau * t + (1 - tau) * o.
    torch._foreach_lerp_(t_data, o_data, 1.0 - tau)


class Method(nn.Module):
    """Base class of every SSL method: a backbone plus heads and a loss.

    Subclasses set ``name`` and ``config_cls``, build their heads in ``__init__`` and implement
    ``forward(views) -> dict`` (``views``: the global crops, then the local crops). The dict holds
    ``"loss"`` (a differentiable scalar), logged scalars (detached), and detached ``"z1"``, ``"z2"``
    (projector outputs) and ``"feats1"`` (backbone features of the first view) for the engine's
    online probe and collapse monitors.
    """

    name: ClassVar[str] = "base"
    config_cls: ClassVar[type] = object
    # Whether the loss depends on the scale of "z1"/"z2" so that shrinking them towards zero lowers
    # it (an unnormalized l2 term): the engine's scale-collapse rule applies only then. Losses of
    # normalized or standardized embeddings (cosine, InfoNCE, cross-correlation) are scale-free.
    scale_sensitive: bool = False
    # What in the loss is a statistic of the whole batch (standardisation, cross-correlation,
    # covariance, in-batch negatives), which gradient accumulation would compute per micro-batch
    # instead; "" for losses that are means over samples. The engine refuses accumulate > 1 then.
    batch_statistics: ClassVar[str] = ""
    # The method's own training defaults: a partial, nested TrainConfig mapping (``optim``,
    # ``schedule``, ``method`` fields) laid over TrainConfig's defaults beneath any recipe, so that
    # ``simxir pretrain --method M`` without a recipe trains with settings that learn for M.
    train_defaults: ClassVar[dict[str, Any]] = {}
    # True: the method continues training an existing encoder (``simxir finetune``), never a random one.
    fine_tunes: ClassVar[bool] = False
    # the global crops the loss is written for (None: any number >= 1), and whether it takes local
    # crops (multi-crop) as further views
    global_crops: ClassVar[tuple[int, ...] | None] = (2,)
    local_crops: ClassVar[bool] = False

    def __init__(self, backbone: nn.Module, cfg: Any) -> None:
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg
        self.feature_dim = feature_dim_of(backbone)
        self.n_global = 2

    def forward(self, views: Sequence[Tensor]) -> dict[str, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def use_views(self, n_global: int, n_local: int) -> None:
        """Train on ``n_global`` global and ``n_local`` local crops per image (in that order in
        ``forward``'s views); a UserError when the method's loss is not written for them."""
        if self.global_crops is not None and n_global not in self.global_crops:
            raise UserError(f"multicrop.global_crops: {self.name} trains on "
                            f"{' or '.join(map(str, self.global_crops))} global crops, got {n_global}")
        if n_local and not self.local_crops:
            raise UserError(f"multicrop.local_crops: {self.name} takes no local crops (got {n_local}); "
                            f"'simxir methods' lists the methods that do")
        if n_global + n_local < 2:
            raise UserError(f"multicrop: {self.name} needs at least two views, got {n_global + n_local}")
        self.n_global = n_global

    def use_epochs(self, epochs: int) -> None:
        """Train for ``epochs`` epochs; a UserError when a schedule the method counts in epochs is longer."""

    def pair(self, views: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The two views of a two-view method."""
        if len(views) != 2:
            raise UserError(f"{self.name}: trains on two views, got {len(views)}")
        return views[0], views[1]

    def run_outputs(self) -> dict[str, Any]:
        """Files (name -> object for ``torch.save``) the run writes beside its encoder; none by default."""
        return {}

    def raw_views(self) -> frozenset[int]:
        """Indexes of the views that are the un-augmented evaluation view (SimXIR's raw anchor)."""
        return frozenset()

    def on_train_step_end(self, step: int, total_steps: int) -> None:
        """Called by the engine after each optimizer step (EMA updates live here)."""

    def before_optimizer_step(self, step: int, total_steps: int) -> None:
        """Called by the engine after backward (gradients in place, clipped when ``optim.clip_grad``)
        and before the optimizer step, e.g. to cancel a layer's gradient (DINO's first epoch)."""

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the engine at the start of each epoch."""

    def predictor_weight(self) -> Tensor | None:
        """The linear predictor's matrix (out x in), or None when the method has none."""
        return None

    def project(self, x: Tensor) -> Tensor:
        """Online projector output for a batch of (normalized float) images."""
        projector = getattr(self, "projector", None)
        if projector is None:  # pragma: no cover - every built-in method has a projector
            raise NotImplementedError(f"{self.name} has no projector")
        return projector(self.backbone(x))

    @staticmethod
    def _outputs(loss: Tensor, z1: Tensor, z2: Tensor, feats1: Tensor,
                 **scalars: Tensor) -> dict[str, Tensor]:
        out = {"loss": loss, "z1": z1.detach(), "z2": z2.detach(), "feats1": feats1.detach()}
        out.update({k: v.detach() for k, v in scalars.items()})
        return out
