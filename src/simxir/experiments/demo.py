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
    knn_predict,
)
from simxir.eval.linear import linear_probe_predictions
from simxir.eval.paired import paired_change, verdict
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


def paired_tables(before: tuple[Any, Any], after: tuple[Any, Any], dataset: Any, ks: tuple[int, ...],
                  linear_epochs: int, seed: int) -> dict[str, Any]:
    """Per-image paired changes (bootstrap 95% CI, McNemar) of kNN (both metrics, every k) and of
    the linear probe, between two encoders' (train, test) features on the same test images."""
    y_tr, y_te = dataset.train.labels, dataset.test.labels
    right = []
    for tr, te in (before, after):
        pred = knn_predict(tr, y_tr, te, ks=ks, weighted_temperature=None, show_progress=False)["knn"]
        lin = linear_probe_predictions(tr, y_tr, te, y_te, LinearProbeConfig(epochs=linear_epochs),
                                       show_progress=False)
        right.append({"knn": {m: {k: (p == y_te).numpy() for k, p in by_k.items()} for m, by_k in pred.items()},
                      "linear": (lin == y_te).numpy()})
    out: dict[str, Any] = {"knn": {}, "linear": paired_change(right[0]["linear"], right[1]["linear"], seed=seed)}
    for metric in right[0]["knn"]:
        out["knn"][metric] = {str(k): paired_change(right[0]["knn"][metric][k], right[1]["knn"][metric][k],
                                                    seed=seed) for k in ks}
    return out


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


