"""``precision: auto`` and ``channels_last: auto``: a choice that is never slower than fp32.

* CUDA: bf16 where the GPU has it natively (Ampere and newer), else fp16 with a GradScaler;
  channels_last on (what cuDNN's convolutions want under autocast).
* A CPU without AVX512-BF16/AMX: fp32, NCHW unless ``channels_last`` is set (bf16 there is
  emulated and several times slower; fp32 NCHW is the baseline the choice must not lose to).
* A CPU with bf16: a short measured trial, as ``cudnn.benchmark`` does for kernels (which of
  bf16 + channels_last and fp32 is faster depends on the model, not only on the device:
  docs/decisions.md). The trial times forward + backward of a copy of the method on one
  micro-batch (at most 64 images of the training size) for each candidate, the first step of each
  a warm-up, and keeps the fastest when it beats the fp32 baseline by ``MARGIN`` (else the
  baseline: near ties would make two runs of one command choose differently, and a run's seed
  would no longer fix its losses). A model whose trial step counts under ``MIN_TRIAL_GFLOP``
  forward GFLOP (toy sizes, the tests, digits; convnet-small at 32 px counts 5) keeps fp32 without
  a trial, for the same reason: counted, not timed, so that the rule cannot tip; under torchrun the
  times are summed over processes so that every rank makes the same choice. The model, its
  buffers and torch's RNG are left as they were.
* ``--resume``: the choice the checkpoint records (on the same kind of device), not a new trial: a
  trial's timings can tip the other way in another process, and a resumed run must continue the
  arithmetic it was started with.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from simxir import distributed
from simxir.device import bf16_supported
from simxir.train.plan import Plan

Candidate = tuple[torch.dtype | None, bool]   # (autocast dtype or None for fp32, channels_last)
TRIAL_IMAGES = 64
TRIAL_STEPS = 2
MARGIN = 0.2   # another candidate is kept only when it is at least this much faster than fp32
MIN_TRIAL_GFLOP = 2.0   # a trial step's forward below this (toy sizes, tests, digits) keeps fp32


def _name(c: Candidate) -> str:
    return ("fp32" if c[0] is None else str(c[0]).split(".")[-1]) + ("+channels_last" if c[1] else "")


def candidates(plan: Plan) -> list[Candidate]:
    """What the trial compares: bf16 + channels_last and fp32, in the layouts ``channels_last``
    allows (``auto``: NCHW for fp32, the layout its baseline uses; else the set one)."""
    cl = plan.cfg.channels_last
    if cl == "auto":
        return [(torch.bfloat16, True), (None, False), (None, True)]
    return [(torch.bfloat16, bool(cl)), (None, bool(cl))]


def _sizes(sizes: int | Sequence[int]) -> list[int]:
    return [sizes, sizes] if isinstance(sizes, int) else list(sizes)


def time_steps(method: nn.Module, c: Candidate, device: torch.device, sizes: int | Sequence[int], n: int) -> float:
    """Seconds per forward + backward of a copy of ``method`` on random (n, 3, s, s) views, one per
    side in ``sizes`` (an int: two views of that side), in candidate ``c`` (the best of
    ``TRIAL_STEPS`` after one warm-up step)."""
    m = copy.deepcopy(method).to(device).train()
    g = torch.Generator(device=device).manual_seed(0)
    views = [torch.randn(n, 3, s, s, generator=g, device=device) for s in _sizes(sizes)]
    if c[1]:
        m = m.to(memory_format=torch.channels_last)
        views = [v.contiguous(memory_format=torch.channels_last) for v in views]
    best = float("inf")
    for i in range(1 + TRIAL_STEPS):
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=c[0] or torch.float32, enabled=c[0] is not None):
            loss = m(views)["loss"]
        loss.float().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - t)
    return best


_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def precision_record(plan: Plan) -> dict[str, object]:
    """What a checkpoint keeps of the choice: ``{"amp": "bfloat16" | "float16" | None,
    "channels_last": bool, "device": "cpu" | "cuda" | ..., "tf32": bool}``."""
    amp = None if plan.amp_dtype is None else str(plan.amp_dtype).split(".")[-1]
    return {"amp": amp, "channels_last": bool(plan.channels_last), "device": plan.device.type,
            "tf32": bool(plan.tf32)}


def step_gflops(method: nn.Module, device: torch.device, sizes: int | Sequence[int], n: int) -> float:
    """Forward GFLOP of ``method`` on the views of ``n`` images (sides ``sizes``; counted on 2, scaled)."""
    m = copy.deepcopy(method).to(device).train()
    views = [torch.zeros(2, 3, s, s, device=device) for s in _sizes(sizes)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        m(views)
    return counter.get_total_flops() * n / 2 / 1e9


def choose_precision(plan: Plan, method: nn.Module, image_size: int | Sequence[int],
                     saved: dict | None = None) -> Plan:
    """``plan`` with ``amp_dtype``/``channels_last`` decided and ``precision_reason`` set; ``saved``:
    the resumed checkpoint's :func:`precision_record`, kept under ``precision: auto`` on the same
    kind of device (a set ``channels_last`` still wins)."""
    cfg, device = plan.cfg, plan.device
    if cfg.precision != "auto":
        return dataclasses.replace(plan, precision_reason=f"precision={cfg.precision} as set")
    if saved and saved.get("device") == device.type and saved.get("amp") in (None, *_DTYPES):
        amp = _DTYPES.get(saved["amp"])
        cl = bool(saved.get("channels_last")) if cfg.channels_last == "auto" else bool(cfg.channels_last)
        return dataclasses.replace(plan, amp_dtype=amp, channels_last=cl,
                                   precision_reason=f"auto: {_name((amp, cl))} as the resumed checkpoint "
                                                    f"was trained")
    if device.type == "cuda":
        why = ("native bf16" if plan.amp_dtype == torch.bfloat16
               else "no native bf16 on this GPU: fp16 with GradScaler")
        return dataclasses.replace(plan, precision_reason=f"auto: {why}")
    if device.type != "cpu" or not bf16_supported(device):
        # fp32 NCHW is the baseline itself; channels_last only when set
        cl = plan.channels_last if cfg.channels_last != "auto" else False
        return dataclasses.replace(plan, amp_dtype=None, channels_last=cl,
                                   precision_reason="auto: fp32 (no native bf16 on this CPU)")
    cands = candidates(plan)
    base = cands.index((None, bool(cfg.channels_last) if cfg.channels_last != "auto" else False))
    order = [base] + [i for i in range(len(cands)) if i != base]
    world = max(1, distributed.world_size())
    n = min(plan.micro, TRIAL_IMAGES)

    def timed(idx: list[int]) -> torch.Tensor:   # per step, summed over ranks: one choice on every rank
        t = torch.tensor([time_steps(method, cands[i], device, image_size, n) for i in idx], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(t)
        return t / world

    rng = torch.get_rng_state()
    try:
        gflop = step_gflops(method, device, image_size, n)
        if gflop < MIN_TRIAL_GFLOP:
            return dataclasses.replace(plan, amp_dtype=None, channels_last=cands[base][1],
                                       precision_reason=f"auto: {_name(cands[base])}, {gflop:.2g} GFLOP per "
                                                        f"trial step is too small a model for a trial")
        measured = timed(order).tolist()
    finally:
        torch.set_rng_state(rng)
    times = dict(zip(order, measured, strict=True))
    base_t = times[base]
    k = min(times, key=times.__getitem__)
    if times[k] > (1.0 - MARGIN) * base_t:
        k = base   # a near tie is timing noise: the baseline, so that runs of one command agree
    shown = ", ".join(f"{_name(cands[i])} {times[i] * 1e3:.0f} ms" for i in range(len(cands)))
    return dataclasses.replace(plan, amp_dtype=cands[k][0], channels_last=cands[k][1],
                               precision_reason=f"auto: measured per step {shown}; kept {_name(cands[k])}")
