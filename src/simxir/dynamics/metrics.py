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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.spatial import ConvexHull, cKDTree

from simxir.errors import UserError

_CHUNK = 1 << 18


def _dist_chunks(a: torch.Tensor, b: torch.Tensor, budget: int = 1 << 22):
    """Yield exact distance blocks ||a_i - b_j|| (difference form, no matmul shortcut)."""
    step = max(1, budget // max(1, b.shape[0] * a.shape[1]))
    for s in range(0, a.shape[0], step):
        yield ((a[s:s + step, None, :] - b[None, :, :]) ** 2).sum(-1)


def pairwise_max(a: torch.Tensor) -> float:
    """Exact max ||a_i - a_j|| by chunks (O(m^2 d) time, bounded memory)."""
    return max(float(d2.max()) for d2 in _dist_chunks(a, a)) ** 0.5


def pairwise_min(a: torch.Tensor, b: torch.Tensor) -> float:
    """Exact min ||a_i - b_j|| by chunks."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return float("inf")
    return min(float(d2.min()) for d2 in _dist_chunks(a, b)) ** 0.5


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
    sample: int = 2048
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
        for s in range(0, f.shape[0], _CHUNK):
            sums.index_add_(0, lab[s:s + _CHUNK], f[s:s + _CHUNK].double())
        cnt = torch.from_numpy(self.counts).to(f.device, torch.float64).clamp_min(1)
        mean = sums / cnt[:, None]
        var = torch.zeros(G, dtype=torch.float64, device=f.device)
        rmax = torch.zeros(G, dtype=torch.float64, device=f.device)
        for s in range(0, f.shape[0], _CHUNK):
            lb = lab[s:s + _CHUNK]
            r2 = ((f[s:s + _CHUNK].double() - mean[lb]) ** 2).sum(1)
            var.index_add_(0, lb, r2)
            rmax.scatter_reduce_(0, lb, r2.sqrt(), reduce="amax")
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
        sa = a[torch.from_numpy(self._rng.choice(a.shape[0], min(self.sample, a.shape[0]), replace=False)).to(a.device)]
        sb = b[torch.from_numpy(self._rng.choice(b.shape[0], min(self.sample, b.shape[0]), replace=False)).to(b.device)]
        upper = pairwise_min(sa, sb)
        u = (cb - ca).to(a.dtype)
        nu = float(u.norm())
        u = u / nu if nu > 0 else torch.zeros_like(u).index_fill_(0, torch.tensor([0], device=u.device), 1.0)
        pa, pb = a @ u, b @ u
        lower = max(0.0, float(pb.min() - pa.max()))
        ka = a[pa >= pb.min() - upper]
        kb = b[pb <= pa.max() + upper]
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
        if f.shape[0] != len(self.labels):
            raise UserError(f"groups: {len(self.labels)} labels for {f.shape[0]} reps")
        mean, var, rmax = self._moments(f)
        if self._mean0 is None:
            self._mean0 = mean.clone()
        G = self.num_groups
        diam = np.zeros(G)
        diam_up = np.zeros(G)
        diam_ex = np.zeros(G, dtype=bool)
        members = [torch.from_numpy(m).to(f.device) for m in self._members]
        rmax_np = rmax.cpu().numpy()
        for g in range(G):
            diam[g], diam_up[g], diam_ex[g] = self._diameter(f[members[g]], mean[g], float(rmax_np[g]))
        P = len(self.pairs)
        mind = np.zeros(P)
        mind_lo = np.zeros(P)
        mind_ex = np.zeros(P, dtype=bool)
        for p, (g, h) in enumerate(self.pairs):
            mind[p], mind_lo[p], mind_ex[p] = self._min_distance(f[members[g]], f[members[h]], mean[g], mean[h])
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
