"""Run the whole simxir story on the embedded digits data in a minute or two on a CPU.

Pretrain a small encoder briefly with a non-contrastive method, choose SimXIR's learning rate on a
validation split of the train images, fine-tune, and compare before/after on the same test images
with paired 95% confidence intervals (bootstrap) and McNemar's test, next to a randomly initialised
encoder; plus the embeddings' class geometry (within- vs between-class distances) and honest plots.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from simxir.augment import build_augment
from simxir.data import load_dataset
from simxir.dynamics.metrics import GroupMetrics
from simxir.errors import UserError
from simxir.eval import (
    LinearProbeConfig,
    evaluate_features,
    extract_features,
    format_knn_table,
)
from simxir.eval.paired import outcome_cells, paired_change_seeds, seeds_call, verdict
from simxir.finetune.report import format_report
from simxir.finetune.run import build_finetune_config, run_finetune
from simxir.io import atomic_write_bytes, atomic_write_json
from simxir.models import build_backbone, load_encoder
from simxir.plotting import figure, honest_ylim, save_figure
from simxir.progress import log
from simxir.protocol import EvalProtocol
from simxir.train.assemble import build_config
from simxir.train.pretrain import run_pretrain

EXPECTED = "about 1-2 minutes on 2 idle CPU cores (longer when they are busy)"
KNN_HEADLINE_K = 11          # the middle of the paper's k = 5..21
SIMXIR_LRS = (5e-4, 5e-3, 5e-2)


def _features(backbone: Any, dataset: Any, augment: Any) -> tuple[Any, Any]:
    return (extract_features(backbone, dataset.train.images, augment, desc="train features"),
            extract_features(backbone, dataset.test.images, augment, desc="test features"))


def class_geometry(test_f: Any, labels: Any) -> dict[str, float]:
    """The dynamics view of an embedding (l2-normalised test features): the mean within-class and
    between-class mean squared distances (``simxir.dynamics`` group metrics) and their ratio.
    Neighbour averaging contracts classes (within falls) and separates them (ratio falls)."""
    f = torch.nn.functional.normalize(test_f.double(), dim=1)
    m = GroupMetrics(labels.numpy(), exact_max=0, max_pair_groups=64)(f)
    within, between = float(m["intra_msd"].mean()), float(m["inter_msd"].mean())
    return {"within_class_msd": within, "between_class_msd": between, "ratio": within / between}


def _plot(evals: dict[str, Any], paired: dict[str, Any], geometry: dict[str, dict[str, float]],
          path: Path) -> None:
    """Three panels with honest axes: kNN over k (>= 10 points tall), the paired change with its
    95% CI around a zero line, and within/between-class distances."""
    fig = figure(ncols=3, width=4.2, height=3.4)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    shown: list[float] = []
    for (name, ev), color in zip(evals.items(), ("tab:gray", "tab:blue", "tab:green")):
        ks = sorted(int(k) for k in ev["knn"]["cosine"])
        ys = [ev["knn"]["cosine"][str(k)] for k in ks]
        shown += ys
        ax1.plot(ks, ys, marker="o", color=color, label=name)
    ax1.set_ylim(*honest_ylim(shown))
    ax1.set(xlabel="k", ylabel="cosine kNN top-1 (%)", title="kNN accuracy")
    ax1.set_xticks(sorted({int(k) for ev in evals.values() for k in ev["knn"]["cosine"]}))   # the k values
    ax1.legend(fontsize=7)
    rows = [(f"kNN k={k}", c) for k, c in paired["knn"]["cosine"].items()] + [("linear", paired["linear"])]
    xs = range(len(rows))
    ch = [c["change"] for _, c in rows]
    err = [[c["change"] - c["ci_low"] for _, c in rows], [c["ci_high"] - c["change"] for _, c in rows]]
    ax2.errorbar(xs, ch, yerr=err, fmt="o", color="tab:green", capsize=3)
    ax2.axhline(0.0, color="black", lw=0.8)
    span = max([abs(c["ci_low"]) for _, c in rows] + [abs(c["ci_high"]) for _, c in rows] + [1.0])
    ax2.set_ylim(-1.2 * span, 1.2 * span)
    ax2.set_xticks(list(xs), [r for r, _ in rows], rotation=45, fontsize=7)
    ax2.set(ylabel="after - before (points)", title="SimXIR change, 95% CI")
    names = list(geometry)
    w = [geometry[n]["within_class_msd"] for n in names]
    b = [geometry[n]["between_class_msd"] for n in names]
    pos = range(len(names))
    ax3.bar([p - 0.2 for p in pos], w, width=0.4, label="within class", color="tab:orange")
    ax3.bar([p + 0.2 for p in pos], b, width=0.4, label="between classes", color="tab:purple")
    ax3.set_ylim(0, 1.15 * max(w + b))
    ax3.set_xticks(list(pos), names, fontsize=7)
    ax3.set(ylabel="mean squared distance (unit sphere)", title="contraction / separation")
    ax3.legend(fontsize=7)
    save_figure(fig, path)


def _tables(cells: dict[str, Any]) -> dict[str, Any]:
    """``paired_cells``' flat names as the demo's ``{"knn": {metric: {k: c}}, "linear": c}``."""
    out: dict[str, Any] = {"knn": {}}
    for name, c in cells.items():
        if name.startswith("kNN "):
            _, short, k = name.split(" ")
            out["knn"].setdefault({"cos": "cosine", "euc": "euclidean"}[short], {})[k.split("=")[1]] = c
    out["linear"] = cells["linear top-1"]
    return out


def seeds_verdict(c: dict[str, Any]) -> str:
    """A seed-averaged change: a gain / loss when both its interval over test images and its interval
    over seeds exclude 0, else within noise."""
    per = ", ".join(f"{v:+.2f}" for v in c["changes"])
    text = (f"{c['change']:+.2f} points (mean of {c['seeds']} seeds: {per}); 95% CI over test images "
            f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], over seeds [{c['seed_ci_low']:+.2f}, "
            f"{c['seed_ci_high']:+.2f}]")
    word = seeds_call(c)
    return f"{'a ' if word != 'within noise' else ''}{word}: {text}"


def run_demo(out: str | Path, method: str = "simsiam", pretrain_epochs: int = 10, finetune_epochs: int = 20,
             seed: int = 0, linear_epochs: int = 100, lrs: tuple[float, ...] = SIMXIR_LRS,
             val_fraction: float = 0.2, seeds: int = 3) -> dict[str, Any]:
    """Pretrain (short, so the encoder is not at the ceiling) -> choose SimXIR's lr on a validation
    split of the train images -> fine-tune -> paired before/after comparison on the test split;
    then pretrain and fine-tune again with ``seeds - 1`` more seeds at the chosen lr, so the headline
    is a mean over seeds with its interval over test images and over seeds."""
    out = Path(out)
    if (out / "pretrain" / "checkpoint.pt").exists() or (out / "finetune" / "checkpoint.pt").exists():
        raise UserError(f"--out {out}: already holds a demo run; choose another folder or remove it")
    if seeds < 1:
        raise UserError(f"--seeds: expected a positive integer, got {seeds}")
    t0 = time.perf_counter()
    # the demo judges by labels (paired tables)
    protocol = EvalProtocol(linear_cfg=LinearProbeConfig(epochs=linear_epochs), label_free=None)

    def common(s: int) -> list[str]:
        return [f"seed={s}", "tensorboard=false", "monitor.eval_size=360"]

    def pretrain(s: int, folder: str) -> dict[str, Any]:
        return run_pretrain(build_config(method, None, [f"epochs={pretrain_epochs}", *common(s)], data="digits"),
                            out / folder)

    def ft_cfg(lr: float, s: int) -> Any:
        return build_finetune_config(None, [f"epochs={finetune_epochs}", "batch_size=256", "augment=auto",
                                            f"optim.lr={lr}", *common(s)], data="digits")

    log(f"[1/5] pretraining convnet-small with {method} on digits, {pretrain_epochs} epochs with its "
        "default settings (short on purpose: the encoder should not start at the dataset's ceiling)")
    pre = pretrain(seed, "pretrain")

    log(f"[2/5] choosing SimXIR's learning rate among {', '.join(f'{lr:g}' for lr in lrs)} on a "
        f"validation split ({val_fraction:.0%} of the train images; the test split is not looked at)")
    selection = []
    for lr in lrs:
        r = run_finetune(ft_cfg(lr, seed), pre["encoder"], out / f"select-lr{lr:g}", val_fraction=val_fraction,
                         protocol=EvalProtocol(linear=False, label_free=None))
        cos_b, cos_a = r["before"]["knn"]["cosine"], r["after"]["knn"]["cosine"]
        gain = sum(cos_a[k] - cos_b[k] for k in cos_b) / len(cos_b)
        selection.append({"lr": lr, "val_knn_gain": gain, "collapsed": r["collapsed"]})
        log(f"    lr {lr:g}: mean cosine kNN change on validation {gain:+.2f} points")
    best = max((s for s in selection if not s["collapsed"]), key=lambda s: s["val_knn_gain"],
               default=selection[0])

    log(f"[3/5] SimXIR with lr {best['lr']:g} on all train images ({finetune_epochs} epochs), "
        "evaluated on the test split before and after"
        + (f"; then seeds {seed + 1}..{seed + seeds - 1}: pretraining and SimXIR again" if seeds > 1 else ""))
    ft = run_finetune(ft_cfg(best["lr"], seed), pre["encoder"], out / "finetune", protocol=protocol)
    runs = [ft]
    for s in range(seed + 1, seed + seeds):
        pre_s = pretrain(s, f"pretrain-seed{s}")
        runs.append(run_finetune(ft_cfg(best["lr"], s), pre_s["encoder"], out / f"finetune-seed{s}",
                                 protocol=protocol))

    log("[4/5] paired comparison on the test images, and the embeddings' class geometry")
    dataset = load_dataset("digits")
    augment = build_augment("auto", dataset.image_size, dataset.mean, dataset.std)
    torch.manual_seed(seed)
    feats = {"random init": _features(build_backbone("convnet-small"), dataset, augment),
             "pretrained": _features(load_encoder(pre["encoder"])[0], dataset, augment),
             "+ SimXIR": _features(load_encoder(ft["encoder"])[0], dataset, augment)}
    # the same protocol as simxir.protocol.evaluate, on the features already extracted
    random_tr, random_te = feats["random init"]
    random_eval = evaluate_features(random_tr, dataset.train.labels, random_te, dataset.test.labels,
                                    knn_ks=protocol.knn_ks, linear=protocol.linear, linear_cfg=protocol.linear_cfg)
    paired = _tables(ft["paired"])
    cells = [(outcome_cells(r["before"]), outcome_cells(r["after"])) for r in runs]
    over = _tables({name: paired_change_seeds([b[name] for b, _ in cells], [a[name] for _, a in cells], seed=seed)
                    for name in ft["paired"]})
    geometry = {n: class_geometry(f[1], dataset.test.labels) for n, f in feats.items()}

    log("[5/5] writing the report")
    evals = {"random init": random_eval, f"{method} pretrained": ft["before"], "+ SimXIR": ft["after"]}
    head_knn, head_lin = over["knn"]["cosine"][str(KNN_HEADLINE_K)], over["linear"]
    lines_verdict = [
        f"- cosine kNN (k = {KNN_HEADLINE_K}): {seeds_verdict(head_knn)}",
        f"- linear probe top-1: {seeds_verdict(head_lin)}",
        f"- seed {seed} alone (the tables below): cosine kNN k = {KNN_HEADLINE_K} "
        f"{verdict(paired['knn']['cosine'][str(KNN_HEADLINE_K)])}; linear {verdict(paired['linear'])}",
    ] if seeds > 1 else [
        f"- cosine kNN (k = {KNN_HEADLINE_K}): {verdict(paired['knn']['cosine'][str(KNN_HEADLINE_K)])}",
        f"- linear probe top-1: {verdict(paired['linear'])}",
    ]
    if seeds > 1:
        helped = any(seeds_call(c) == "gain" for c in (head_knn, head_lin))
    else:
        helped = any(c["ci_low"] > 0 and c["mcnemar_p"] < 0.05
                     for c in (paired["knn"]["cosine"][str(KNN_HEADLINE_K)], paired["linear"]))
    if not helped:
        lines_verdict.append("- So on digits SimXIR did not measurably help at the learning rate the "
                             "validation split chose: no headline change is confirmed"
                             + (" over test images and over seeds." if seeds > 1 else
                                " by both the interval and McNemar's test.")
                             + " This demo does not tune on the test split to make it look better.")
    if max(s["val_knn_gain"] for s in selection) <= 0:
        lines_verdict.append("- No learning rate tried improved kNN on the validation split either.")
    g0, g1 = geometry["pretrained"], geometry["+ SimXIR"]
    geo_line = (f"- class geometry (test embeddings on the unit sphere, seed {seed}): within-class spread "
                f"{g0['within_class_msd']:.3f} -> {g1['within_class_msd']:.3f}, between-class "
                f"{g0['between_class_msd']:.3f} -> {g1['between_class_msd']:.3f}, ratio "
                f"{g0['ratio']:.3f} -> {g1['ratio']:.3f} (lower = classes tighter relative to their "
                f"distance: the paper's contraction/alienation)")
    seconds = time.perf_counter() - t0
    paired_rows = [f"Seed {seed}.", "",
                   "| change (after - before) | points | 95% CI (bootstrap) | McNemar p | fixed / broken |",
                   "|---|---|---|---|---|"]
    for name, c in ([(f"kNN cos k={k}", c) for k, c in paired["knn"]["cosine"].items()]
                    + [(f"kNN euc k={k}", c) for k, c in paired["knn"]["euclidean"].items()]
                    + [("linear top-1", paired["linear"])]):
        paired_rows.append(f"| {name} | {c['change']:+.2f} | [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] | "
                           f"{c['mcnemar_p']:.2g} | {c['only_after']} / {c['only_before']} |")
    seed_rows = [f"Mean over seeds {', '.join(str(s) for s in range(seed, seed + seeds))} (each pretrained "
                 f"and fine-tuned with its own seed, the same lr), paired on the same test images.", "",
                 "| change (after - before) | mean | per seed | 95% CI over test images | 95% CI over seeds |",
                 "|---|---|---|---|---|"]
    for name, c in ([(f"kNN cos k={k}", c) for k, c in over["knn"]["cosine"].items()]
                    + [("linear top-1", over["linear"])]):
        seed_rows.append(f"| {name} | {c['change']:+.2f} | {' / '.join(f'{v:+.2f}' for v in c['changes'])} | "
                         f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] | [{c['seed_ci_low']:+.2f}, "
                         f"{c['seed_ci_high']:+.2f}] |")
    sel_rows = ["| SimXIR lr | mean cosine kNN change on validation |", "|---|---|"] + [
        f"| {s['lr']:g}{' (chosen)' if s is best else ''} | {s['val_knn_gain']:+.2f} |" for s in selection]
    lines = [
        "# simxir demo: pretraining, evaluation and SimXIR fine-tuning on digits", "",
        f"scikit-learn's digits ({len(dataset.train.labels)} train / {len(dataset.test.labels)} test, "
        f"16x16), convnet-small, {method} for {pretrain_epochs} epochs with its default settings, then "
        f"SimXIR for {finetune_epochs} epochs (SGD, l2 loss, one round) at the lr chosen on a "
        f"{val_fraction:.0%} validation split of the train images (seed {seed}), {seeds} seed(s). "
        f"Finished in {seconds:.0f} s.", "",
        "## How sure are we?", "", *lines_verdict, geo_line, "",
        *((["## Over seeds", "", *seed_rows, ""]) if seeds > 1 else []),
        f"## kNN top-1 (%), cells cos / euc, seed {seed}", "", format_knn_table(evals, markdown=True), "",
        "## Paired changes on the same test images", "", *paired_rows, "",
        "## Learning-rate choice (validation split only)", "", *sel_rows, "",
        format_report(ft["before"], ft["after"], title="Before / after SimXIR", markdown=True),
        "![demo](demo.png)", "",
    ]
    _plot(evals, paired, geometry, out / "demo.png")
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    summary = {"random": random_eval, "pretrained": ft["before"], "finetuned": ft["after"],
               "paired": paired, "geometry": geometry, "lr_selection": selection, "lr": best["lr"],
               "seeds": list(range(seed, seed + seeds)), "over_seeds": over,
               "simxir_helped": helped, "pretrain_collapsed": pre["collapsed"], "encoder": ft["encoder"],
               "report": str(out / "report.md"), "seconds": round(seconds, 1)}
    atomic_write_json(summary, out / "demo.json")
    summary["_tables"] = "\n".join([format_knn_table(evals), "", "How sure are we?", *lines_verdict,
                                     geo_line, "", *(seed_rows if seeds > 1 else paired_rows)])
    return summary
