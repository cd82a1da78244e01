"""Evaluate the DINO CPU runs against their random-init encoders, and the multi-crop arms against
their two-view arms, each pair on the same test images; write results/pretrain/dino/ and
results/multicrop/.

* DINO: ``ROOT/dino-vit`` and ``ROOT/dino-resnet`` (``simxir pretrain --recipe
  recipes/pretrain/cpu-cifar10/dino-{vit,resnet}.yaml``); the random-init encoder of each is the run's
  own initial backbone (``simxir pretrain`` seeds torch with the run's seed, then builds it).
* Multi-crop: ``MC/{byol,simxir}-{2view,multicrop}`` from benchmarks/experiments/multicrop.sh.

Every encoder: ``simxir eval --json`` (cosine/euclidean kNN k = 5..21, linear probe); each pair:
``simxir eval --compare`` (95% bootstrap interval over the test images, McNemar's p).

    python benchmarks/experiments/dino_multicrop_table.py --dino /work/runs-dino --mc /work/runs-mc [--write]

Prints both tables; ``--write`` also writes them, with results.json, into results/pretrain/dino/ and
results/multicrop/ (then ``python benchmarks/results_index.py`` lists the files there again).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DATA = "npz:../shared/data/cifar10-12k.npz"
K = "11"


def simxir(*args: str) -> dict | None:
    cmd = [sys.executable, "-m", "simxir.cli", *args, "--json"]
    print("+", " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
        return None
    return json.loads(proc.stdout)


def evaluated(encoder: Path, out: Path) -> Path | None:
    if not out.is_file():
        if not encoder.is_file():
            return None
        res = simxir("eval", "--encoder", str(encoder), "--data", DATA)
        if res is None:
            return None
        out.write_text(json.dumps(res))
    return out


def _backbone(cfg: dict):
    from simxir.models import build_backbone  # noqa: PLC0415
    from simxir.train.config import ViTConfig  # noqa: PLC0415

    vit = ViTConfig(**{k: v for k, v in (cfg.get("vit") or {}).items() if k != "drop_path"})
    return build_backbone(cfg["backbone"], **(vit.options() if cfg["backbone"].startswith("vit") else {}))


def random_name(cfg: dict) -> str:
    """Runs of one backbone (and ViT options) and seed share their random-init encoder."""
    vit = {k: v for k, v in sorted((cfg.get("vit") or {}).items()) if k != "drop_path"}
    tag = "-".join(f"{k}{v}" for k, v in vit.items()) if cfg["backbone"].startswith("vit") else ""
    return "-".join(x for x in ("random", cfg["backbone"], tag, f"seed{cfg['seed']}") if x)


def random_encoder(run: Path) -> Path:
    """The run's initial backbone: its seed, then its backbone with its ViT options."""
    import torch  # noqa: PLC0415

    from simxir.models import save_encoder  # noqa: PLC0415

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    path = run.parent / random_name(cfg) / "encoder.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(int(cfg["seed"]))
        save_encoder(_backbone(cfg), path)
    return path


def random_evaluated(run: Path) -> Path | None:
    """``simxir eval`` of the run's random-init encoder, kept beside the runs (shared by backbone and seed)."""
    rnd = random_encoder(run)
    return evaluated(rnd, run.parent / f"eval-{rnd.parent.name}.json")


def checkpoint_encoder(run: Path) -> Path | None:
    """The student backbone of a stopped run's last checkpoint (``RUN/checkpoint.pt``) as an encoder."""
    import torch  # noqa: PLC0415

    from simxir.models import save_encoder  # noqa: PLC0415

    path = run.parent / f"stopped-{run.name}" / "encoder.safetensors"
    if not path.is_file():
        if not (run / "checkpoint.pt").is_file():
            return None
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        state = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
        backbone = _backbone(cfg)
        backbone.load_state_dict({k.removeprefix("backbone."): v for k, v in state.items()
                                  if k.startswith("backbone.")})
        path.parent.mkdir(parents=True, exist_ok=True)
        save_encoder(backbone, path)
    return path


def compare(before: Path, after: Path) -> dict | None:
    return simxir("eval", "--compare", str(before), str(after))


def fmt(c: dict) -> str:
    return (f"{c['after']:.2f} ({c['change']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], "
            f"p {c['mcnemar_p']:.3g})")


def last_epoch(run: Path) -> dict:
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    return rows[-1] if rows else {}


