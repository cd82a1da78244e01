"""The prepared device check (run by benchmarks/gpu_check.sh): one JSON line, under 6 minutes on one GPU.

* every method: one short pretraining epoch on a generated CIFAR-size npz (bf16 where native,
  channels_last), img/s, and host-device synchronizations per step counted by
  ``torch.cuda.set_sync_debug_mode`` (warnings over steady-state steps);
* SimXIR fine-tune + eval (kNN and the fast linear probe) of a just-pretrained encoder;
* a single-process NCCL process group (as torchrun --nproc-per-node 1 makes) with SyncBatchNorm + DDP;
* the streamed loader's img/s on a generated JPEG folder (ImageNet-size photos, 224 px crops);
* ResNet-50 224 px training img/s at batch 128 (random uint8 data on the device).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("SIMXIR_QUIET", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))


def _npz(path: Path, n: int = 4096, size: int = 32) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, n), x_test=rng.integers(0, 256, (512, size, size, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, 512))
    return f"npz:{path}"


def _pretrain(method: str, data: str, out: Path, **over) -> dict:
    from simxir.train.assemble import build_config  # noqa: PLC0415
    from simxir.train.pretrain import run_pretrain  # noqa: PLC0415

    settings = {"backbone": "resnet18-cifar", "epochs": 1, "batch_size": 256, "tensorboard": "false",
                "log_every": 1000, **over}
    cfg = build_config(method, None, [f"{k}={v}" for k, v in settings.items()], data)
    return run_pretrain(cfg, out)


def _syncs(fn) -> tuple[object, int]:
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            r = fn()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    return r, sum("synchroniz" in str(x.message) for x in w)


def main() -> None:
    import argparse  # noqa: PLC0415

    from simxir.methods import PRETRAIN_METHODS  # noqa: PLC0415

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="folder for gpu_check.json (default: print only)")
    args = ap.parse_args()

    t0 = time.time()
    out: dict = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    tmp = Path(tempfile.mkdtemp())
    data = _npz(tmp / "c.npz")
    out["methods"] = {}
    for m in sorted(PRETRAIN_METHODS):
        (r, n_sync) = _syncs(lambda m=m: _pretrain(m, data, tmp / m))
        e = r["epochs"][-1]
        steps = e["step"]
        out["methods"][m] = {"img_per_s": round(e["train_img_per_s"], 1), "loss": e["loss"],
                             "sync_warnings_per_step": round(n_sync / max(1, steps), 2)}
    from simxir.eval.linear import LinearProbeConfig  # noqa: PLC0415
    from simxir.finetune.run import build_finetune_config, run_finetune  # noqa: PLC0415
    from simxir.protocol import EvalProtocol  # noqa: PLC0415

    t = time.time()
    cfg = build_finetune_config(None, ["epochs=1", "batch_size=256", "tensorboard=false"], data=data)
    ft = run_finetune(cfg, tmp / "simsiam" / "encoder.safetensors", tmp / "ft",
                      protocol=EvalProtocol(linear_cfg=LinearProbeConfig(epochs=10)))
    out["finetune"] = {"seconds": round(time.time() - t, 1), "knn5_before": ft["before"]["knn"]["cosine"]["5"],
                       "knn5_after": ft["after"]["knn"]["cosine"]["5"]}
    import torch.distributed as dist  # noqa: PLC0415

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        r = _pretrain("simsiam", data, tmp / "ddp")
        out["nccl_syncbn"] = {"img_per_s": round(r["epochs"][-1]["train_img_per_s"], 1),
                              "loss": r["epochs"][-1]["loss"]}
    finally:
        dist.destroy_process_group()
    from stream_helpers import jpeg_folder  # noqa: PLC0415

    root = jpeg_folder(tmp / "jpeg", 2048, 64, classes=4)
    r = _pretrain("simsiam", f"folder:{root}", tmp / "stream", backbone="resnet18", image_size=224,
                  **{"loader.stream": "on", "batch_size": 128})
    e = r["epochs"][-1]
    out["streamed"] = {"img_per_s": round(e["train_img_per_s"], 1), "data_wait_frac": round(e["data_wait_frac"], 3),
                       "workers": os.cpu_count()}
    from simxir.augment import build_augment  # noqa: PLC0415
    from simxir.data.dataset import ImageDataset, Split  # noqa: PLC0415
    from simxir.methods import build_method  # noqa: PLC0415
    from simxir.models import build_backbone  # noqa: PLC0415
    from simxir.train import TrainConfig, train  # noqa: PLC0415

    g = torch.Generator().manual_seed(0)
    split = lambda k: Split(torch.randint(0, 256, (k, 3, 224, 224), dtype=torch.uint8, generator=g),  # noqa: E731
                            torch.randint(0, 10, (k,), generator=g))
    ds = ImageDataset("random224", split(128 * 21), split(64), [str(i) for i in range(10)])
    aug = build_augment("byol-imagenet", 224, ds.mean, ds.std)
    cfg = TrainConfig(epochs=1, batch_size=128, tensorboard=False, log_every=1000)
    r = train(cfg, build_method("simsiam", build_backbone("resnet50")), ds, aug, tmp / "r50")
    out["resnet50_224_b128"] = {"img_per_s": round(r["epochs"][-1]["train_img_per_s"], 1)}
    out["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(out))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
