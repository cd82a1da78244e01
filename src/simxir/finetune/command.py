"""``simxir finetune``: SimXIR self-supervised fine-tuning of any encoder, with before/after tables."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from simxir import distributed
from simxir.errors import UserError
from simxir.eval.knn import parse_ks
from simxir.eval.labelfree import LabelFreeConfig
from simxir.eval.linear import LinearProbeConfig
from simxir.finetune.report import format_report
from simxir.finetune.run import build_finetune_config, run_finetune
from simxir.io import json_safe
from simxir.models import FORMATS
from simxir.protocol import EvalProtocol
from simxir.train.checkpoint import resume_recipe


def finetune_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. epochs=5 "
                                          "batch_size=256 optim.lr=1e-3 method.target_bn=running"),
    encoder: str = typer.Option(..., "--encoder", help="encoder checkpoint, any layout: " + ", ".join(FORMATS)),
    data: str = typer.Option(None, "--data", help="dataset spec (digits, npz:FILE, cifar10:DIR, folder:DIR "
                             "labelled or not, files:LIST, ...)"),
    eval_data: str = typer.Option(None, "--eval-data", help="labelled dataset spec for kNN/linear before and "
                                  "after (default: --data's own test split; none for unlabelled --data)"),
    label_free_images: int = typer.Option(1000, "--label-free-images", help="train images of the label-free "
                                          "numbers (RankMe, alignment, uniformity, cluster geometry); 0: off"),
    out: str = typer.Option(..., "--out", help="run folder: checkpoint, logs, report, exported encoders"),
    fmt: str = typer.Option(None, "--format", help="checkpoint layout (default: detected)"),
    rounds: int = typer.Option(None, "--rounds", help="rounds T (epochs are split evenly; default 1)"),
    variant: str = typer.Option(None, "--variant", help="standard (eq. 3.1) or raw-anchor (eq. 3.2)"),
    loss: str = typer.Option(None, "--loss", help="l2 (eq. 3.1) or cosine (spherical, eq. 4.2)"),
    recipe: str = typer.Option(None, "--recipe", help="YAML recipe (recipes/finetune/*.yaml)"),
    resume: bool = typer.Option(False, "--resume", help="continue RUN_DIR from its last checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace the outputs of an earlier run in RUN_DIR "
                                   "(without it, a folder holding a run is refused)"),
    allow_pickle: bool = typer.Option(False, "--allow-pickle", help="trust and fully unpickle the checkpoint"),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="evaluate on a stratified validation "
                                       "split of this fraction of the train data instead of the test split"),
    knn: str = typer.Option("5,7,11,15,17,21", "--knn", help="comma-separated ks"),
    linear: bool = typer.Option(True, "--linear/--no-linear", help="also train a linear probe"),
    linear_epochs: int = typer.Option(100, "--linear-epochs", help="linear-probe epochs"),
    linear_protocol: str = typer.Option("fast", "--linear-protocol",
                                        help="fast (probe on precomputed features) or augmented (the papers' "
                                             "protocol: BN + linear on RandomResizedCrop + flip views)"),
    linear_recipe: str = typer.Option(None, "--linear-recipe", help="augmented: recipes/linear/*.yaml"),
    normalization: str = typer.Option("auto", "--normalization", help="auto: the encoder's own preprocessing "
                                      "(a transformers folder's preprocessor_config.json) when it has one, else "
                                      "the data's mean/std; data: always the data's"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Fine-tune an SSL encoder with SimXIR and report kNN/linear accuracy before and after."""
    if variant is not None and variant not in ("standard", "raw-anchor"):
        raise UserError(f"--variant {variant!r}: expected standard or raw-anchor")
    if loss is not None and loss not in ("l2", "cosine"):
        raise UserError(f"--loss {loss!r}: expected l2 or cosine")
    if label_free_images < 0 or label_free_images == 1:
        raise UserError(f"--label-free-images: expected 0 (off) or at least 2, got {label_free_images}")
    protocol = EvalProtocol(knn_ks=tuple(parse_ks(knn)), linear=linear,   # checks --linear-protocol, --normalization
                            linear_cfg=LinearProbeConfig(epochs=linear_epochs),
                            linear_protocol=linear_protocol, linear_recipe=linear_recipe,
                            label_free=LabelFreeConfig(images=label_free_images) if label_free_images else None,
                            normalization=normalization)
    cfg = build_finetune_config(resume_recipe(out, resume, recipe), list(overrides or []), data, rounds,
                               variant, loss, eval_data)
    result = run_finetune(cfg, encoder, out, fmt=fmt, allow_pickle=allow_pickle, resume=resume,
                          val_fraction=val_fraction, protocol=protocol,
                          overwrite=overwrite)   # diverged: see simxir.cli
    if not distributed.is_main():
        return
    if json_out:
        print(json.dumps(json_safe({"before": result["before"], "after": result["after"],
                                    "label_free_change": result["label_free_change"],
                                    "paired": result["paired"], "encoder": result["encoder"]})))
        return
    print(format_report(result["before"], result["after"], title=f"SimXIR fine-tuning: {encoder} on {cfg.data}",
                        label_free=result["label_free_change"], paired=result["paired"]), end="")
    print(f"\nencoder: {result['encoder']}" + "".join(
        f"\n{k} layout: {v}" for k, v in result["exported"].items() if k != "simxir"))
    print(f"report: {Path(out) / 'report.md'}")
