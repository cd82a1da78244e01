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

from simxir import distributed
from simxir.config import to_dict
from simxir.errors import UserError
from simxir.eval.labelfree import evaluate_label_free, paired
from simxir.eval.paired import paired_cells
from simxir.finetune.report import write_report
from simxir.io import atomic_write_bytes, atomic_write_json, read_npz
from simxir.models import export_encoder, load_encoder
from simxir.progress import log
from simxir.protocol import EvalProtocol, evaluate
from simxir.rundir import own_run_folder
from simxir.train import train
from simxir.train.assemble import build_config, build_model, open_run_data
from simxir.train.config import TrainConfig
from simxir.train.plan import resolve_length


def build_finetune_config(recipe: str | Path | None, overrides: list[str], data: str | None = None,
                          rounds: int | None = None, variant: str | None = None,
                          loss: str | None = None, eval_data: str | None = None) -> TrainConfig:
    """:func:`simxir.train.assemble.build_config` for the ``simxir`` method (its ``train_defaults``
    are the SimXIR paper's settings), then the explicit options ``--variant``, ``--loss`` and
    ``--rounds`` (rounds T: the epochs split evenly)."""
    extra = [f"method.{k}={v}" for k, v in (("variant", variant), ("loss", loss)) if v is not None]
    cfg = build_config("simxir", recipe, [*overrides, *extra], data, eval_data)
    if rounds is not None:
        if rounds < 1:
            raise UserError(f"--rounds: expected >= 1, got {rounds}")
        if cfg.method["steps_per_round"]:
            raise UserError("--rounds: cannot be combined with method.steps_per_round")
        if cfg.epochs % rounds:
            raise UserError(f"--rounds {rounds}: epochs={cfg.epochs} is not a multiple of it")
        cfg = dataclasses.replace(cfg, method={**cfg.method, "epochs_per_round": cfg.epochs // rounds})
    if not cfg.data:
        raise UserError("--data: required (a dataset spec such as digits, npz:FILE, cifar10:DIR)")
    return cfg


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
    pre = report.preprocess if protocol.normalization == "auto" else None
    if pre is not None and pre.get("size") and not cfg.image_size:   # the preprocessor's crop size
        cfg = dataclasses.replace(cfg, image_size=int(pre["size"]))
    if pre is not None:
        log(f"normalising with the encoder's own preprocessing ({pre['source']}): mean {list(pre['mean'])}, "
            f"std {list(pre['std'])} (--normalization data: the data's statistics)")
    run = open_run_data(cfg, run_dir, val_fraction, (pre["mean"], pre["std"]) if pre else None)
    dataset, evaluation, augment, device = run.dataset, run.evaluation, run.augment, run.device
    cfg = resolve_length(cfg, len(dataset.train))   # the batch and epochs the run trains with, for its report
    if not evaluation.labelled:
        log(f"data {cfg.data}: unlabelled and no --eval-data: the report holds the label-free numbers only")
    if cfg.method.get("variant") == "raw-anchor" and getattr(dataset, "streamed", False):
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
        if (run_dir / "checkpoint.pt").exists() and not resume:
            raise UserError(f"--out {run_dir}: already holds a checkpoint; pass --resume to continue it "
                            f"or choose another folder")
        log("evaluating the encoder before fine-tuning" + (" (before.json is missing: the evaluation is "
                                                           "repeated on the original encoder)" if resume else ""))
        backbone = backbone.to(device)
        before = evaluate(backbone, evaluation, augment, protocol, run_dir / "linear-before")
        if protocol.label_free is not None:
            before["label_free"] = label_free_before(backbone, dataset, augment, protocol, run_dir)
        if main:
            atomic_write_json(before, before_path)
        backbone = backbone.to("cpu")   # train() places the method (and its frozen target) itself

    method = build_model(cfg, backbone)
    result = train(cfg, method, dataset, augment, run_dir, resume=resume, device=device)

    tuned = method.backbone.to(memory_format=torch.contiguous_format).float()
    log("evaluating the encoder after fine-tuning")
    after = evaluate(tuned, evaluation, augment, protocol, run_dir / "linear-after")
    change = None
    if protocol.label_free is not None and "label_free" in before:
        after["label_free"], change = label_free_after(tuned, dataset, augment, protocol, run_dir)
    tuned = tuned.to("cpu")
    summary = _summary(cfg, encoder, report, result, before, after, val_fraction, run_dir, pre, evaluation)
    summary["label_free_change"] = change
    summary["paired"] = paired_cells(before, after, what="finetune before/after")
    if main:
        atomic_write_json(after, run_dir / "after.json")
        summary["exported"] = _export(tuned, report, encoder, run_dir, allow_pickle, result["encoder"])
        write_report(summary, run_dir, title=f"SimXIR fine-tuning of {encoder} on {cfg.data}")
    distributed.wait_for_main()   # rank 0 exported and wrote the report alone
    return summary


def _export(tuned: torch.nn.Module, report: Any, encoder: str | Path, run_dir: Path, allow_pickle: bool,
            simxir_path: str | None) -> dict[str, str | None]:
    """The tuned encoder in simxir's format and, where it can be rebuilt, the layout it came in."""
    exported = {"simxir": simxir_path}
    if report.format != "simxir":
        path = run_dir / ("encoder.transformers" if report.format == "transformers" else f"encoder.{report.format}.pt")
        template = encoder if report.format not in ("torchvision",) else None
        try:
            export_encoder(tuned, path, report.format, template=template, allow_pickle=allow_pickle)
        except UserError as exc:  # the layout could not be rebuilt: keep the safetensors export
            log(f"could not export in the {report.format} layout ({exc}); encoder.safetensors holds it")
        else:
            exported[report.format] = str(path)
    return exported


def _summary(cfg: TrainConfig, encoder: str | Path, report: Any, result: dict[str, Any], before: dict,
             after: dict, val_fraction: float, run_dir: Path, pre: dict[str, Any] | None,
             evaluation: Any) -> dict[str, Any]:
    return {
        "before": before, "after": after, "encoder": result["encoder"], "exported": {"simxir": result["encoder"]},
        "epochs": result["epochs"], "collapsed": result["collapsed"], "run_dir": str(run_dir),
        "load_report": {"format": report.format, "arch": report.arch, "prefix": report.prefix,
                        "loaded": len(report.loaded), "dropped": len(report.dropped),
                        "notes": list(report.notes)},
        "config": to_dict(cfg),
        "evaluated_on": "validation" if val_fraction else ("eval-data test" if cfg.eval_data else "test"),
        "normalization": {"source": pre["source"], "mean": list(pre["mean"]), "std": list(pre["std"])}
        if pre is not None else "data",
        "encoder_source": str(encoder),
        "n_test": len(evaluation.test.labels) if evaluation.labelled else None,
    }
