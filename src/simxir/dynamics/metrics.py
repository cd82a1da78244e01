"""Metrics of reps ``f`` per group and per pair of groups, with stated cost and error.

Per group g (m points, d dims):
- ``diameter`` = max ||f(x) - f(y)||. Exact for m <= ``exact_max`` (chunked pairwise, O(m^2 d)),
  for d == 1 (max - min) and for d in {2, 3} (convex hull, then pairwise over hull vertices).
  Otherwise a *double sweep* (O(m d)): a = farthest from a member x0, b = farthest from a;
  ``diameter`` = ||f(a) - f(b)|| is a lower bound and ``diameter_upper`` = 2 min(R_x0, R_a, R_mean)
  an upper bound, with upper <= 2 lower (R_p = max distance from p). ``diameter_exact`` says which.
- ``intra_msd`` = mean over all ordered pairs (i = j included) of ||f(x) - f(y)||^2, exact in
  O(m d) as 2 mean ||f - mean f||^2 (= 2(mean ||f||^2 - ||mean f||^2)).
- ``mean_drift`` = ||mean_t f - mean_0 f|| (mean_0 taken at the first call; Conjecture 4.5).

Per pair (g, h) of the ``max_pair_groups`` largest groups:
- ``min_distance`` = min ||f(x) - f(y)||, x in g, y in h. Exact by pruning: an upper bound U from
  a random subsample; only points within U of the other group along the centroid direction can
  realise the minimum (a slab test, always valid); the survivors are compared exactly when
  |A||B| <= ``pair_budget`` or by KD-tree when d <= 3. Otherwise U is reported as the estimate
  with ``min_distance_lower`` = max(0, projection gap) and ``min_distance_exact`` = False.
- ``inter_msd`` = mean ||f(x) - f(y)||^2 over g x h, exact in O(1) from means and variances.

``subsample=S`` (for very large runs): diameter and min distance of groups above S points are
computed on a fixed random subset of S points (chosen once): the subset diameter is a lower bound
(upper bound 2 R_mean over all points), the subset min distance an upper bound (lower bound: the
projection gap over all points); both flagged not exact. Means, msd and drift stay exact, O(n d).
Costs per call: O(n d) for moments + per group O(S^2 d) / O(S log S) + per pair O(S d + s^2 d).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import ConvexHull, cKDTree

from simxir.errors import UserError

_CHUNK = 1 << 16


def _best_pair(a: torch.Tensor, b: torch.Tensor, largest: bool, budget: int = 1 << 22) -> float:
    """max (or min) ||a_i - b_j|| over all pairs: blocks of ||a||^2 + ||b||^2 - 2 a.b (matmul speed),
    then the winning pair's distance recomputed as ||a_i - b_j||. Exact up to the expanded form's
    rounding when choosing the pair (relative ~1e-7 in float32, ~1e-15 in float64)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("-inf") if largest else float("inf")
    ref = a[:1]
    a, b = a - ref, b - ref   # centre first: the expanded form's rounding scales with the norms
    sb = (b * b).sum(1)
    step = max(1, budget // max(1, b.shape[0]))
    best_v, best_ij = None, (0, 0)
    for s in range(0, a.shape[0], step):
        blk = a[s:s + step]
        d2 = (blk * blk).sum(1)[:, None] + sb[None, :] - 2.0 * (blk @ b.T)
        flat = int(d2.argmax() if largest else d2.argmin())
        v = float(d2.view(-1)[flat])
        if best_v is None or (v > best_v if largest else v < best_v):
            best_v, best_ij = v, (s + flat // b.shape[0], flat % b.shape[0])
    i, j = best_ij
    return float((a[i] - b[j]).norm())


def pairwise_max(a: torch.Tensor) -> float:
    """Diameter of a point set, all pairs (O(m^2 d) at matmul speed, bounded memory)."""
    return _best_pair(a, a, largest=True)


def pairwise_min(a: torch.Tensor, b: torch.Tensor) -> float:
    """Minimal distance between two point sets, all pairs."""
    return _best_pair(a, b, largest=False)


def _hull_diameter(a: torch.Tensor, exact_max: int) -> float | None:
    pts = a.detach().cpu().double().numpy()
    try:
        verts = ConvexHull(pts).vertices
    except Exception:  # noqa: BLE001 - qhull refuses degenerate (flat / collapsed) sets
        return None
    if len(verts) > exact_max:
        return None
    return pairwise_max(torch.from_numpy(pts[verts]))


def diameter_bounds(a: torch.Tensor, center: torch.Tensor | None = None) -> tuple[float, float]:
    """Double sweep: (lower, upper) with lower <= diameter <= upper <= 2 lower, O(m d)."""
    d0 = (a - a[0]).norm(dim=1)
    ia = int(d0.argmax())
    da = (a - a[ia]).norm(dim=1)
    lower = float(da.max())
    upper = 2 * min(float(d0.max()), lower)
    if center is not None:
        upper = min(upper, 2 * float((a - center).norm(dim=1).max()))
    return lower, max(upper, lower)


@dataclass
class GroupMetrics:
    """Callable ``metrics(f) -> dict`` for a fixed labelling (built once, reused every step)."""

    labels: np.ndarray
    exact_max: int = 4096
    pair_budget: int = 16_000_000
    max_pair_groups: int = 32
    sample: int = 256
    subsample: int | None = None
    seed: int = 0
    pairs: np.ndarray = field(init=False)
    _members: list[np.ndarray] = field(init=False, repr=False)
    _mean0: torch.Tensor | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        lab = np.asarray(self.labels, dtype=np.int64)
        if lab.ndim != 1 or (lab.size and lab.min() < 0):
            raise UserError("groups: expected non-negative integer labels of shape (n,)")
        self.labels = lab
        self.num_groups = int(lab.max()) + 1 if lab.size else 0
        order = np.argsort(lab, kind="stable")
        counts = np.bincount(lab, minlength=self.num_groups)
        self.counts = counts
        self._members = np.split(order, np.cumsum(counts)[:-1])
        big = np.argsort(-counts, kind="stable")[: self.max_pair_groups]
        big = np.sort(big)
        self.pairs = np.array([(g, h) for i, g in enumerate(big) for h in big[i + 1:]], dtype=np.int64).reshape(-1, 2)
        self._lab_t: dict[str, torch.Tensor] = {}
        self._rng = np.random.default_rng(self.seed)
        # fixed random subsets of large groups for the geometric metrics (subsample mode)
        self._geom = [m if self.subsample is None or len(m) <= self.subsample
                      else np.sort(self._rng.choice(m, self.subsample, replace=False)) for m in self._members]
        self._member_t: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def reset(self) -> None:
        """Forget the step-0 means (drift is measured from the next call)."""
        self._mean0 = None

    def _lab(self, device: torch.device) -> torch.Tensor:
        key = str(device)
        if key not in self._lab_t:
            self._lab_t[key] = torch.from_numpy(self.labels).to(device)
        return self._lab_t[key]

    def _moments(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Group means (G, d), mean squared distance to the mean (G,), max distance to it (G,)."""
        lab = self._lab(f.device)
        G, d = self.num_groups, f.shape[1]
        sums = torch.zeros(G, d, dtype=torch.float64, device=f.device)
        for s in range(0, f.shape[0], _CHUNK):   # per-chunk sums in f's dtype, accumulated in float64
            part = torch.zeros(G, d, dtype=f.dtype, device=f.device).index_add_(0, lab[s:s + _CHUNK], f[s:s + _CHUNK])
            sums += part.double()
        cnt = torch.from_numpy(self.counts).to(f.device, torch.float64).clamp_min(1)
        mean = sums / cnt[:, None]
        mean_f = mean.to(f.dtype)
        var = torch.zeros(G, dtype=torch.float64, device=f.device)
        rmax = torch.zeros(G, dtype=torch.float64, device=f.device)
        for s in range(0, f.shape[0], _CHUNK):
            lb = lab[s:s + _CHUNK]
            r2 = ((f[s:s + _CHUNK] - mean_f[lb]) ** 2).sum(1)
            var += torch.zeros(G, dtype=f.dtype, device=f.device).index_add_(0, lb, r2).double()
            rmax.scatter_reduce_(0, lb, r2.sqrt().double(), reduce="amax")
        return mean, var / cnt, rmax

    def _diameter(self, a: torch.Tensor, center: torch.Tensor, rmax: float) -> tuple[float, float, bool]:
        m, d = a.shape
        if m <= 1:
            return 0.0, 0.0, True
        if d == 1:
            v = float(a.max() - a.min())
            return v, v, True
        if m <= self.exact_max:
            v = pairwise_max(a)
            return v, v, True
        if d <= 3:
            v = _hull_diameter(a, self.exact_max)
            if v is not None:
                return v, v, True
        lo, hi = diameter_bounds(a, center.to(a.dtype))
        return lo, min(hi, 2 * rmax), False

    def _min_distance(self, a: torch.Tensor, b: torch.Tensor, ca: torch.Tensor,
                      cb: torch.Tensor) -> tuple[float, float, bool]:
        if a.shape[0] * b.shape[0] <= self.pair_budget:
            v = pairwise_min(a, b)
            return v, v, True
        u = (cb - ca).to(a.dtype)
        nu = float(u.norm())
        u = u / nu if nu > 0 else torch.zeros_like(u).index_fill_(0, torch.tensor([0], device=u.device), 1.0)
        pa, pb = a @ u, b @ u
        # upper bound U: the pair extreme along u, and a small random subsample (O(s^2 d))
        upper = float((a[int(pa.argmax())] - b[int(pb.argmin())]).norm())
        sa = a[torch.from_numpy(self._rng.choice(a.shape[0], min(self.sample, a.shape[0]), replace=False)).to(a.device)]
        sb = b[torch.from_numpy(self._rng.choice(b.shape[0], min(self.sample, b.shape[0]), replace=False)).to(b.device)]
        upper = min(upper, pairwise_min(sa, sb))
        lower = max(0.0, float(pb.min() - pa.max()))
        # slack covers the rounding of the projections (so the slab test never drops the winner)
        slack = 1e-5 * (upper + float(pa.abs().max()) + float(pb.abs().max()))
        ka = a[pa >= pb.min() - upper - slack]
        kb = b[pb <= pa.max() + upper + slack]
        if ka.shape[0] * kb.shape[0] <= self.pair_budget:
            v = min(upper, pairwise_min(ka, kb)) if ka.shape[0] and kb.shape[0] else upper
            return v, v, True
        if a.shape[1] <= 3:
            tree = cKDTree(kb.detach().cpu().double().numpy())
            dist, _ = tree.query(ka.detach().cpu().double().numpy(), k=1, workers=-1)
            v = min(upper, float(dist.min()))
            return v, v, True
        return upper, lower, False

    def __call__(self, f: torch.Tensor) -> dict[str, np.ndarray]:
        """All metrics of reps ``f`` (n, d). On CPU it runs single-threaded: it is many small
        ops, for which torch's thread-pool synchronisation costs more than it saves."""
        if f.device.type != "cpu":
            return self._compute(f)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._compute(f)
        finally:
            torch.set_num_threads(threads)

    def _compute(self, f: torch.Tensor) -> dict[str, np.ndarray]:
        if f.shape[0] != len(self.labels):
            raise UserError(f"groups: {len(self.labels)} labels for {f.shape[0]} reps")
        mean, var, rmax = self._moments(f)
        if self._mean0 is None:
            self._mean0 = mean.clone()
        G = self.num_groups
        diam = np.zeros(G)
        diam_up = np.zeros(G)
        diam_ex = np.zeros(G, dtype=bool)
        key = str(f.device)
        if key not in self._member_t:
            self._member_t[key] = [(torch.from_numpy(m).to(f.device), torch.from_numpy(q).to(f.device))
                                   for m, q in zip(self._members, self._geom)]
        members = self._member_t[key]
        rmax_np = rmax.cpu().numpy()
        for g in range(G):
            full, sub = members[g]
            diam[g], diam_up[g], diam_ex[g] = self._diameter(f[sub], mean[g], float(rmax_np[g]))
            if len(sub) < len(full):   # subset diameter: a lower bound; 2 R_mean over all points: upper
                diam_up[g] = max(diam[g], 2 * float(rmax_np[g]))
                diam_ex[g] = False
        P = len(self.pairs)
        mind = np.zeros(P)
        mind_lo = np.zeros(P)
        mind_ex = np.zeros(P, dtype=bool)
        for p, (g, h) in enumerate(self.pairs):
            (fg, sg), (fh, sh) = members[g], members[h]
            mind[p], mind_lo[p], mind_ex[p] = self._min_distance(f[sg], f[sh], mean[g], mean[h])
            if len(sg) < len(fg) or len(sh) < len(fh):   # subset minimum: an upper bound
                u = (mean[h] - mean[g]).to(f.dtype)
                u = u / u.norm().clamp_min(1e-30)
                gap = float((f[fh] @ u).min() - (f[fg] @ u).max())
                mind_lo[p], mind_ex[p] = min(mind[p], max(0.0, gap)), False
        var_np = var.cpu().numpy()
        mean_np = mean.cpu().numpy()
        gi, hi = self.pairs[:, 0], self.pairs[:, 1]
        inter = var_np[gi] + var_np[hi] + ((mean_np[gi] - mean_np[hi]) ** 2).sum(1)
        return {
            "diameter": diam,
            "diameter_upper": diam_up,
            "diameter_exact": diam_ex,
            "intra_msd": 2.0 * var_np,
            "mean_drift": (mean - self._mean0).norm(dim=1).cpu().numpy(),
            "min_distance": mind,
            "min_distance_lower": mind_lo,
            "min_distance_exact": mind_ex,
            "inter_msd": inter,
        }
