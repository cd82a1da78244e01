"""The prepared device check: each section in its own guard, one flushed JSON line per section as it
finishes (with its error, if any), so a run cut short still reports what it measured.

Sections (sized for one 10-minute run on one H100; ``--quick`` shrinks every one to toy sizes, and
``--device cpu --quick`` runs them all on a 2-core CPU: the test suite does, so the script cannot rot):

* ``preflight``: torch, CUDA, cuDNN, NCCL versions, the GPU, CPU count, /dev/shm, imports;
* ``syncs``: steady-state host-device synchronizations per step for every method and the bridging
  ImageNet recipe's method, counted from the difference of an N-step and a 2N-step epoch (set-up and
  epoch-end work cancel): on CUDA by ``torch.cuda.set_sync_debug_mode`` warnings, on the CPU by
  simxir's dispatch counter (benchmarks/bench_sync.py's, plus host-to-device copies);
* ``sync_probe``: one steady step under ``set_sync_debug_mode("error")``; the first sync's stack (CUDA);
* ``resnet``: ResNet-50 at 224 (quick: resnet18-cifar at 32), a bare loop in bf16 channels_last,
  bf16 NCHW, fp32 with TF32 off and on, and bf16 under ``torch.compile``: img/s, peak memory at
  two batch sizes, MFU where the GPU's peak is known; then the engine's img/s;
* ``step_split``: CUDA-event (CPU: wall-clock) time of augmentation, forward + backward, optimizer
  and the loss read-back in a training step;
* ``wide_losses``: 8192-wide Barlow Twins and VICReg losses forward + backward, TF32 off / on;
* ``loader``: the streamed loader's img/s at several worker counts on a generated JPEG folder, and
  the data-wait fraction inside an engine pass after warm-up;
* ``two_ranks``: two processes (gloo; on CUDA both on GPU 0) with SyncBatchNorm + DDP take the step
  one process takes on the global batch;
* ``knn``: kNN of 50k queries against 1.28M x 2048 synthetic features (quick: 1k x 64 against 20k),
  the blocks it chose and the peak memory.

Run on a lent machine (see benchmarks/README.md, "The device check"), from the checkout:

    python benchmarks/gpu_check.py --out "$OUT"         # JSON lines on stdout, gpu_check.jsonl + log in $OUT
    python benchmarks/gpu_check.py --device cpu --quick # every section at toy sizes (the test suite)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))            # the checkout's simxir, installed or not
sys.path.insert(1, str(ROOT / "tests" / "data"))  # stream_helpers: the generated JPEG folder
os.environ.setdefault("SIMXIR_QUIET", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

PEAK_TFLOPS = {"H100": {"bf16": 989.0, "tf32": 494.0}, "H200": {"bf16": 989.0, "tf32": 494.0},
               "A100": {"bf16": 312.0, "tf32": 156.0}}   # dense tensor-core peaks (vendor data sheets)
IMPORTS = ("numpy", "scipy", "PIL", "safetensors", "typer", "yaml", "tqdm", "matplotlib", "kornia", "sklearn")


class Check:
    """Runs sections, each guarded; prints and logs one JSON line per section."""

    def __init__(self, device: torch.device, quick: bool, out: Path | None) -> None:
        self.device, self.quick, self.out = device, quick, out
        self.tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
        self.lines: list[dict] = []
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        if self.out is not None:
            with (self.out / "gpu_check.log").open("a") as f:
                f.write(text + "\n")

    def run(self, name: str, fn: Callable[[Check], dict]) -> dict:
        self.log(f"[{time.strftime('%H:%M:%S')}] section {name}")
        t0 = time.perf_counter()
        try:
            line = {"section": name, "ok": True, **fn(self)}
        except Exception as exc:  # noqa: BLE001 - a failing section must not stop the others
            tb = traceback.format_exc()
            self.log(tb)
            line = {"section": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "traceback": tb.splitlines()[-12:]}
        line["seconds"] = round(time.perf_counter() - t0, 2)
        text = json.dumps(line, default=str)
        print(text, flush=True)
        if self.out is not None:
            with (self.out / "gpu_check.jsonl").open("a") as f:
                f.write(text + "\n")
        self.lines.append(line)
        return line

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)


# ------------------------------------------------------------------------------------------ helpers
def _npz(path: Path, n: int, size: int) -> str:
    if not path.exists():
        rng = np.random.default_rng(0)
        np.savez(path, x_train=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), y_train=rng.integers(0, 10, n),
                 x_test=rng.integers(0, 256, (64, size, size, 3), dtype=np.uint8), y_test=rng.integers(0, 10, 64))
    return f"npz:{path}"


def _train(c: Check, method: str, data: str, out: Path, **over: Any) -> dict:
    from simxir.train.assemble import build_config  # noqa: PLC0415
    from simxir.train.pretrain import run_pretrain  # noqa: PLC0415

    settings = {"backbone": "convnet-small" if c.quick else "resnet18-cifar", "epochs": 1,
                "batch_size": 16 if c.quick else 256, "tensorboard": "false", "log_every": 100000,
                "device": str(c.device), "monitor.every": 1000, "probe.enabled": "false", **over}
    if c.quick:
        settings.setdefault("threads", 1)
    cfg = build_config(method, None, [f"{k}={v}" for k, v in settings.items()], data)
    shutil.rmtree(out, ignore_errors=True)
    return run_pretrain(cfg, out)


@contextlib.contextmanager
def _count_syncs(c: Check):  # noqa: ANN202
    """Counts host-device synchronizations: CUDA's sync debug mode, or on the CPU the dispatch
    counter of bench_sync.py plus host-to-device copies (what a GPU would wait for)."""
    box = [0]
    if c.cuda:
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with warnings.catch_warnings(record=True) as w:
                warnings.simplefilter("always")
                yield box
        finally:
            torch.cuda.set_sync_debug_mode(0)
        box[0] = sum("synchroniz" in str(x.message) for x in w)
        return
    from torch.utils._python_dispatch import TorchDispatchMode  # noqa: PLC0415

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_sync import SYNC_OPS  # noqa: PLC0415

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            name = func.__name__.split(".")[0]
            if name in SYNC_OPS:
                # torch.optim's Adam(W) reads its step counter, a tensor it keeps on the host unless
                # capturable / fused: no device sync on a GPU, so not counted
                if not any("/torch/optim/" in f.filename for f in traceback.extract_stack(limit=12)):
                    box[0] += 1
            elif name in ("_to_copy", "copy_"):   # a host tensor copied to the device: a blocking copy there
                src = args[1] if name == "copy_" else args[0]
                dst_dev = (kwargs or {}).get("device") if name == "_to_copy" else args[0].device
                if isinstance(src, torch.Tensor) and src.device.type == "cpu" and dst_dev is not None and \
                        torch.device(dst_dev).type not in ("cpu", "meta") and not src.is_pinned():
                    box[0] += 1
            return func(*args, **(kwargs or {}))

    from simxir.augment.pipeline import Augment  # noqa: PLC0415

    init = Augment.__init__

    def gpu_path(self, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202 - the path a GPU takes (the CPU's reads masks)
        init(self, *a, **k)
        self.sync_free = True

    Augment.__init__ = gpu_path
    try:
        with Counter():
            yield box
    finally:
        Augment.__init__ = init


# ----------------------------------------------------------------------------------------- sections
def preflight(c: Check) -> dict:
    import importlib  # noqa: PLC0415

    out: dict[str, Any] = {"python": sys.version.split()[0], "torch": torch.__version__, "device": str(c.device),
                           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                           "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        out.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   gpus=torch.cuda.device_count(), nccl=".".join(map(str, torch.cuda.nccl.version())),
                   bf16=torch.cuda.is_bf16_supported())
    with contextlib.suppress(OSError):
        out["dev_shm_gib"] = round(shutil.disk_usage("/dev/shm").total / 2**30, 1)
    imports = {}
    for mod in (*IMPORTS, "simxir"):
        try:
            m = importlib.import_module(mod)
            imports[mod] = getattr(m, "__version__", "ok")
        except Exception as exc:  # noqa: BLE001
            imports[mod] = f"MISSING: {type(exc).__name__}: {exc}"
    out["imports"] = imports
    from simxir.data.stream import default_workers  # noqa: PLC0415

    out["loader_workers_default"] = default_workers()
    return out


def syncs(c: Check) -> dict:
    """Per method: (syncs over a 2N-step epoch - syncs over an N-step epoch) / N."""
    from simxir.methods import PRETRAIN_METHODS  # noqa: PLC0415

    n = 2 if c.quick else 8
    batch = 16 if c.quick else 128
    size = 16 if c.quick else 32
    per: dict[str, Any] = {}
    cases = [(m, m, {}) for m in sorted(PRETRAIN_METHODS)]
    cases.append(("bridging-imagenet-recipe", "bridge", {"method.proj_sizes": "[256,256,256]" if c.quick else
                                                         "[8192,8192,8192]", "method.directions": "sum",
                                                         "method.partitions": 1, "optim.name": "lars",
                                                         "augment": "byol-imagenet",
                                                         **({} if c.quick else {"backbone": "resnet50",
                                                                                "image_size": 224})}))
    for name, method, extra in cases:
        counts = []
        for steps in (n, 2 * n):
            data = _npz(c.tmp / f"s{size}_{batch * steps}.npz", batch * steps, size)
            with _count_syncs(c) as box:
                _train(c, method, data, c.tmp / f"sync-{name}-{steps}", batch_size=batch, **extra)
            counts.append(box[0])
        per[name] = {"per_step": (counts[1] - counts[0]) / n, "epoch_n": counts[0], "epoch_2n": counts[1]}
    return {"steps": [n, 2 * n], "batch": batch, "counter": "cuda sync debug mode" if c.cuda else
            "dispatch counter + host-to-device copies", "methods": per}


def sync_probe(c: Check) -> dict:
    if not c.cuda:
        return {"skipped": "needs CUDA (set_sync_debug_mode)"}
    from simxir.augment import build_augment  # noqa: PLC0415
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415
    from simxir.train import prepare_model, train_step  # noqa: PLC0415
    from simxir.train.config import OptimConfig  # noqa: PLC0415
    from simxir.train.optim import build_optimizer  # noqa: PLC0415

    method = build_method("simsiam", build_backbone("resnet18-cifar"))
    trainable, model = prepare_model(method, None, c.device, channels_last=True, find_unused_parameters=False)
    opt = build_optimizer(OptimConfig(name="sgd", lr=0.05), trainable.method, 0.05)
    aug = build_augment("simsiam-cifar", 32, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, device=c.device)
    for _ in range(3):
        v1, v2 = aug.views(x)
        train_step(model, opt, [([v1, v2], None)], 1, None)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        v1, v2 = aug.views(x)
        train_step(model, opt, [([v1, v2], None)], 1, None)
        first = None
    except RuntimeError:
        first = traceback.format_exc().splitlines()[-25:]
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return {"first_sync": first or "none in a steady step (augmentation + forward + backward + step)"}


def resnet(c: Check) -> dict:
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415
    from simxir.train.plan import set_tf32  # noqa: PLC0415

    arch, size = ("resnet18-cifar", 16) if c.quick else ("resnet50", 224)
    batches = (4, 8) if c.quick else (128, 256)
    steps = 1 if c.quick else 12
    warm = 1 if c.quick else 2
    peak = next((v for k, v in PEAK_TFLOPS.items() if c.cuda and k in torch.cuda.get_device_name(0)), None)
    from torch.utils.flop_counter import FlopCounterMode  # noqa: PLC0415

    def variant(amp: bool, cl: bool, tf32: bool, compiled: bool, batch: int) -> dict:
        torch.manual_seed(0)
        m = build_method("simsiam", build_backbone(arch)).to(c.device)
        if cl:
            m = m.to(memory_format=torch.channels_last)
        fwd = torch.compile(m) if compiled else m
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(batch, 3, size, size, device=c.device)
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        if c.cuda:
            set_tf32(tf32)
            torch.cuda.reset_peak_memory_stats(c.device)
        ctx = torch.autocast(c.device.type, dtype=torch.bfloat16, enabled=amp)

        def step() -> None:
            with ctx:
                loss = fwd(x, x)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for _ in range(warm):
            step()
        c.sync()
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        c.sync()
        dt = (time.perf_counter() - t0) / steps
        out = {"img_per_s": round(batch / dt, 1), "ms_per_step": round(1000 * dt, 2)}
        if c.cuda:
            out["peak_gib"] = round(torch.cuda.max_memory_allocated(c.device) / 2**30, 2)
        if peak and not compiled:
            with FlopCounterMode(display=False) as fc, ctx:
                fwd(x, x)["loss"]
            tflops = 3 * fc.get_total_flops() / dt / 1e12      # forward + backward ~ 3 x forward
            out["mfu"] = round(tflops / peak["bf16" if amp else "tf32" if tf32 else "bf16"], 3)
        return out

    out: dict[str, Any] = {"arch": arch, "size": size}
    rows = {"bf16_channels_last": (True, True, True, False), "bf16_nchw": (True, False, True, False),
            "fp32_tf32_off": (False, False, False, False), "fp32_tf32_on": (False, False, True, False),
            "bf16_channels_last_compiled": (True, True, True, True)}
    for b in batches:
        for name, (amp, cl, tf32, compiled) in rows.items():
            if compiled and (b != batches[0] or c.quick and not c.cuda):
                continue          # compile once, at the first batch; on a quick CPU run it is skipped for time
            try:
                out[f"{name}_b{b}"] = variant(amp, cl, tf32, compiled, b)
            except Exception as exc:  # noqa: BLE001 - one variant (e.g. compile) may fail alone
                out[f"{name}_b{b}"] = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    data = _npz(c.tmp / "engine.npz", batches[0] * (4 if c.quick else 24), 32)
    r = _train(c, "simsiam", data, c.tmp / "engine", backbone=arch, batch_size=batches[0],
               **({} if c.quick else {"augment": "byol-imagenet", "image_size": 224}))
    out["engine_img_per_s"] = round(r["epochs"][-1]["train_img_per_s"], 1)
    if c.cuda:
        set_tf32(True)
    return out


def step_split(c: Check) -> dict:
    from simxir.augment import build_augment  # noqa: PLC0415
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415

    arch, size, batch = ("convnet-small", 32, 16) if c.quick else ("resnet18-cifar", 32, 256)
    m = build_method("simsiam", build_backbone(arch)).to(c.device)
    opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)
    aug = build_augment("simsiam-cifar", size, (0.5,) * 3, (0.25,) * 3)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=c.device)
    parts = ("augment", "forward_backward", "optimizer", "loss_read")
    totals = dict.fromkeys(parts, 0.0)
    steps = 2 if c.quick else 20
    for i in range(steps + 2):
        marks: list = []

        def mark(marks: list = marks) -> None:
            if c.cuda:
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                marks.append(e)
            else:
                marks.append(time.perf_counter())

        mark()
        v1, v2 = aug.views(x)
        mark()
        loss = m([v1, v2])["loss"]
        loss.backward()
        mark()
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark()
        float(loss)
        mark()
        if i < 2:
            continue      # warm-up
        c.sync()
        for k, name in enumerate(parts):
            a, b = marks[k], marks[k + 1]
            totals[name] += a.elapsed_time(b) if c.cuda else 1000 * (b - a)
    return {"arch": arch, "batch": batch, "ms": {k: round(v / steps, 3) for k, v in totals.items()}}


def wide_losses(c: Check) -> dict:
    from simxir.methods.barlow_twins import barlow_twins_loss  # noqa: PLC0415
    from simxir.methods.vicreg import vicreg_loss  # noqa: PLC0415
    from simxir.train.plan import set_tf32  # noqa: PLC0415

    n, d = (32, 256) if c.quick else (256, 8192)
    out = {"n": n, "d": d}
    for tf32 in ((False, True) if c.cuda else (False,)):
        if c.cuda:
            set_tf32(tf32)
        for name, fn in (("barlow_twins", barlow_twins_loss), ("vicreg", vicreg_loss)):
            z1 = torch.randn(n, d, device=c.device, requires_grad=True)
            z2 = torch.randn(n, d, device=c.device, requires_grad=True)
            for _ in range(2):
                fn(z1, z2).backward()
            c.sync()
            t0 = time.perf_counter()
            reps = 2 if c.quick else 10
            for _ in range(reps):
                fn(z1, z2).backward()
            c.sync()
            out[f"{name}_tf32_{'on' if tf32 else 'off'}_ms"] = round(1000 * (time.perf_counter() - t0) / reps, 2)
    if c.cuda:
        set_tf32(True)
    return out


def loader(c: Check) -> dict:
    from stream_helpers import jpeg_folder  # noqa: PLC0415

    from simxir.data import LoaderConfig  # noqa: PLC0415
    from simxir.data.load import open_dataset  # noqa: PLC0415
    from simxir.data.stream import EvalImages, make_loader  # noqa: PLC0415

    n_img, (w_px, h_px) = (64, (64, 48)) if c.quick else (4096, (500, 375))
    root = jpeg_folder(c.tmp / "jpeg", n_img, 8, classes=4, w=w_px, h=h_px)
    workers = (0, 2) if c.quick else (4, 8, 15)
    size = 32 if c.quick else 224
    out: dict[str, Any] = {"images": n_img, "photo": f"{w_px}x{h_px}", "crop": size}
    ds = open_dataset(f"folder:{root}", size, LoaderConfig(stream="on"))
    for w in workers:     # decode + resize + centre crop, the loader alone
        it = make_loader(EvalImages(ds.train, size, False), batch_size=16 if c.quick else 128, workers=w,
                         prefetch=2, pin=c.cuda, persistent=False)
        t0, seen = time.perf_counter(), 0
        for batch in it:
            seen += int(batch[0].shape[0])
        out[f"workers_{w}_img_per_s"] = round(seen / (time.perf_counter() - t0), 1)
    r = _train(c, "simsiam", f"folder:{root}", c.tmp / "stream", image_size=size,
               batch_size=16 if c.quick else 128, **{"loader.stream": "on"},
               **({"backbone": "resnet18"} if not c.quick else {}))
    e = r["epochs"][-1]
    out["engine"] = {"img_per_s": round(e["train_img_per_s"], 1), "data_wait_frac": e.get("data_wait_frac"),
                     "steps": e["step"]}
    return out


def _two_rank_worker(rank: int, world: int, init: str, device: str, out: str) -> None:
    import torch.distributed as dist  # noqa: PLC0415

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    try:
        state = _one_step(torch.device(device), rank, world)
        if rank == 0:
            torch.save(state, out)
    finally:
        dist.destroy_process_group()


def _single_worker(_: int, device: str, out: str) -> None:
    torch.set_num_threads(1)
    torch.save(_one_step(torch.device(device)), out)


def _one_step(device: torch.device, rank: int = 0, world: int = 1) -> dict:
    """SimCLR (BatchNorm in its head, the embeddings gathered over processes) on convnet-small, one
    SGD step on this rank's share of a fixed global batch of 32 (a well-conditioned step: LARS's
    trust ratio on tiny batches amplifies float noise past any fair tolerance)."""
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415
    from simxir.train import prepare_model, train_step  # noqa: PLC0415
    from simxir.train.config import OptimConfig  # noqa: PLC0415
    from simxir.train.optim import build_optimizer  # noqa: PLC0415

    torch.manual_seed(0)
    method = build_method("simclr", build_backbone("convnet-small"))
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(32, 3, 16, 16, generator=g), torch.randn(32, 3, 16, 16, generator=g)
    trainable, model = prepare_model(method, None, device, channels_last=False, find_unused_parameters=False)
    opt = build_optimizer(OptimConfig(name="sgd", weight_decay=1e-4, momentum=0.9), trainable.method, 0.05)
    n = 32 // world
    sl = slice(rank * n, (rank + 1) * n)
    train_step(model, opt, [([v1[sl].to(device), v2[sl].to(device)], None)], 1, None)
    return {k: v.detach().cpu().clone() for k, v in trainable.state_dict().items()}


def two_ranks(c: Check) -> dict:
    import torch.multiprocessing as mp  # noqa: PLC0415

    out = c.tmp / "two.pt"
    mp.spawn(_two_rank_worker, args=(2, str(c.tmp / "init2"), str(c.device), str(out)), nprocs=2, join=True)
    two = torch.load(out, weights_only=True)
    # the reference in a fresh process too: this one's earlier sections changed its threads and state
    mp.spawn(_single_worker, args=(str(c.device), str(c.tmp / "one.pt")), nprocs=1, join=True)
    one = torch.load(c.tmp / "one.pt", weights_only=True)
    diff = max(float((two[k].float() - v.float()).abs().max()) for k, v in one.items() if v.is_floating_point())
    # float32 with other reduction orders (SyncBN, DDP's average): tests/train/test_train_ddp.py's tolerance
    equal = all(torch.allclose(two[k].float(), v.float(), rtol=1e-4, atol=1e-4) for k, v in one.items()
                if v.is_floating_point())
    return {"backend": "gloo", "device": str(c.device), "max_abs_diff": diff, "equal_rtol_1e-4": equal}


def knn(c: Check) -> dict:
    from simxir.eval.knn import block_elements, default_chunk, knn_predict  # noqa: PLC0415

    n_train, n_test, d = (20_000, 1_000, 64) if c.quick else (1_281_167, 50_000, 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    train = torch.randn(n_train, d, generator=g, dtype=torch.float32).to(c.device)
    test = torch.randn(n_test, d, generator=g, dtype=torch.float32).to(c.device)
    labels = torch.randint(0, 1000, (n_train,), generator=g).to(c.device)
    if c.cuda:
        torch.cuda.reset_peak_memory_stats(c.device)
    chunk = default_chunk(n_train, n_test, block_elements(c.device))
    c.sync()
    t0 = time.perf_counter()
    knn_predict(train, labels, test, ks=(5, 7, 11, 15, 17, 21), weighted_temperature=0.07, show_progress=False)
    c.sync()
    out = {"train": n_train, "test": n_test, "dim": d, "chunk_rows": chunk,
           "seconds": round(time.perf_counter() - t0, 2)}
    if c.cuda:
        out["peak_gib"] = round(torch.cuda.max_memory_allocated(c.device) / 2**30, 2)
    return out


SECTIONS: dict[str, Callable[[Check], dict]] = {
    "preflight": preflight, "syncs": syncs, "sync_probe": sync_probe, "resnet": resnet, "step_split": step_split,
    "wide_losses": wide_losses, "loader": loader, "two_ranks": two_ranks, "knn": knn}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda (default when there is one) or cpu")
    ap.add_argument("--quick", action="store_true", help="every section at toy sizes")
    ap.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.jsonl and gpu_check.log "
                                                                 "(default: $OUT when set)")
    ap.add_argument("--only", default="", help="comma-separated sections (default: all)")
    a = ap.parse_args()
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    c = Check(device, a.quick, Path(a.out) if a.out else None)
    names = [n for n in a.only.split(",") if n] or list(SECTIONS)
    bad = [n for n in names if n not in SECTIONS]
    if bad:
        sys.exit(f"--only: unknown section(s) {bad}; expected some of {list(SECTIONS)}")
    t0 = time.perf_counter()
    for name in names:
        c.run(name, SECTIONS[name])
    summary = {"section": "summary", "ok": all(line["ok"] for line in c.lines),
               "failed": [line["section"] for line in c.lines if not line["ok"]],
               "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(summary), flush=True)
    if c.out is not None:
        with (c.out / "gpu_check.jsonl").open("a") as f:
            f.write(json.dumps(summary) + "\n")
    shutil.rmtree(c.tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
