"""One SimXIR fine-tuning run: load any encoder, evaluate, fine-tune on the engine, evaluate, export.

The run folder holds the engine's files (checkpoint.pt, metrics.csv, config.yaml,
encoder.safetensors, encoder.pt) plus ``before.json``, ``after.json``, ``results.json``,
``report.md``, ``knn_over_k.png`` and the encoder in the layout it came in
(``encoder.<format>.pt``).
"""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from simxir import distributed
from simxir.augment import build_augment
from simxir.config import (
    ConfigError,
    apply_overrides,
    deep_update,
    from_dict,
    read_recipe,
    to_dict,
)
from simxir.data import open_dataset, split_validation
from simxir.data.index import INDEX_CACHE
from simxir.errors import UserError
from simxir.eval import LinearProbeConfig, evaluate_features
from simxir.eval.features import dataset_features, model_device
from simxir.eval.labelfree import LabelFreeConfig, evaluate_label_free, paired
from simxir.finetune.method import RawAnchorViews, SimXIR, SimXIRConfig
from simxir.finetune.report import write_report
from simxir.io import atomic_write_bytes, atomic_write_json, read_npz
from simxir.models import export_encoder, load_encoder
from simxir.progress import log
from simxir.protocol import PROTOCOLS, protocol_config, protocol_probe
from simxir.rundir import own_run_folder
from simxir.train import train
from simxir.train.config import MonitorConfig, OptimConfig, ScheduleConfig, TrainConfig
from simxir.train.plan import resolve_device, resolve_length
from simxir.train.pretrain import open_eval_data


def finetune_defaults() -> TrainConfig:
    """The SimXIR paper's defaults: one round (T = 1) of 20 epochs, SGD lr 5e-4 (not scaled by
    batch size), weight decay 1e-6, batch 512, constant lr; augmentations by image size
    (``auto``: SimSiam's CIFAR recipe at 17-64 px, as the paper; ``tiny`` for digits-size images)."""
    return TrainConfig(
        method_name="simxir", data="", backbone="auto", augment="auto", epochs=20,
        batch_size=512,
        optim=OptimConfig(name="sgd", lr=5e-4, scale_lr=False, weight_decay=1e-6, momentum=0.9),
        schedule=ScheduleConfig(name="constant", warmup_epochs=0.0),
        monitor=MonitorConfig(save_predictor=False),
        method=to_dict(SimXIRConfig()),
    )


