"""The evaluation of a frozen encoder that ``simxir eval`` and ``simxir finetune`` (before and after)
both run: kNN on un-augmented features, then the linear probe of the chosen protocol (``fast`` on
the same features, or ``augmented``, the papers' protocol on new crops)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from simxir import distributed
from simxir.errors import UserError
from simxir.eval.evaluate import evaluate_features
from simxir.eval.features import dataset_features, model_device
from simxir.eval.knn import DEFAULT_KS
from simxir.eval.labelfree import LabelFreeConfig
from simxir.eval.linear import LinearProbeConfig
from simxir.eval.paired import add_outcomes
from simxir.protocol.linear import PROTOCOLS, protocol_config, protocol_probe


@dataclasses.dataclass
class EvalProtocol:
    """What an evaluation runs; identical before and after fine-tuning."""

    knn_ks: tuple[int, ...] = DEFAULT_KS
    weighted_temperature: float | None = 0.07    # the weighted kNN vote's; None: no weighted vote
    knn_backend: str = "torch"                   # or "faiss"
    linear: bool = True
    linear_cfg: LinearProbeConfig = dataclasses.field(default_factory=LinearProbeConfig)   # fast protocol
    batch_size: int = 256                        # of feature extraction
    linear_protocol: str = "fast"                # or "augmented": simxir.protocol.linear
    linear_recipe: str | None = None             # augmented: a recipes/linear/*.yaml file (None: its defaults)
    label_free: LabelFreeConfig | None = dataclasses.field(default_factory=LabelFreeConfig)   # None: off
    normalization: str = "auto"                  # auto: the encoder's own preprocessing when known; data

    def __post_init__(self) -> None:
        if self.normalization not in ("auto", "data"):
            raise UserError(f"--normalization: expected auto or data, got {self.normalization!r}")
        if self.linear_protocol not in PROTOCOLS:
            raise UserError(f"--linear-protocol: expected one of {', '.join(PROTOCOLS)}, "
                            f"got {self.linear_protocol!r}")

    @property
    def augmented(self) -> bool:
        return self.linear and self.linear_protocol == "augmented"


def score_features(train_f: torch.Tensor, train_y: torch.Tensor, test_f: torch.Tensor, test_y: torch.Tensor,
                   protocol: EvalProtocol, device: torch.device | str | None = None) -> dict[str, Any]:
    """kNN and, under the fast protocol, the linear probe on precomputed features, with every test
    image's outcome (``right``) for paired comparisons."""
    result = evaluate_features(train_f, train_y, test_f, test_y, knn_ks=protocol.knn_ks,
                               linear=protocol.linear and not protocol.augmented, linear_cfg=protocol.linear_cfg,
                               weighted_temperature=protocol.weighted_temperature, backend=protocol.knn_backend,
                               device=device, outcomes=True)
    if "linear" in result:
        result["linear"]["protocol"] = "fast"
    return result


def evaluate(backbone: torch.nn.Module, dataset: Any, augment: Any, protocol: EvalProtocol,
             linear_dir: str | Path | None = None, resume: bool | None = None,
             features: tuple[torch.Tensor, ...] | None = None) -> dict[str, Any]:
    """The ``simxir eval --json`` object for ``backbone`` on the labelled ``dataset`` ({} when it is
    unlabelled: the label-free numbers stand alone).

    Runs on the backbone's device. Under torchrun every process extracts its share of the features;
    kNN and the fast probe run once, on rank 0, and every process returns rank 0's result; the
    augmented protocol trains distributed like the engine, its checkpoint in ``linear_dir``
    (continued when ``resume``, default: whenever ``linear_dir`` is given). ``features``: the
    (train, train labels, test, test labels) already extracted from this backbone and dataset."""
    if not getattr(dataset, "labelled", True):
        return {}
    was = backbone.training
    # kNN and the fast probe run on rank 0: only it holds the N x d features
    feats = features or dataset_features(backbone, dataset, augment, protocol.batch_size, main_only=True)
    result: dict[str, Any] = {}
    if distributed.is_main():
        result = score_features(*feats, protocol, device=model_device(backbone))
    backbone.train(was)
    if distributed.world_size() > 1:
        distributed.wait_for_main()   # kNN and the probe ran on rank 0 alone
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    if protocol.augmented:
        cfg = protocol_config(protocol.linear_recipe)
        result["linear"] = protocol_probe(backbone, dataset, augment, cfg, linear_dir,
                                          resume=linear_dir is not None if resume is None else resume,
                                          feature_batch=protocol.batch_size)
        add_outcomes(result, None, result["linear"].pop("right", None), dataset.test.labels.cpu().numpy())
        backbone.train(was)
    return result
