"""The bridging paper's Table 3 ablation: switch off parts of the "bridge" method and see which
rows still learn and which collapse.

Each row sets five switches of :class:`simxir.methods.bridge.BridgeConfig`: the invariance weight
``c_inv``, the covariance weight ``c_cov``, standardization (``STD``), the identity predictor
(``I-PRED``) and the stop-gradient (``STOPGRAD``). Every row is trained by the pretraining engine
(:func:`simxir.train.train`) with the same recipe, data, seed and budget in its own run folder, and
reported as ``COLLAPSED`` when the engine's collapse monitor says so, otherwise by its accuracy:
kNN top-1 in percent (cosine, k = ``knn_k``) of frozen backbone features, and the engine's online
linear probe (its last-epoch test top-1, a fraction). A row whose loss turns nan is ``DIVERGED``
(``COLLAPSED (diverged)`` when the paper reports that row as collapsing); one
the engine fails on otherwise is ``FAILED`` (with the error), so one row never loses the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simxir.errors import TrainingDiverged, UserError
from simxir.eval import evaluate_encoder
from simxir.io import atomic_write_json
from simxir.progress import log
from simxir.rundir import own_run_folder
from simxir.train import train
from simxir.train.assemble import build_config, build_model, open_run_data


@dataclass(frozen=True)
class AblationRow:
    name: str
    c_inv: float = 8.0
    c_cov: float = 8.0
    standardize: bool = True
    identity_predictor: bool = False
    stop_gradient: bool = False
    paper: str | None = None       # the paper's Table 3 outcome for this row (None: not in it)

    def method_overrides(self) -> list[str]:
        """``method.KEY=VALUE`` overrides for :func:`simxir.train.assemble.build_config`."""
        return [f"method.c_inv={self.c_inv}", f"method.c_cov={self.c_cov}",
                f"method.standardize={str(self.standardize).lower()}",
                f"method.predictor={'identity' if self.identity_predictor else 'linear'}",
                f"method.stop_gradient={str(self.stop_gradient).lower()}"]

    def switches(self) -> dict[str, Any]:
        return {"c_inv": self.c_inv, "c_cov": self.c_cov, "STD": self.standardize,
                "I-PRED": self.identity_predictor, "STOPGRAD": self.stop_gradient}


# Table 3's switches, one change at a time from the full method, plus the rows that connect it to
# SimSiam (stop-gradient + linear predictor, no covariance term) and to plain invariance (I-PRED, no
# covariance). Standardization alone already rules out complete collapse (every output dimension
# keeps unit variance), so the rows that can collapse completely are the ones without STD.
TABLE3_ROWS: tuple[AblationRow, ...] = (
    AblationRow("full"),
    AblationRow("no-invariance", c_inv=0.0),
    AblationRow("no-covariance", c_cov=0.0),
    AblationRow("no-std", standardize=False),
    AblationRow("i-pred", identity_predictor=True),
    AblationRow("stopgrad", stop_gradient=True),
    AblationRow("stopgrad-no-covariance", c_cov=0.0, stop_gradient=True),
    AblationRow("i-pred-no-covariance", c_cov=0.0, identity_predictor=True),
    AblationRow("no-std-no-covariance", c_cov=0.0, standardize=False),
    AblationRow("stopgrad-no-std-no-covariance", c_cov=0.0, standardize=False, stop_gradient=True),
    AblationRow("i-pred-no-std-no-covariance", c_cov=0.0, standardize=False, identity_predictor=True),
)
# The paper's Table 3 itself, row by row (k = 1, c_inv = 1, c_cov = 0 or 1, its ImageNet linear-probe
# outcome in ``paper``), then the two stop-gradient rows without STD that the table does not have:
# with I-PRED and no covariance term that is SimSiam without its predictor, which SimSiam's paper
# reports to collapse; with the covariance term the (non-detached) whitening penalty remains.
PAPER_ROWS: tuple[AblationRow, ...] = (
    AblationRow("paper-no-std-no-cov", 1.0, 0.0, standardize=False, paper="COLLAPSE"),
    AblationRow("paper-no-std", 1.0, 1.0, standardize=False, paper="COLLAPSE"),
    AblationRow("paper-std-no-cov", 1.0, 0.0, paper="50.9"),
    AblationRow("paper-std", 1.0, 1.0, paper="61.4"),
    AblationRow("paper-i-pred-no-std-no-cov", 1.0, 0.0, standardize=False, identity_predictor=True,
                paper="COLLAPSE"),
    AblationRow("paper-i-pred-no-std", 1.0, 1.0, standardize=False, identity_predictor=True, paper="62.6"),
    AblationRow("paper-std-i-pred-no-cov", 1.0, 0.0, identity_predictor=True, paper="50.9"),
    AblationRow("paper-std-i-pred", 1.0, 1.0, identity_predictor=True, paper="58.7"),
    AblationRow("paper-std-i-pred-stopgrad-no-cov", 1.0, 0.0, identity_predictor=True,
                stop_gradient=True, paper="55.0"),
    AblationRow("extra-i-pred-stopgrad-no-std-no-cov", 1.0, 0.0, standardize=False,
                identity_predictor=True, stop_gradient=True),
    AblationRow("extra-i-pred-stopgrad-no-std", 1.0, 1.0, standardize=False, identity_predictor=True,
                stop_gradient=True),
)
ROWS_BY_NAME = {r.name: r for r in TABLE3_ROWS + PAPER_ROWS}
ROW_GROUPS = {"switches": TABLE3_ROWS, "paper": PAPER_ROWS}


def select_rows(names: list[str] | None) -> list[AblationRow]:
    """Rows by name; the group names ``paper`` (the default: the paper's Table 3 rows, each next to
    the paper's outcome) and ``switches`` expand to their rows."""
    if not names:
        return list(PAPER_ROWS)
    bad = [n for n in names if n not in ROWS_BY_NAME and n not in ROW_GROUPS]
    if bad:
        raise UserError(f"--rows: unknown row(s) {', '.join(bad)}; expected a group "
                        f"({', '.join(ROW_GROUPS)}) or some of {', '.join(ROWS_BY_NAME)}")
    out: list[AblationRow] = []
    for n in names:
        out.extend(ROW_GROUPS[n] if n in ROW_GROUPS else [ROWS_BY_NAME[n]])
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) else math.nan