def build_finetune_config(recipe: str | Path | None, overrides: list[str], data: str | None = None,
                          rounds: int | None = None, variant: str | None = None,
                          loss: str | None = None, eval_data: str | None = None) -> TrainConfig:
    """Defaults, then the recipe (a YAML mapping laid over them), then ``key=value`` overrides
    (``method.KEY=V`` for :class:`SimXIRConfig`), then the explicit options."""
    data_dict = to_dict(finetune_defaults())
    if recipe is not None:
        data_dict = deep_update(data_dict, read_recipe(recipe, "finetune TrainConfig"))
    method_ovr = [o for o in overrides if o.strip().startswith("method.")]
    train_ovr = [o for o in overrides if not o.strip().startswith("method.")]
    try:
        cfg = apply_overrides(from_dict(TrainConfig, data_dict), train_ovr)
    except ConfigError as exc:
        raise ConfigError(f"recipe {recipe}: {exc}" if recipe and not train_ovr else str(exc)) from None
    wrapper = dataclasses.make_dataclass("MethodSection", [("method", SimXIRConfig)])
    mcfg = apply_overrides(from_dict(wrapper, {"method": dict(cfg.method)}), method_ovr).method
    if variant is not None:
        mcfg = apply_overrides(mcfg, [f"variant={variant}"])
    if loss is not None:
        mcfg = apply_overrides(mcfg, [f"loss={loss}"])
    if rounds is not None:
        if rounds < 1:
            raise UserError(f"--rounds: expected >= 1, got {rounds}")
        if mcfg.steps_per_round:
            raise UserError("--rounds: cannot be combined with method.steps_per_round")
        if cfg.epochs % rounds:
            raise UserError(f"--rounds {rounds}: epochs={cfg.epochs} is not a multiple of it")
        mcfg = dataclasses.replace(mcfg, epochs_per_round=cfg.epochs // rounds)
    updates: dict[str, Any] = {"method_name": "simxir", "method": to_dict(mcfg)}
    if data:
        updates["data"] = data
    if eval_data:
        updates["eval_data"] = eval_data
    cfg = dataclasses.replace(cfg, **updates)
    if not cfg.data:
        raise UserError("--data: required (a dataset spec such as digits, npz:FILE, cifar10:DIR)")
    return cfg


@dataclasses.dataclass
class EvalProtocol:
    """The before/after evaluation, identical on both sides."""

    knn_ks: tuple[int, ...] = (5, 7, 11, 15, 17, 21)
    linear: bool = True
    linear_epochs: int = 100
    batch_size: int = 256
    linear_protocol: str = "fast"          # or "augmented": simxir.protocol (the papers' protocol)
    linear_recipe: str | None = None       # augmented: a recipes/linear/*.yaml file (None: its defaults)
    label_free: LabelFreeConfig | None = dataclasses.field(default_factory=LabelFreeConfig)   # None: off


def evaluate(backbone: torch.nn.Module, dataset: Any, augment: Any, protocol: EvalProtocol,
             linear_dir: Path | None = None) -> dict[str, Any]:
    """The ``simxir eval --json`` object for ``backbone`` on ``dataset`` (same protocol every time).

    Runs on the backbone's device. Under torchrun every process extracts its share of the features;
    kNN and the fast linear probe run once, on rank 0, and every process returns rank 0's result;
    the augmented protocol trains distributed like the engine (its checkpoint in ``linear_dir``)."""
    if protocol.linear_protocol not in PROTOCOLS:
        raise UserError(f"--linear-protocol: expected one of {', '.join(PROTOCOLS)}, "
                        f"got {protocol.linear_protocol!r}")
    augmented = protocol.linear and protocol.linear_protocol == "augmented"
    if not getattr(dataset, "labelled", True):
        return {}   # nothing to classify: the label-free numbers stand alone
    was = backbone.training
    tr, train_y, te, test_y = dataset_features(backbone, dataset, augment, protocol.batch_size)
    result: dict[str, Any] = {}
    if distributed.is_main():
        result = evaluate_features(tr, train_y, te, test_y, knn_ks=protocol.knn_ks,
                                   linear=protocol.linear and not augmented,
                                   linear_cfg=LinearProbeConfig(epochs=protocol.linear_epochs),
                                   device=model_device(backbone))
        if "linear" in result:
            result["linear"]["protocol"] = "fast"
    backbone.train(was)
    if distributed.world_size() > 1:
        box = [result]
        dist.broadcast_object_list(box, src=0)
        result = box[0]
    if augmented:
        cfg = protocol_config(protocol.linear_recipe)
        result["linear"] = protocol_probe(backbone, dataset, augment, cfg, linear_dir,
                                          resume=linear_dir is not None, feature_batch=protocol.batch_size)
        backbone.train(was)
    return result


LABEL_FREE_BEFORE = "label-free-before.npz"   # the before features, for the paired change after a resume


def label_free_before(backbone: torch.nn.Module, dataset: Any, augment: Any, protocol: EvalProtocol,
                      run_dir: Path) -> dict[str, Any]:
    """The label-free summary of the encoder before fine-tuning; its features and k-means groups are
    kept in ``run_dir`` so that the after side pairs with them (also after ``--resume``)."""
    lf = protocol.label_free
    summary, feats, groups = evaluate_label_free(backbone, dataset, augment, lf, batch_size=protocol.batch_size)
    if distributed.is_main():
        buf = io.BytesIO()
        np.savez(buf, groups=groups, **{k: v.numpy() for k, v in feats.items()})
        atomic_write_bytes(run_dir / LABEL_FREE_BEFORE, buf.getvalue())
    return summary


def label_free_after(tuned: torch.nn.Module, dataset: Any, augment: Any, protocol: EvalProtocol,
                     run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The label-free summary after fine-tuning (on the before groups) and the paired change."""
    arrs = read_npz(run_dir / LABEL_FREE_BEFORE, ("groups", "indices", "features", "view1", "view2"))
    before = {k: torch.from_numpy(arrs[k]) for k in ("indices", "features", "view1", "view2")}
    summary, feats, _ = evaluate_label_free(tuned, dataset, augment, protocol.label_free, groups=arrs["groups"],
                                            batch_size=protocol.batch_size)
    if not torch.equal(feats["indices"], before["indices"]):
        raise UserError(f"{run_dir / LABEL_FREE_BEFORE}: holds another image sample than this run's data")
    return summary, paired(before, feats, arrs["groups"], protocol.label_free)


def run_finetune(cfg: TrainConfig, encoder: str | Path, out: str | Path, *, fmt: str | None = None,
                 allow_pickle: bool = False, resume: bool = False, val_fraction: float = 0.0,
                 protocol: EvalProtocol | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Evaluate ``encoder`` before and after SimXIR fine-tuning; write the report; return
    ``{"before", "after", "encoder", "exported", "epochs", "run_dir", "load_report"}``."""
    with own_run_folder(out, resume=resume, overwrite=overwrite, inputs=(encoder,)):
        return _run_finetune(cfg, encoder, out, fmt, allow_pickle, resume, val_fraction, protocol)


def _run_finetune(cfg: TrainConfig, encoder: str | Path, out: str | Path, fmt: str | None, allow_pickle: bool,
                  resume: bool, val_fraction: float, protocol: EvalProtocol | None) -> dict[str, Any]:
    protocol = protocol or EvalProtocol()
    run_dir = Path(out)
    backbone, report = load_encoder(encoder, backbone=None if cfg.backbone == "auto" else cfg.backbone,
                                    format=fmt, allow_pickle=allow_pickle)
    if "representation" in cfg.vit.options():
        if not hasattr(backbone, "set_representation"):
            raise UserError(f"vit.representation: {encoder} holds a {report.arch}, not a ViT")
        backbone.set_representation(cfg.vit.representation)
    log(report.summary() + (f"\n  representation {backbone.representation}" if hasattr(backbone, "representation")
                            else ""))
    device = resolve_device(cfg)
    dataset = open_dataset(cfg.data, cfg.image_size, cfg.loader, index_cache=str(run_dir / INDEX_CACHE),
                           device=device, on_device=cfg.data_on_device)
    streamed = getattr(dataset, "streamed", False)
    if val_fraction:
        if not 0 < val_fraction < 1:
            raise UserError(f"--val-fraction: expected a number in (0, 1), got {val_fraction}")
        if streamed:
            raise UserError("--val-fraction: not available for streamed folders; put the validation "
                            "images in DIR/val/<class>/ instead")
        if cfg.eval_data or not dataset.labelled:
            raise UserError("--val-fraction: splits the labelled training data; with --eval-data or unlabelled "
                            "--data, evaluation runs on the --eval-data set")
        dataset = split_validation(dataset, val_fraction, cfg.seed)
        log(f"evaluating on a validation split of {val_fraction:.0%} of the training data "
            f"({len(dataset.test.labels)} images); the test split is not used")
    cfg = resolve_length(cfg, len(dataset.train))   # the batch and epochs the run trains with, for its report
    evaluation = open_eval_data(cfg, dataset, run_dir, device)
    if not evaluation.labelled:
        log(f"data {cfg.data}: unlabelled and no --eval-data: the report holds the label-free numbers only")
    augment = build_augment(cfg.augment, dataset.image_size, dataset.mean, dataset.std)
    mcfg = from_dict(SimXIRConfig, dict(cfg.method))
    if mcfg.variant == "raw-anchor" and streamed:
        raise UserError("method.variant=raw-anchor: needs in-memory data (its anchor is the whole "
                        "stored image); set loader.stream=off")

    main = distributed.is_main()
    before_path = run_dir / "before.json"
    if resume and before_path.is_file():
        try:
            before = json.loads(before_path.read_text())
        except (ValueError, OSError) as exc:
            raise UserError(f"{before_path}: damaged ({type(exc).__name__}); delete it and rerun with --resume to "
                            f"evaluate the encoder before fine-tuning again") from None
    else:
        if (run_dir / "checkpoint.pt").exists():
            raise UserError(f"--out {run_dir}: already holds a checkpoint; pass --resume to continue it "
                            f"or choose another folder")
        log("evaluating the encoder before fine-tuning")
        backbone = backbone.to(device)
        before = evaluate(backbone, evaluation, augment, protocol, run_dir / "linear-before")
        if protocol.label_free is not None:
            before["label_free"] = label_free_before(backbone, dataset, augment, protocol, run_dir)
        if main:
            atomic_write_json(before, before_path)
        backbone = backbone.to("cpu")   # train() places the method (and its frozen target) itself

    torch.manual_seed(cfg.seed)
    method = SimXIR(backbone, mcfg)
    views = RawAnchorViews(augment) if mcfg.variant == "raw-anchor" else augment
    result = train(cfg, method, dataset, views, run_dir, resume=resume, device=device)

    tuned = method.backbone.to(memory_format=torch.contiguous_format).float()
    log("evaluating the encoder after fine-tuning")
    after = evaluate(tuned, evaluation, augment, protocol, run_dir / "linear-after")
    change = None
    if protocol.label_free is not None and "label_free" in before:
        after["label_free"], change = label_free_after(tuned, dataset, augment, protocol, run_dir)
    tuned = tuned.to("cpu")
    summary = _summary(cfg, encoder, report, result, before, after, val_fraction, run_dir)
    summary["label_free_change"] = change
    if main:
        atomic_write_json(after, run_dir / "after.json")
        summary["exported"] = _export(tuned, report, encoder, run_dir, allow_pickle, result["encoder"])
        write_report(summary, run_dir, title=f"SimXIR fine-tuning of {encoder} on {cfg.data}")
    if distributed.world_size() > 1:
        dist.barrier()
    return summary


def _export(tuned: torch.nn.Module, report: Any, encoder: str | Path, run_dir: Path, allow_pickle: bool,
            simxir_path: str | None) -> dict[str, str | None]:
    """The tuned encoder in simxir's format and, where it can be rebuilt, the layout it came in."""
    exported = {"simxir": simxir_path}
    if report.format != "simxir":
        path = run_dir / f"encoder.{report.format}.pt"
        template = encoder if report.format not in ("torchvision",) else None
        try:
            export_encoder(tuned, path, report.format, template=template, allow_pickle=allow_pickle)
        except UserError as exc:  # the layout could not be rebuilt: keep the safetensors export
            log(f"could not export in the {report.format} layout ({exc}); encoder.safetensors holds it")
        else:
            exported[report.format] = str(path)
    return exported


def _summary(cfg: TrainConfig, encoder: str | Path, report: Any, result: dict[str, Any], before: dict,
             after: dict, val_fraction: float, run_dir: Path) -> dict[str, Any]:
    return {
        "before": before, "after": after, "encoder": result["encoder"], "exported": {"simxir": result["encoder"]},
        "epochs": result["epochs"], "collapsed": result["collapsed"], "run_dir": str(run_dir),
        "load_report": {"format": report.format, "arch": report.arch, "prefix": report.prefix,
                        "loaded": len(report.loaded), "dropped": len(report.dropped),
                        "notes": list(report.notes)},
        "config": to_dict(cfg),
        "evaluated_on": "validation" if val_fraction else ("eval-data test" if cfg.eval_data else "test"),
    }
