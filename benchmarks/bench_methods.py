"""Benchmark: cost of each SSL method's heads + loss on top of its backbone, and of the EMA update.

1. One training step (forward of both views, backward, ``on_train_step_end``) per method with its
   default config, against the baseline measured in the same run: the backbone alone on both views
   with a trivial loss. The ratio is the method's overhead factor (1.0 = free heads/loss).
2. ``ema_update_`` (one fused ``torch._foreach_lerp_`` over all parameters) against the common
   per-parameter form ``t.data = tau * t.data + (1 - tau) * o.data`` on a
   ResNet-18 (CIFAR); ratio = per-parameter time / fused time, interleaved rounds as above.
3. The bridge loss (both directions, forward + backward) at the default width d = 2048: simxir's
   W C W^T = P^T P / n form against the literal W (Z^T Z / n) W^T of eq. 17 (d^3 per product).

Timings: one warm-up, then ``--repeats`` interleaved rounds; the machine may be shared, so read
the ratios. Prints a table and one JSON object (last line).

    python benchmarks/bench_methods.py                          # convnet-small, batch 32, < 2 min
    python benchmarks/bench_methods.py --backbone resnet18-cifar --batch 64
"""

from __future__ import annotations

import argparse

import torch

from simxir.methods import METHODS, build_method
from simxir.methods.base import ema_update_, make_target
from simxir.methods.bridge import bridge_loss
from simxir.models import build_backbone
from timing import add_out, measure, median, paired_ratio, report


def _step_fn(model, v1, v2, baseline: bool):
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        for p in params:
            p.grad = None
        if baseline:
            loss = model(v1).mean() + model(v2).mean()
        else:
            loss = model([v1, v2])["loss"]
        loss.backward()
        if not baseline:
            model.on_train_step_end(1, 100)

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="convnet-small")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--bridge-dim", type=int, default=2048)
    add_out(ap)
    args = ap.parse_args()
    torch.manual_seed(0)
    v1 = torch.randn(args.batch, 3, args.size, args.size)
    v2 = torch.randn(args.batch, 3, args.size, args.size)

    steps = {"backbone only (baseline)": _step_fn(build_backbone(args.backbone), v1, v2, True)}
    for name in args.methods.split(","):
        steps[name] = _step_fn(build_method(name, build_backbone(args.backbone)), v1, v2, False)
    times = measure(steps, args.repeats)
    base_times = times["backbone only (baseline)"]
    base = median(base_times)
    rows = [(name, median(ts), paired_ratio(ts, base_times)) for name, ts in times.items()]

    online = build_backbone("resnet18-cifar")
    target = make_target(online)

    @torch.no_grad()
    def loop() -> None:  # the common per-parameter form (solo-learn's MomentumUpdater)
        for t_p, o_p in zip(target.parameters(), online.parameters()):
            t_p.data = 0.99 * t_p.data + 0.01 * o_p.data

    def fused() -> None:
        ema_update_(target, online, 0.99)

    ema_times = measure({"loop": loop, "fused": fused}, max(args.repeats, 7))
    t_loop, t_foreach = median(ema_times["loop"]), median(ema_times["fused"])
    ema_ratio = paired_ratio(ema_times["loop"], ema_times["fused"])

    def bridge_literal(z1, z2, w):
        total = z1.new_zeros(())
        wtw = w.T @ w
        for a, b in ((z1, z2), (z2, z1)):
            inv = (a @ w.T - b).pow(2).mean()
            corr = a.T @ a / a.shape[0]
            total = total + 8 * inv + 8 * a.shape[1] * (wtw - w @ corr @ w.T).pow(2).mean()
        return total / 2

    g = torch.Generator().manual_seed(0)
    d, n = args.bridge_dim, args.batch
    zb1 = torch.randn(n, d, generator=g, requires_grad=True)
    zb2 = torch.randn(n, d, generator=g, requires_grad=True)
    wb = (torch.randn(d, d, generator=g) / d ** 0.5).requires_grad_()

    def run(fn):
        def go() -> None:
            loss = fn(zb1, zb2, wb)
            torch.autograd.grad(loss, (zb1, zb2, wb))
        return go

    fast, literal = run(lambda a, b, w: bridge_loss(a, b, w, c_inv=8.0, c_cov=8.0)), run(bridge_literal)
    torch.testing.assert_close(bridge_loss(zb1, zb2, wb, c_inv=8.0, c_cov=8.0), bridge_literal(zb1, zb2, wb),
                               rtol=1e-3, atol=1e-3)
    b_times = measure({"literal": literal, "fast": fast}, args.repeats)
    t_fast, t_lit = median(b_times["fast"]), median(b_times["literal"])
    bridge_ratio = paired_ratio(b_times["literal"], b_times["fast"])

    n_params = sum(p.numel() for p in online.parameters())
    lines = [f"training step, {args.backbone}, batch {args.batch} x 2 views, {args.size}px, "
             f"{torch.get_num_threads()} threads (median of {args.repeats} interleaved rounds)", "",
             "| method | seconds | x baseline (median of per-round ratios) |", "|---|---|---|"]
    lines += [f"| {name} | {t:.3f} | {r:.2f}x |" for name, t, r in rows]
    lines += ["", f"EMA update, resnet18-cifar ({n_params / 1e6:.1f}M params): foreach lerp {t_foreach * 1e3:.2f} ms, "
              f"per-parameter t = tau*t + (1-tau)*o {t_loop * 1e3:.2f} ms, speed-up {ema_ratio:.2f}x",
              f"bridge loss fwd+bwd, n={n}, d={d}: P^T P/n form {t_fast * 1e3:.1f} ms, literal W C W^T "
              f"{t_lit * 1e3:.1f} ms, speed-up {bridge_ratio:.2f}x"]
    report("bench_methods", {
        "backbone": args.backbone, "batch": args.batch, "size": args.size, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "baseline_seconds": base,
        "methods": {name: {"seconds": t, "ratio_to_backbone": r} for name, t, r in rows[1:]},
        "ema": {"foreach_ms": t_foreach * 1e3, "loop_ms": t_loop * 1e3, "speedup": ema_ratio},
        "bridge_loss": {"n": n, "d": d, "fast_ms": t_fast * 1e3, "literal_ms": t_lit * 1e3,
                        "speedup": bridge_ratio},
    }, "\n".join(lines), args.out)


if __name__ == "__main__":
    main()