def run_demo(out: str | Path, method: str = "simsiam", pretrain_epochs: int = 10, finetune_epochs: int = 20,
             seed: int = 0, linear_epochs: int = 100, lrs: tuple[float, ...] = SIMXIR_LRS,
             val_fraction: float = 0.2) -> dict[str, Any]:
    """Pretrain (short, so the encoder is not at the ceiling) -> choose SimXIR's lr on a validation
    split of the train images -> fine-tune -> paired before/after comparison on the test split."""
    out = Path(out)
    if (out / "pretrain" / "checkpoint.pt").exists() or (out / "finetune" / "checkpoint.pt").exists():
        raise UserError(f"--out {out}: already holds a demo run; choose another folder or remove it")
    t0 = time.perf_counter()
    # the demo judges by labels (paired tables)
    protocol = EvalProtocol(linear_cfg=LinearProbeConfig(epochs=linear_epochs), label_free=None)
    common = [f"seed={seed}", "tensorboard=false", "monitor.eval_size=360"]

    log(f"[1/5] pretraining convnet-small with {method} on digits, {pretrain_epochs} epochs with its "
        "default settings (short on purpose: the encoder should not start at the dataset's ceiling)")
    pre = run_pretrain(build_config(method, None, [f"epochs={pretrain_epochs}", *common], data="digits"),
                       out / "pretrain")

    def ft_cfg(lr: float) -> Any:
        return build_finetune_config(None, [f"epochs={finetune_epochs}", "batch_size=256", "augment=auto",
                                            f"optim.lr={lr}", *common], data="digits")

    log(f"[2/5] choosing SimXIR's learning rate among {', '.join(f'{lr:g}' for lr in lrs)} on a "
        f"validation split ({val_fraction:.0%} of the train images; the test split is not looked at)")
    selection = []
    for lr in lrs:
        r = run_finetune(ft_cfg(lr), pre["encoder"], out / f"select-lr{lr:g}", val_fraction=val_fraction,
                         protocol=EvalProtocol(linear=False, label_free=None))
        cos_b, cos_a = r["before"]["knn"]["cosine"], r["after"]["knn"]["cosine"]
        gain = sum(cos_a[k] - cos_b[k] for k in cos_b) / len(cos_b)
        selection.append({"lr": lr, "val_knn_gain": gain, "collapsed": r["collapsed"]})
        log(f"    lr {lr:g}: mean cosine kNN change on validation {gain:+.2f} points")
    best = max((s for s in selection if not s["collapsed"]), key=lambda s: s["val_knn_gain"],
               default=selection[0])

    log(f"[3/5] SimXIR with lr {best['lr']:g} on all train images ({finetune_epochs} epochs), "
        "evaluated on the test split before and after")
    ft = run_finetune(ft_cfg(best["lr"]), pre["encoder"], out / "finetune", protocol=protocol)

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
    paired = paired_tables(feats["pretrained"], feats["+ SimXIR"], dataset, protocol.knn_ks,
                           linear_epochs, seed)
    geometry = {n: class_geometry(f[1], dataset.test.labels) for n, f in feats.items()}

    log("[5/5] writing the report")
    evals = {"random init": random_eval, f"{method} pretrained": ft["before"], "+ SimXIR": ft["after"]}
    head_knn = paired["knn"]["cosine"][str(KNN_HEADLINE_K)]
    lines_verdict = [
        f"- cosine kNN (k = {KNN_HEADLINE_K}): {verdict(head_knn)}",
        f"- linear probe top-1: {verdict(paired['linear'])}",
    ]
    helped = any(c["ci_low"] > 0 and c["mcnemar_p"] < 0.05 for c in (head_knn, paired["linear"]))
    if not helped:
        lines_verdict.append("- So on digits SimXIR did not measurably help at the learning rate the "
                             "validation split chose: no headline change is confirmed by both the interval "
                             "and McNemar's test. This demo does not tune on the test split to make it "
                             "look better.")
    if max(s["val_knn_gain"] for s in selection) <= 0:
        lines_verdict.append("- No learning rate tried improved kNN on the validation split either.")
    g0, g1 = geometry["pretrained"], geometry["+ SimXIR"]
    geo_line = (f"- class geometry (test embeddings on the unit sphere): within-class spread "
                f"{g0['within_class_msd']:.3f} -> {g1['within_class_msd']:.3f}, between-class "
                f"{g0['between_class_msd']:.3f} -> {g1['between_class_msd']:.3f}, ratio "
                f"{g0['ratio']:.3f} -> {g1['ratio']:.3f} (lower = classes tighter relative to their "
                f"distance: the paper's contraction/alienation)")
    seconds = time.perf_counter() - t0
    paired_rows = ["| change (after - before) | points | 95% CI (bootstrap) | McNemar p | fixed / broken |",
                   "|---|---|---|---|---|"]
    for name, c in ([(f"kNN cos k={k}", c) for k, c in paired["knn"]["cosine"].items()]
                    + [(f"kNN euc k={k}", c) for k, c in paired["knn"]["euclidean"].items()]
                    + [("linear top-1", paired["linear"])]):
        paired_rows.append(f"| {name} | {c['change']:+.2f} | [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] | "
                           f"{c['mcnemar_p']:.2g} | {c['only_after']} / {c['only_before']} |")
    sel_rows = ["| SimXIR lr | mean cosine kNN change on validation |", "|---|---|"] + [
        f"| {s['lr']:g}{' (chosen)' if s is best else ''} | {s['val_knn_gain']:+.2f} |" for s in selection]
    lines = [
        "# simxir demo: pretraining, evaluation and SimXIR fine-tuning on digits", "",
        f"scikit-learn's digits ({len(dataset.train.labels)} train / {len(dataset.test.labels)} test, "
        f"16x16), convnet-small, {method} for {pretrain_epochs} epochs with its default settings, then "
        f"SimXIR for {finetune_epochs} epochs (SGD, l2 loss, one round) at the lr chosen on a "
        f"{val_fraction:.0%} validation split of the train images. Finished in {seconds:.0f} s.", "",
        "## How sure are we?", "", *lines_verdict, geo_line, "",
        "## kNN top-1 (%), cells cos / euc", "", format_knn_table(evals, markdown=True), "",
        "## Paired changes on the same test images", "", *paired_rows, "",
        "## Learning-rate choice (validation split only)", "", *sel_rows, "",
        format_report(ft["before"], ft["after"], title="Before / after SimXIR", markdown=True),
        "![demo](demo.png)", "",
    ]
    _plot(evals, paired, geometry, out / "demo.png")
    atomic_write_bytes(out / "report.md", "\n".join(lines).encode())
    summary = {"random": random_eval, "pretrained": ft["before"], "finetuned": ft["after"],
               "paired": paired, "geometry": geometry, "lr_selection": selection, "lr": best["lr"],
               "simxir_helped": helped, "pretrain_collapsed": pre["collapsed"], "encoder": ft["encoder"],
               "report": str(out / "report.md"), "seconds": round(seconds, 1)}
    atomic_write_json(summary, out / "demo.json")
    summary["_tables"] = "\n".join([format_knn_table(evals), "", "How sure are we?", *lines_verdict,
                                     geo_line, "", *paired_rows])
    return summary
