"""``simxir demo`` (the whole story on digits) and ``simxir ablation`` (the bridging paper's Table 3)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from simxir.errors import UserError
from simxir.io import json_safe
from simxir.progress import log


def demo_command(
    out: str = typer.Option("demo_out", "--out", help="folder for the demo's runs, report and plots"),
    method: str = typer.Option("simsiam", "--method", help="pretraining method (see 'simxir methods')"),
    pretrain_epochs: int = typer.Option(10, "--pretrain-epochs", help="pretraining epochs (short: the "
                                        "encoder should leave SimXIR room to act)"),
    finetune_epochs: int = typer.Option(20, "--finetune-epochs", help="SimXIR fine-tuning epochs"),
    seed: int = typer.Option(0, "--seed", help="seed of every step (the first seed)"),
    seeds: int = typer.Option(3, "--seeds", help="pretrain + fine-tune with this many seeds (seed, seed+1, ...) "
                              "at the learning rate chosen with the first; the headline is their mean change"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Run the whole simxir story on the embedded digits data in a few minutes on a CPU."""
    from simxir.experiments.demo import EXPECTED, run_demo  # noqa: PLC0415 - start-up time (the whole library)

    log(f"simxir demo: pretrain -> evaluate -> SimXIR fine-tune -> evaluate on digits; {EXPECTED}. "
        f"Output in {out}/")
    result = run_demo(out, method=method, pretrain_epochs=pretrain_epochs,
                      finetune_epochs=finetune_epochs, seed=seed, seeds=seeds)
    tables = result.pop("_tables")
    if json_out:
        print(json.dumps(json_safe(result)))
        return
    print(tables)
    print(f"report: {result['report']}  ({result['seconds']:.0f} s)")


def ablation_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides for every row, as for simxir "
                                          "pretrain (e.g. epochs=10 optim.name=adamw optim.lr=0.001)"),
    out: Path = typer.Option(..., "--out", help="folder: one run folder per row, ablation.json, ablation.md"),
    recipe: str = typer.Option(None, "--recipe", help="pretraining YAML recipe (method bridge implied)"),
    data: str = typer.Option(None, "--data", help="dataset spec (digits, npz:FILE, cifar10:DIR, folder:DIR, ...)"),
    eval_data: str = typer.Option(None, "--eval-data", help="labelled dataset spec for the kNN column (default: "
                                  "--data's test split; none for unlabelled --data)"),
    rows: str = typer.Option(None, "--rows", help="comma-separated rows or groups: paper (default: the paper's "
                             "Table 3 rows, c_inv=1, c_cov 0/1, next to its outcomes), switches (one switch at a "
                             "time from the full method)"),
    knn_k: int = typer.Option(20, "--knn-k", help="k of the cosine kNN accuracy"),
    json_out: bool = typer.Option(False, "--json", help="print one JSON object on stdout"),
) -> None:
    """Bridging paper Table 3: train the bridge method with parts switched off; accuracy or COLLAPSE."""
    from simxir.experiments.ablation import format_table, run_ablation, select_rows  # noqa: PLC0415 - start-up time (the whole library)

    if knn_k < 1:
        raise UserError(f"--knn-k: expected a positive integer, got {knn_k}")
    chosen = select_rows([r.strip() for r in rows.split(",") if r.strip()] if rows else None)
    summary = run_ablation(chosen, out, recipe=recipe, overrides=list(overrides or []), data=data, knn_k=knn_k,
                           eval_data=eval_data)
    if json_out:
        print(json.dumps(json_safe(summary)))
        return
    print(format_table(json_safe(summary)))