def wall(run: Path) -> float | None:
    """The run's wall seconds (``NAME.wall`` beside it), else its epochs' training time (metrics.csv)."""
    f = run.parent / f"{run.name}.wall"
    if f.is_file():
        return float(f.read_text())
    rows = list(csv.DictReader((run / "metrics.csv").open())) if (run / "metrics.csv").is_file() else []
    return sum(float(r["train_time_s"]) for r in rows) if rows else None


def pair_rows(compared: dict) -> dict:
    """The headline cells of ``simxir eval --compare``'s ``paired``."""
    p = compared["paired"]
    return {"knn_cosine_k11": p[f"kNN cos k={K}"], "knn_euclidean_k11": p[f"kNN euc k={K}"],
            "linear_top1": p["linear top-1"]}


def dino_section(root: Path) -> tuple[list[str], dict]:
    lines, out = [], {}
    for name in ("dino-convnet", "dino-convnet-10ep", "dino-vit", "dino-resnet"):
        run = root / name
        if not (run / "config.yaml").is_file():
            continue
        mine = evaluated(run / "encoder.safetensors", root / f"eval-{name}.json")
        base = random_evaluated(run)
        if mine is None or base is None:
            lines.append(f"- {name}: not finished")
            continue
        paired = compare(base, mine)
        last = last_epoch(run)
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        knn = json.loads(mine.read_text())["knn"]["cosine"]
        rknn = json.loads(base.read_text())["knn"]["cosine"]
        out[name] = {"backbone": cfg["backbone"], "epochs": cfg["epochs"], "multicrop": cfg["multicrop"],
                     "wall_s": wall(run), "paired_vs_random_init": pair_rows(paired), "knn_cosine": knn,
                     "random_knn_cosine": rknn,
                     "last_epoch": {k: last.get(k) for k in ("loss", "teacher_entropy", "teacher_temp", "feat_erank",
                                                              "z_std", "collapsed", "knn_top1")}}
        o = out[name]
        vs = o["paired_vs_random_init"]
        lines.append(f"| {cfg['backbone']} | {cfg['epochs']} | {cfg['multicrop']['local_crops']} | "
                     f"{max(rknn.values()):.2f} | {max(knn.values()):.2f} | {fmt(vs['knn_cosine_k11'])} | "
                     f"{fmt(vs['linear_top1'])} | {float(last['feat_erank']):.1f} | "
                     f"{float(last['teacher_entropy']):.2f} | {last['collapsed']} | "
                     f"{(o['wall_s'] or 0) / 60:.1f} |")
    return lines, out


ATTEMPTS = {   # earlier settings of the CPU recipes (all but the last stopped early)
    "dino-vit-nobn": "ViT, DINO's BN-free head, teacher momentum 0.99, last layer frozen in epoch 1, 8 epochs planned",
    "dino-vit-bn-m0.99": "ViT, BN in the head, teacher momentum 0.99, last layer frozen in epoch 1, 6 epochs planned "
                         "(the recipe's setting, stopped after epoch 4)",
    "dino-resnet-sgd": "ResNet-18, DINO's ResNet-50 optimisation (SGD 0.03, wd 1e-4), momentum 0.99, 3 epochs planned",
    "dino-resnet-adamw-m0.99": "ResNet-18, AdamW 1e-3, momentum 0.99, last layer frozen in epoch 1, 2 epochs planned",
    "dino-vit-bn-m0.95": "ViT, BN in the head, teacher momentum 0.95, no frozen last layer, 4 epochs planned",
    "dino-resnet-adamw-m0.95": "ResNet-18, AdamW 1e-3, momentum 0.95, no frozen last layer, 2 epochs planned",
    "dino-resnet-simsiam-aug": "ResNet-18, the recipe's settings with simsiam-cifar's augmentation (no blur, no "
                               "solarize) instead of DINO's, 6 epochs (run to the end; its monitor on all 2,000 "
                               "test images)",
}


def verdict(res: dict) -> str:
    """One sentence per recipe run, from its paired kNN cell: learns when the interval excludes 0."""
    said = []
    for name in ("dino-vit", "dino-resnet"):
        if name not in res:
            said.append(f"{name}: not run.")
            continue
        c = res[name]["paired_vs_random_init"]["knn_cosine_k11"]
        call = ("learns above" if c["ci_low"] > 0 else "is below" if c["ci_high"] < 0 else "is not told apart from")
        said.append(f"{res[name]['backbone']} {call} its random-init encoder (cosine kNN k=11 {c['change']:+.2f} "
                    f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]).")
    return " ".join(said)