def run_ablation(rows: list[AblationRow], out_dir: str | Path, recipe: str | None = None,
                 overrides: list[str] | None = None, data: str | None = None, knn_k: int = 20,
                 eval_data: str | None = None) -> dict[str, Any]:
    """Train every row with the engine; returns (and writes ``out_dir/ablation.json``) the table.

    ``recipe``/``overrides``/``data``/``eval_data`` are those of ``simxir pretrain`` (``--method
    bridge`` is implied; ``method.*`` overrides of the five switches are set per row and win). The
    kNN column needs labels: ``eval_data``, else the data's own test split (none for unlabelled data).
    """
    with own_run_folder(out_dir):
        return _run_ablation(rows, Path(out_dir), recipe, list(overrides or []), data, knn_k, eval_data)


def _run_ablation(rows: list[AblationRow], out: Path, recipe: str | None, base: list[str], data: str | None,
                  knn_k: int, eval_data: str | None) -> dict[str, Any]:
    cfgs = {r.name: build_config("bridge", recipe, base + r.method_overrides(), data, eval_data) for r in rows}
    first = next(iter(cfgs.values()))
    run = open_run_data(first, out)     # one dataset for every row
    dataset, evaluation, augment = run.dataset, run.evaluation, run.augment
    results = []
    epochs_run = first.epochs      # None (the automatic length) until a row has trained
    for row in rows:
        cfg = cfgs[row.name]
        log(f"ablation row {row.name}: {' '.join(row.method_overrides())}")
        method = build_model(cfg)
        entry: dict[str, Any] = {"row": row.name, **row.switches(), "paper": row.paper,
                                 "run_dir": str(out / row.name)}
        try:
            res = train(cfg, method, dataset, augment, out / row.name, device=run.device)
        except TrainingDiverged as exc:  # nan/inf loss: the engine kept the last good checkpoint
            # a row the paper reports as collapsing has collapsed when its loss blows up; any
            # other row has diverged (a training failure, not a finding)
            status = "COLLAPSED (diverged)" if row.paper == "COLLAPSE" else "DIVERGED"
            entry.update(status=status, collapsed=True, detail=str(exc).splitlines()[0])
            results.append(entry)
            continue
        except (RuntimeError, ValueError) as exc:  # e.g. a monitor failing on non-finite features
            if isinstance(exc, UserError):
                raise
            entry.update(status="FAILED", collapsed=None,
                         detail=f"{exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            log(f"ablation row {row.name} failed: {entry['detail']}")
            results.append(entry)
            continue
        if epochs_run is None and res["epochs"]:
            epochs_run = len(res["epochs"])
        last = res["epochs"][-1] if res["epochs"] else {}
        knn_top1 = math.nan   # percent; no labels, no accuracy
        if evaluation.labelled:
            knn = evaluate_encoder(method.backbone, evaluation, augment, knn_ks=(knn_k,), linear=False,
                                   weighted_temperature=None)
            knn_top1 = float(knn["knn"]["cosine"][str(knn_k)])
        entry.update(
            collapsed=bool(res["collapsed"]),
            knn_top1=knn_top1,
            probe_test_top1=_num(last.get("probe_test_top1")),
            z_std=_num(last.get("z_std")),
            feat_erank=_num(last.get("feat_erank")),
            decorrelation=_num(last.get("decorrelation")),
            final_loss=_num(last.get("loss")),
        )
        entry["status"] = "COLLAPSED" if entry["collapsed"] else (
            f"{knn_top1:.1f}" if math.isfinite(knn_top1) else "not collapsed (no labels)")
        results.append(entry)
    summary = {
        "method": "bridge",
        "data": first.data,
        "eval_data": first.eval_data or None,
        "recipe": recipe,
        "overrides": base,
        "epochs": epochs_run,
        "knn_k": knn_k,
        "rows": results,
    }
    atomic_write_json(summary, out / "ablation.json")
    (out / "ablation.md").write_text(format_table(summary) + "\n")
    return summary


def format_table(summary: dict[str, Any]) -> str:
    """Markdown table in the paper's layout: switches, then accuracy or COLLAPSED."""
    def mark(v: bool) -> str:
        return "x" if v else ""

    with_paper = any(r.get("paper") for r in summary["rows"])
    head = "| row | c_inv | c_cov | STD | I-PRED | STOPGRAD | kNN top-1 | probe top-1 | decorrelation |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    if with_paper:
        head, rule = head + " paper (ImageNet linear) |", rule + "---|"
    lines = [f"Table 3 ablation: bridge on {summary['data']}, {summary['epochs']} epochs, "
             f"kNN k={summary['knn_k']} (cosine) top-1 %", "", head, rule]
    for r in summary["rows"]:
        probe = r.get("probe_test_top1")
        dec = r.get("decorrelation")
        line = (
            f"| {r['row']} | {r['c_inv']:g} | {r['c_cov']:g} | {mark(r['STD'])} | {mark(r['I-PRED'])} | "
            f"{mark(r['STOPGRAD'])} | {r['status']} | "
            f"{'' if probe is None or (isinstance(probe, float) and math.isnan(probe)) else f'{100 * probe:.1f}'} | "
            f"{'' if dec is None or (isinstance(dec, float) and math.isnan(dec)) else f'{dec:.3g}'} |")
        if with_paper:
            line += f" {r.get('paper') or 'not in the table'} |"
        lines.append(line)
    return "\n".join(lines)

