"""Host-device synchronizations per training step, and the engine's speed, before vs after a change.

Two configurations, each measured for the working tree and for ``--before REV`` (checked out as a
temporary git worktree and imported from there), in interleaved rounds (best kept):

* ``small``: convnet-small, SimSiam, 32 px, batch 64: a short step, where per-step host work shows.
* ``lightly-simsiam``: lightly's SimSiam example (torchvision-style ResNet-18 with the ImageNet stem
  at 32 px, batch 256, projection 512-512-128, prediction 128-64-128), engine vs the bare
  forward + backward + SGD step of the same network on pre-augmented views (target >= 0.95).

Synchronizations are counted, not estimated: a ``TorchDispatchMode`` counts every op that makes the
host wait for a device value (``aten._local_scalar_dense`` behind ``.item()``/``float()``/``bool()``,
``nonzero``, ``masked_select``, ``unique``, ...) plus ``Tensor.tolist``/``numpy`` calls, over an epoch
of N and of 2N steps; the difference / N is the steady-state count per step (set-up and epoch-end
monitors cancel). The augmentation is counted on the path a GPU takes (``sync_free``; on the CPU
it reads masks on purpose, which is free there). This counter cannot see blocking host-to-device
copies (a Python number or pageable tensor sent to the GPU); ``benchmarks/gpu_check.py``'s
``syncs`` section adds them, covers every method and the bridging ImageNet recipe, and on a GPU
counts with ``torch.cuda.set_sync_debug_mode`` itself.

    python benchmarks/bench_sync.py --before 8e3ec30 --repeats 2 --out results/sync
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = {
    "small": {"backbone": "convnet-small", "method": {}, "batch": 64, "size": 32, "steps": 12},
    "lightly-simsiam": {"backbone": "resnet18", "batch": 256, "size": 32, "steps": 4,
                        "method": {"proj_hidden": 512, "proj_dim": 128, "pred_hidden": 64}},
}
SYNC_OPS = {"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim",
            "unique_consecutive", "repeat_interleave", "is_nonzero"}


# ----------------------------------------------------------------------------- child process
def _child(name: str, what: str) -> dict:
    """Runs with the simxir under test first on sys.path; prints one JSON object."""
    os.environ.setdefault("SIMXIR_QUIET", "1")
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from simxir.augment import build_augment
    from simxir.data.dataset import ImageDataset, Split
    from simxir.methods import build_method
    from simxir.models import build_backbone
    from simxir.train import TrainConfig, train
    from simxir.train.config import MonitorConfig, OptimConfig

    c = CONFIGS[name]
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)

    def dataset(n: int):
        g = torch.Generator().manual_seed(0)
        split = lambda k: Split(  # noqa: E731
            torch.randint(0, 256, (k, 3, c["size"], c["size"]), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (k,), generator=g))
        return ImageDataset("random", split(n), split(32), [str(i) for i in range(10)], mean, std)

    def method():
        torch.manual_seed(0)
        return build_method("simsiam", build_backbone(c["backbone"]), dict(c["method"]))

    def aug():
        a = build_augment("simsiam-cifar", c["size"], mean, std)
        if what == "syncs":
            a.sync_free = True   # count the path a GPU takes (the CPU's own path reads masks: free there)
        return a

    def engine(steps: int) -> dict:
        cfg = TrainConfig(epochs=1, batch_size=c["batch"], precision="fp32", channels_last=False,
                          device="cpu", tensorboard=False, log_every=10,
                          optim=OptimConfig(name="sgd", lr=0.01), monitor=MonitorConfig(eval_size=32))
        with tempfile.TemporaryDirectory() as d:
            return train(cfg, method(), dataset(c["batch"] * steps), aug(), d)

    if what == "syncs":
        class Count(TorchDispatchMode):
            n = 0

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func._schema.name.split("::")[-1] in SYNC_OPS:
                    Count.n += 1
                return func(*args, **(kwargs or {}))

        reads = {"n": 0}
        originals = {k: getattr(torch.Tensor, k) for k in ("tolist", "numpy")}

        def counted(k):
            def f(self, *a, **kw):
                reads["n"] += 1
                return originals[k](self, *a, **kw)
            return f

        counts = []
        for steps in (c["steps"], 2 * c["steps"]):
            Count.n, reads["n"] = 0, 0
            for k in originals:
                setattr(torch.Tensor, k, counted(k))
            try:
                with Count():
                    engine(steps)
            finally:
                for k, f in originals.items():
                    setattr(torch.Tensor, k, f)
            counts.append(Count.n + reads["n"])
        return {"syncs_per_step": (counts[1] - counts[0]) / c["steps"]}

    if what == "engine":
        res = engine(c["steps"] + 1)
        return {"img_per_s": float(res["epochs"][0]["train_img_per_s"])}

    # bare: forward + backward + SGD step on fixed pre-augmented views, same precision and layout
    m = method()
    x = dataset(c["batch"]).train.images
    v1, v2 = aug().views(x)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    def step():
        out = m([v1, v2])
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        m.on_train_step_end(0, 100)

    step()
    t = time.perf_counter()
    for _ in range(c["steps"]):
        step()
    return {"img_per_s": c["batch"] * c["steps"] / (time.perf_counter() - t)}


# ----------------------------------------------------------------------------- parent
def _run(src: Path, name: str, what: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), SIMXIR_QUIET="1")
    out = subprocess.run([sys.executable, __file__, "--child", name, what], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", default="", help="git revision to compare with (default: after only)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="", help="folder for bench_sync.json / bench_sync.md")
    ap.add_argument("--only", default="", help="measure one configuration (small or lightly-simsiam)")
    ap.add_argument("--steps", type=int, default=0, help="timed steps per measurement (default: the config's)")
    ap.add_argument("--skip-syncs", action="store_true", help="time only; do not count synchronizations")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps:
        os.environ["SIMXIR_BENCH_STEPS"] = str(args.steps)
    if args.child:
        if os.environ.get("SIMXIR_BENCH_STEPS"):
            CONFIGS[args.child[0]]["steps"] = int(os.environ["SIMXIR_BENCH_STEPS"])
        print(json.dumps(_child(*args.child)))
        return
    if args.only:
        for k in [k for k in CONFIGS if k != args.only]:
            del CONFIGS[k]
    if args.steps:
        for c in CONFIGS.values():
            c["steps"] = args.steps
    root = Path(__file__).resolve().parents[1]
    trees = {"after": root / "src"}
    tmp = None
    if args.before:
        tmp = tempfile.mkdtemp(prefix="simxir-before-")
        subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", tmp, args.before], check=True,
                       capture_output=True)
        trees = {"before": Path(tmp) / "src", **trees}
    res: dict = {name: {v: {} for v in trees} for name in CONFIGS}
    try:
        for name in CONFIGS:
            for v, src in trees.items():
                res[name][v]["syncs_per_step"] = (float("nan") if args.skip_syncs
                                                  else _run(src, name, "syncs")["syncs_per_step"])
            for _ in range(args.repeats):
                for v, src in trees.items():
                    for what in ("engine", "bare"):
                        r = _run(src, name, what)["img_per_s"]
                        key = f"{what}_img_per_s"
                        res[name][v][key] = round(max(res[name][v].get(key, 0.0), r), 2)
            for v in trees:
                res[name][v]["engine_over_bare"] = round(res[name][v]["engine_img_per_s"]
                                                         / res[name][v]["bare_img_per_s"], 3)
            if "before" in trees:
                res[name]["engine_after_over_before"] = round(res[name]["after"]["engine_img_per_s"]
                                                              / res[name]["before"]["engine_img_per_s"], 3)
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", tmp], check=False)
    import torch
    out = {"before": args.before or None, "repeats": args.repeats, "threads": torch.get_num_threads(),
           "precision": "fp32 NCHW (the engine's choice on this CPU)", "configs": CONFIGS, "results": res,
           "targets": {"small": "after not slower than before", "lightly-simsiam": "engine/bare >= 0.95"}}
    lines = ["| config | version | syncs/step | engine img/s | bare img/s | engine/bare |",
             "|---|---|---|---|---|---|"]
    for name in CONFIGS:
        for v in trees:
            r = res[name][v]
            lines.append(f"| {name} | {v} | {r['syncs_per_step']:g} | {r['engine_img_per_s']:.1f} | "
                         f"{r['bare_img_per_s']:.1f} | {r['engine_over_bare']:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        d = Path(args.out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "bench_sync.json").write_text(json.dumps(out, indent=2) + "\n")
        (d / "bench_sync.md").write_text(table + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