def resnet_recipe_runs() -> str:
    """Where the resnet18-cifar recipe's setting since 0be1040 is measured: the folders
    dino_student_teacher.py wrote, each with its student's paired cosine kNN cell."""
    said = []
    for name in ("resnet18-recipe", "resnet18-6ep-one-core"):
        path = ROOT / "results" / "pretrain" / "dino" / name / "results.json"
        if path.is_file():
            r = json.loads(path.read_text())
            c = r["student"]["knn_cosine_k11"]
            said.append(f"`{name}/` ({r['config']['epochs']} epochs, {r['training_minutes']:.0f} training minutes): "
                        f"student cosine kNN k=11 {c['change']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] "
                        f"(p {c['mcnemar_p']:.2g})")
    return ("The resnet18-cifar row is the recipe's setting at 0be1040 (batch 256, 4096 prototypes, last layer "
            "frozen in epoch 1); its setting since (batch 128, 2048 prototypes, no frozen epoch) is measured by "
            "benchmarks/experiments/dino_student_teacher.py in " + ("; ".join(said) or "no folder yet")
            + " (each folder's README gives its command and threads).")


def attempts_section(root: Path) -> tuple[list[str], dict]:
    """Per epoch of each earlier attempt: loss, teacher entropy, kNN monitor (k=20, cosine, the
    monitor's 512 test images); and its last checkpoint's student against its random-init encoder on
    all 2,000 test images."""
    lines, out = [], {}
    for name, what in ATTEMPTS.items():
        run = root / name
        f = run / "metrics.csv"
        if not f.is_file():
            continue
        rows = list(csv.DictReader(f.open()))
        out[name] = {"settings": what, "epochs": [{k: r.get(k) for k in ("epoch", "loss", "teacher_entropy",
                                                                           "knn_top1", "feat_erank")} for r in rows]}
        per = "; ".join(f"epoch {r['epoch']}: loss {float(r['loss']):.2f}, entropy {float(r['teacher_entropy']):.2f}"
                        + (f", kNN monitor {100 * float(r['knn_top1']):.1f}" if r.get("knn_top1") else "")
                        for r in rows)
        enc = checkpoint_encoder(run)
        mine = evaluated(enc, root / f"eval-stopped-{name}.json") if enc else None
        base = random_evaluated(run)
        if mine is not None and base is not None:
            paired = pair_rows(compare(base, mine))
            out[name]["stopped_vs_random_init"] = paired
            per += (f". Student after epoch {rows[-1]['epoch']}, all test images: kNN cos k=11 "
                    f"{fmt(paired['knn_cosine_k11'])} against random init's {paired['knn_cosine_k11']['before']:.2f}")
        lines.append(f"- {what}: {per}")
    return lines, out


