"""Run the whole simxir story on the embedded digits data in a few minutes on a CPU.

Pretrain a small encoder with a non-contrastive method, evaluate it (kNN + linear probe, next to a
randomly initialised encoder of the same architecture), fine-tune it with SimXIR, evaluate again,
and write the before/after report and plots.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer

from simxir.errors import UserError
from simxir.progress import log

EXPECTED = "about 1 minute on 2 idle CPU cores (longer when they are busy)"


def run_demo(out: str | Path, method: str = "simsiam", pretrain_epochs: int = 100, finetune_epochs: int = 20,
             seed: int = 0, linear_epochs: int = 100) -> dict[str, Any]:
    """Pretrain -> evaluate -> SimXIR fine-tune -> evaluate on ``digits``; returns the three evals."""
    import torch

    from simxir.augment import build_augment
    from simxir.data import load_dataset
    from simxir.eval import format_knn_table
    from simxir.finetune.report import format_report
    from simxir.finetune.run import EvalProtocol, build_finetune_config, evaluate, run_finetune
    from simxir.io import atomic_write_bytes, atomic_write_json
    from simxir.models import build_backbone
    from simxir.train.command import build_config, run_pretrain

    out = Path(out)
    if (out / "pretrain" / "checkpoint.pt").exists() or (out / "finetune" / "checkpoint.pt").exists():
        raise UserError(f"--out {out}: already holds a demo run; choose another folder or remove it")
    t0 = time.perf_counter()
    protocol = EvalProtocol(linear_epochs=linear_epochs)
    common = [f"seed={seed}", "tensorboard=false"]

    log(f"[1/4] pretraining a convnet-small encoder with {method} on digits ({pretrain_epochs} epochs)")
    pcfg = build_config(method, None, [f"epochs={pretrain_epochs}", "batch_size=256", "augment=tiny",
                                       "backbone=convnet-small", "optim.lr=0.1", "optim.weight_decay=5e-4",
                                       "schedule.warmup_epochs=2", "monitor.eval_size=360", *common],
                        data="digits")
    pre = run_pretrain(pcfg, out / "pretrain")

    log("[2/4] evaluating a randomly initialised encoder of the same architecture (the baseline)")
    dataset = load_dataset("digits")
    augment = build_augment("tiny", dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(seed)
    random_eval = evaluate(build_backbone("convnet-small"), dataset, augment, protocol)

    log(f"[3/4] SimXIR fine-tuning of the pretrained encoder ({finetune_epochs} epochs), "
        "evaluating before and after")
    fcfg = build_finetune_config(None, [f"epochs={finetune_epochs}", "batch_size=256", "augment=tiny",
                                        "optim.lr=0.01", "monitor.eval_size=360", *common], data="digits")
    ft = run_finetune(fcfg, pre["encoder"], out / "finetune", protocol=protocol)

    log("[4/4] writing the report")
    evals = {"random init": random_eval, f"{method} pretrained": ft["before"], "+ SimXIR": ft["after"]}
    seconds = time.perf_counter() - t0
    lines = [
        "# simxir demo: pretraining, evaluation and SimXIR fine-tuning on digits", "",
        f"scikit-learn's digits (1437 train / 360 test, 16x16), convnet-small, {method} for "
        f"{pretrain_epochs} epochs, then SimXIR for {finetune_epochs} epochs (lr 0.01, l2 loss, one round). "
        f"Finished in {seconds:.0f} s.", "",
        "## kNN top-1 (%), cells cos / euc", "", format_knn_table(evals, markdown=True), "",
        format_report(ft["before"], ft["after"], title="Before / after SimXIR", markdown=True),
        "![kNN over k](finetune/knn_over_k.png)", "",
    ]
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    summary = {"random": random_eval, "pretrained": ft["before"], "finetuned": ft["after"],
               "pretrain_collapsed": pre["collapsed"], "encoder": ft["encoder"],
               "report": str(out / "report.md"), "seconds": round(seconds, 1)}
    atomic_write_json(summary, out / "demo.json")
    summary["_tables"] = (format_knn_table(evals) + "\n"
                          + format_report(ft["before"], ft["after"], title="Before / after SimXIR"))
    return summary


def demo_command(
    out: str = typer.Option("demo_out", "--out", help="folder for the demo's runs, report and plots"),
    method: str = typer.Option("simsiam", "--method", help="pretraining method (see 'simxir methods')"),
    pretrain_epochs: int = typer.Option(100, "--pretrain-epochs", help="pretraining epochs"),
    finetune_epochs: int = typer.Option(20, "--finetune-epochs", help="SimXIR fine-tuning epochs"),
    seed: int = typer.Option(0, "--seed", help="seed of every step"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run the whole simxir story on the embedded digits data in a few minutes on a CPU."""
    from simxir.io import json_safe

    log(f"simxir demo: pretrain -> evaluate -> SimXIR fine-tune -> evaluate on digits; {EXPECTED}. "
        f"Output in {out}/")
    result = run_demo(out, method=method, pretrain_epochs=pretrain_epochs,
                      finetune_epochs=finetune_epochs, seed=seed)
    tables = result.pop("_tables")
    if json_out:
        print(json.dumps(json_safe(result)))
        return
    print(tables)
    print(f"report: {result['report']}  ({result['seconds']:.0f} s)")
