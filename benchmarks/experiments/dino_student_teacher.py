"""A DINO run's student (its ``encoder.safetensors``) and teacher (its ``dino_checkpoint.pth``, the
backbone DINO's own eval_knn.py / eval_linear.py take) against the random-init encoder of its seed,
each pair on the same 2,000 test images (``simxir eval``, then ``simxir eval --compare``: change,
95% bootstrap interval, McNemar's p).

    python benchmarks/experiments/dino_student_teacher.py RUN [--write results/pretrain/dino/NAME] [--command CMD]

Prints the table; ``--write DIR`` also writes DIR/README.md and DIR/results.json. The evaluations are
kept beside the run (``RUN/../eval-*.json``), so a second call only compares.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dino_multicrop_table import compare, evaluated, fmt, pair_rows, random_evaluated, wall  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--write", type=Path, help="write README.md and results.json there (default: print only)")
    ap.add_argument("--command", default="", help="the command that trained RUN, for the README")
    a = ap.parse_args()
    run = a.run.resolve()
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    base = random_evaluated(run)
    res: dict = {"run": run.name, "config": {k: cfg.get(k) for k in ("backbone", "epochs", "batch_size", "augment",
                                                                       "multicrop", "optim", "schedule", "method")}}
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    res["epochs"] = [{k: r.get(k) for k in ("epoch", "loss", "teacher_entropy", "knn_top1", "feat_erank",
                                            "train_time_s")} for r in rows]
    res["training_minutes"] = (wall(run) or 0) / 60
    lines = []
    for part, encoder in (("student", run / "encoder.safetensors"), ("teacher", run / "dino_checkpoint.pth")):
        mine = evaluated(encoder, run.parent / f"eval-{run.name}-{part}.json")
        if mine is None or base is None:
            sys.exit(f"{run}: its {part} or the random-init encoder could not be evaluated")
        paired = pair_rows(compare(base, mine))
        res[part] = paired
        lines.append(f"| {part} | {fmt(paired['knn_cosine_k11'])} | {fmt(paired['knn_euclidean_k11'])} | "
                     f"{fmt(paired['linear_top1'])} |")
    rnd = res["student"]["knn_cosine_k11"]["before"]
    m = cfg["multicrop"]
    md = (f"# DINO {cfg['backbone']}: student and teacher against the random-init encoder\n\n"
          f"Run `{run.name}`: {cfg['epochs']} epochs, batch {cfg['batch_size']}, {m['global_crops']} global + "
          f"{m['local_crops']} local crops, augment `{cfg['augment']}`, optimizer {cfg['optim']['name']} lr "
          f"{cfg['optim']['lr']}, method options {cfg.get('method')}; {res['training_minutes']:.1f} training "
          f"minutes. Random-init encoder (seed {cfg['seed']}): cosine kNN k=11 {rnd:.2f}. Change against it on "
          "the same 2,000 test images [95% bootstrap interval], McNemar's p; one seed.\n\n"
          "| encoder | kNN cos k=11 | kNN euc k=11 | linear top-1 |\n|---|---|---|---|\n" + "\n".join(lines) + "\n\n"
          "Per epoch (loss, teacher entropy, kNN monitor on the monitor's test images): "
          + "; ".join(f"{r['epoch']}: {float(r['loss']):.3f}, {float(r['teacher_entropy']):.2f}"
                      + (f", {100 * float(r['knn_top1']):.1f}" if r.get("knn_top1") else "") for r in rows) + "\n\n"
          f"Reproduce: `{a.command or 'simxir pretrain ... --out RUN'}`, then "
          "`python benchmarks/experiments/dino_student_teacher.py RUN --write DIR`.\n")
    print(md)
    if a.write:
        a.write.mkdir(parents=True, exist_ok=True)
        (a.write / "README.md").write_text(md)
        (a.write / "results.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