def mc_section(root: Path) -> tuple[list[str], dict]:
    lines, out = [], {}
    for method in ("byol", "simxir"):
        evals = {arm: evaluated(root / f"{method}-{arm}" / "encoder.safetensors", root / f"eval-{method}-{arm}.json")
                 for arm in ("2view", "multicrop")}
        if None in evals.values():
            lines.append(f"| {method} | not finished | | | | |")
            continue
        paired = compare(evals["2view"], evals["multicrop"])
        cfgs = {arm: yaml.safe_load((root / f"{method}-{arm}" / "config.yaml").read_text()) for arm in evals}
        out[method] = {"paired_multicrop_vs_2view": pair_rows(paired),
                       "wall_s": {arm: wall(root / f"{method}-{arm}") for arm in evals},
                       "epochs": {arm: cfgs[arm]["epochs"] for arm in evals},
                       "local_crops": cfgs["multicrop"]["multicrop"]["local_crops"]}
        o = out[method]
        before = pair_rows(paired)["knn_cosine_k11"]["before"]
        lin_before = pair_rows(paired)["linear_top1"]["before"]
        lines.append(f"| {method} | {o['epochs']['2view']} ep, {o['wall_s']['2view']:.0f} s | "
                     f"{o['epochs']['multicrop']} ep + {o['local_crops']} local, {o['wall_s']['multicrop']:.0f} s | "
                     f"{before:.2f} -> {fmt(o['paired_multicrop_vs_2view']['knn_cosine_k11'])} | "
                     f"{lin_before:.2f} -> {fmt(o['paired_multicrop_vs_2view']['linear_top1'])} |")
    return lines, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dino", type=Path, required=True)
    ap.add_argument("--mc", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="write results/pretrain/dino/ and results/multicrop/ "
                    "(default: print only)")
    a = ap.parse_args()
    dlines, dres = dino_section(a.dino)
    alines, ares = attempts_section(a.dino)
    rnd = {n: dres[n]["random_knn_cosine"] for n in ("dino-vit", "dino-resnet") if n in dres}   # = the attempts'
    rv, rr = (" / ".join(f"{rnd[n][k]:.2f}" for k in ("17", "21")) if n in rnd else "-"
              for n in ("dino-vit", "dino-resnet"))
    dres["earlier_attempts"] = ares
    mlines, mres = mc_section(a.mc)
    head = ("| backbone | epochs | local crops | random-init best kNN | best kNN | kNN cos k=11 vs random init "
            "[95% CI, McNemar p] | linear top-1 vs random init | feat erank | teacher entropy | collapsed | "
            "training minutes |\n|---|---|---|---|---|---|---|---|---|---|---|")
    dino_md = (
        "# DINO on the CIFAR-10 12k subset (CPU)\n\n"
        "The runs in the table: `simxir pretrain --method dino --data npz:../shared/data/cifar10-12k.npz "
        "epochs=3` (and `epochs=10`): DINO's defaults (convnet-small, 2 global + 4 local crops, BN in the head, "
        "4096 prototypes, AdamW 5e-4, weight decay 0.04 -> 0.4, per-parameter clipping at 3), two intra-op threads, "
        "seed 0; then `python benchmarks/experiments/dino_multicrop_table.py --dino ROOT --mc MC --write`. "
        "Each run is "
        "compared with the random-init encoder of the same seed (its own initial weights) on the same 2,000 test "
        "images: change in points, 95% bootstrap interval over the test images, McNemar's exact p. Best kNN: the "
        "best cosine k of 5..21. Teacher entropy: of the teacher's centred, sharpened softmax at the last epoch "
        "(uniform over 4096 prototypes: 8.32; one prototype: 0). One seed.\n\n"
        "The recipe runs: `simxir pretrain --recipe recipes/pretrain/cpu-cifar10/dino-vit.yaml` (vit-tiny-p8-32) "
        "and `dino-resnet.yaml` (resnet18-cifar), one intra-op thread each, two runs side by side on the 2 cores "
        "(the recipes say their settings). " + verdict(dres) + " " + resnet_recipe_runs() + "\n\n"
        + head + "\n" + "\n".join(dlines) + "\n\n"
        "## Earlier settings of the recipes\n\n"
        "All but the last were stopped early because their kNN monitor (k=20, cosine, the monitor's 512 test "
        "images, 10,000-image bank) read at or below the random-init encoders' full-test kNN (k=17 / 21: ViT "
        + rv + ", ResNet-18 "
        + rr + "); that monitor is too noisy for the call (its 95% interval is about +-4 points), so each "
        "run's last checkpoint (student backbone) is also compared with its random-init encoder on all "
        "2,000 test images:\n\n" + "\n".join(alines) + "\n")
    mc_md = (
        "# Multi-crop against two views at about the same wall time (CIFAR-10 12k subset, CPU)\n\n"
        "`bash benchmarks/experiments/multicrop.sh byol|simxir|eval`, then "
        "`python benchmarks/experiments/dino_multicrop_table.py --dino ROOT --mc MC --write`. "
        "Each pair ran side by side (one thread each) so "
        "both arms saw the same machine; the multi-crop arm has fewer epochs so that its wall time matches "
        "(stated). BYOL: `recipes/pretrain/cpu-cifar10/byol.yaml`; SimXIR: `recipes/finetune/simxir-cifar.yaml` "
        "from a 60-epoch MoCo convnet-small (results/finetune/converged, seed 1). 2 local crops of 16 px, "
        "scale 0.05-0.4. One seed: the intervals are over test images, not over seeds.\n\n"
        "| method | two views | multi-crop | kNN cos k=11: two views -> multi-crop (change [95% CI], McNemar p) | "
        "linear top-1: two views -> multi-crop |\n|---|---|---|---|---|\n" + "\n".join(mlines) + "\n")
    print(dino_md)
    print(mc_md)
    if a.write:
        for folder, md, res in ((ROOT / "results" / "pretrain" / "dino", dino_md, dres),
                                (ROOT / "results" / "multicrop", mc_md, mres)):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "results.json").write_text(json.dumps(res, indent=1))
            (folder / "README.md").write_text(md)


if __name__ == "__main__":
    main()
