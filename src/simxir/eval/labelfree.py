"""Did the representation change for the better, with no label at all? Label-free numbers of an
encoder on a fixed sample of its training images, and their paired change before -> after.

On l2-normalised features ``f`` of ``n`` images (un-augmented, the evaluation transform) and of two
augmented views ``a``, ``b`` of each (the run's training augmentation, a fixed seed):

* ``rankme``: RankMe (Garrido et al. 2023), ``exp(-sum_k p_k log p_k)``, ``p_k = s_k / ||s||_1 + 1e-7``
  with ``s`` the singular values of the un-normalised feature matrix (at most ``min(n, d)``);
* ``alignment``: Wang & Isola (2020), ``mean_i ||a_i - b_i||^2`` (alpha = 2; lower: views agree);
* ``uniformity``: Wang & Isola (2020), ``log mean_{i != j} exp(-t ||f_i - f_j||^2)``, t = 2
  (lower: spread more evenly over the sphere);
* ``within`` / ``between`` / ``ratio``: SimXIR's geometry on groups found without labels: k-means
  clusters of the *before* features (the same groups after), the mean over clusters of the mean
  squared distance of two members, the mean over cluster pairs of the mean squared distance between
  their members, and within / between (the neighbour-averaging theory predicts contraction of
  groups, within falling, and alienation of disjoint groups, the ratio falling).

Intervals over images: the grouped (delete-a-block) jackknife, the images split into ``blocks``
random blocks, each left out once; ``value +- t(G-1) * se``. (A bootstrap resample repeats images,
which lowers RankMe by itself: its percentile interval missed the full sample's value.) The change
before -> after leaves the same images out on both sides (paired).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import t as student_t
from torch import nn
from torch.utils.data import Dataset

from simxir.data.stream import TrainViews, count_unreadable, decode_eval, loader_workers, make_loader, sample_indices
from simxir.errors import UserError
from simxir.eval.features import _frozen_features, extract_features, model_device

RANKME_EPS = 1e-7
UNIFORMITY_T = 2.0
METRICS = ("rankme", "alignment", "uniformity", "within", "between", "ratio")
# which way the literature reads as "better" (the geometry ones: what SimXIR's theory predicts)
BETTER = {"rankme": "higher", "alignment": "lower", "uniformity": "lower", "within": "lower",
          "between": "higher", "ratio": "lower"}
# what each number is known for, and how it moved with kNN accuracy in our measurement
# (results/labelfree/README.md: 17 CIFAR-10 encoders, 16 before/after pairs, every pair a kNN gain)
MEANING = {
    "rankme": "known to track accuracy (Garrido et al. 2023, across hyperparameters of one method); on CIFAR-10 "
              "it rose with kNN over pretraining (12 of 12 pairs) but fell under SimXIR while kNN rose (4 of 4)",
    "alignment": "geometry (Wang & Isola 2020; a collapsed encoder aligns perfectly); on CIFAR-10 it fell with "
                 "every kNN gain measured (16 of 16 pairs), the closest label-free sign of one",
    "uniformity": "geometry (Wang & Isola 2020); on CIFAR-10 it rose (less uniform) with every kNN gain (16 of 16): "
                  "lower is not better there",
    "within": "geometry: SimXIR's contraction of groups; fell in 11 of 16 kNN gains on CIFAR-10",
    "between": "geometry: alienation of disjoint groups, which a global contraction lowers too; fell in 15 of "
               "16 kNN gains on CIFAR-10",
    "ratio": "geometry: groups tighter relative to their separation; rose in 11 of 16 kNN gains on CIFAR-10",
}


@dataclass
class LabelFreeConfig:
    """The label-free evaluation: ``images`` train images evenly spaced over the split, k-means with
    ``clusters`` groups on the before features, intervals at ``level`` from ``blocks`` jackknife blocks."""

    images: int = 1000
    clusters: int = 10
    blocks: int = 20
    level: float = 0.95
    seed: int = 0


# ---- the numbers, on weighted images (weight 0: left out by the jackknife) ----

def rankme(f: torch.Tensor, w: torch.Tensor | None = None) -> float:
    """RankMe of the rows of ``f`` (n, d), each row counted ``w`` times (default once)."""
    x = f.double() if w is None else f.double() * w.double().sqrt()[:, None]
    small = x @ x.T if x.shape[0] <= x.shape[1] else x.T @ x
    s = torch.linalg.eigvalsh(small).clamp_min(0).sqrt()
    total = s.sum()
    if not torch.isfinite(total) or total <= 0:
        return 1.0 if torch.isfinite(total) else math.nan
    p = s / total + RANKME_EPS
    return float(torch.exp(-(p * p.log()).sum()))


def alignment(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor | None = None) -> float:
    """Mean squared distance of the l2-normalised view pairs (rows of ``a`` and ``b``)."""
    d = (F.normalize(a.double(), dim=1) - F.normalize(b.double(), dim=1)).pow(2).sum(1)
    w = torch.ones_like(d) if w is None else w.double()
    return float((w * d).sum() / w.sum())


def uniformity(f: torch.Tensor, w: torch.Tensor | None = None, t: float = UNIFORMITY_T) -> float:
    """``log`` of the mean Gaussian potential ``exp(-t ||f_i - f_j||^2)`` over pairs of different
    images of the l2-normalised rows of ``f``."""
    z = F.normalize(f.double(), dim=1)
    w = torch.ones(z.shape[0], dtype=torch.float64) if w is None else w.double()
    sq = z.pow(2).sum(1)
    k = torch.exp(-t * (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0))
    num = w @ k @ w - (w * w * k.diagonal()).sum()
    den = w.sum() ** 2 - (w * w).sum()
    return float(torch.log(num / den)) if den > 0 else math.nan


def cluster_geometry(f: torch.Tensor, groups: np.ndarray, w: torch.Tensor | None = None) -> dict[str, float]:
    """``within``, ``between`` and ``ratio`` of the l2-normalised rows of ``f`` over ``groups``
    (one integer per row), in O(n d): with ``S_c = sum w_i z_i`` and ``q_i = ||z_i||^2``, the
    weighted sum of ``||z_i - z_j||^2`` over pairs of different images is
    ``2 (W sum w q - sum w^2 q) - 2 (||S||^2 - sum w^2 q)`` within a group (pairs of an image with
    itself left out) and
    ``W_c sum_c' w q + W_c' sum_c w q - 2 S_c . S_c'`` between two."""
    z = F.normalize(f.double(), dim=1)
    w = torch.ones(z.shape[0], dtype=torch.float64) if w is None else w.double()
    g = torch.as_tensor(np.asarray(groups), dtype=torch.int64)
    ids = torch.unique(g)
    q = z.pow(2).sum(1)
    onehot = (g[:, None] == ids[None, :]).double()            # (n, k)
    W = onehot.T @ w                                            # (k,)
    Wq = onehot.T @ (w * q)
    W2 = onehot.T @ (w * w)
    W2q = onehot.T @ (w * w * q)
    S = onehot.T @ (w[:, None] * z)                             # (k, d)
    pair_w = W * W - W2
    within_sum = 2 * (W * Wq - W2q) - 2 * (S.pow(2).sum(1) - W2q)
    ok = pair_w > 0
    within = float((within_sum[ok] / pair_w[ok]).mean()) if bool(ok.any()) else math.nan
    between_sum = W[:, None] * Wq[None, :] + Wq[:, None] * W[None, :] - 2 * S @ S.T
    present = W > 0
    upper = torch.triu(present[:, None] & present[None, :], diagonal=1)
    if bool(upper.any()):
        between = float((between_sum[upper] / (W[:, None] * W[None, :])[upper]).mean())
    else:
        between = math.nan
    return {"within": within, "between": between, "ratio": within / between if between > 0 else math.nan}


def kmeans_groups(f: torch.Tensor, k: int, seed: int = 0) -> np.ndarray:
    """k-means (scikit-learn, k-means++, 4 starts) on the l2-normalised rows of ``f``."""
    from sklearn.cluster import KMeans  # noqa: PLC0415 - start-up time

    k = max(1, min(int(k), f.shape[0] // 2))
    z = F.normalize(f.double(), dim=1).numpy()
    return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(z).astype(np.int64)


def metrics(feats: dict[str, torch.Tensor], groups: np.ndarray, w: torch.Tensor | None = None) -> dict[str, float]:
    """Every label-free number of ``feats`` (``features``, ``view1``, ``view2``) at weights ``w``."""
    out = {"rankme": rankme(feats["features"], w), "alignment": alignment(feats["view1"], feats["view2"], w),
           "uniformity": uniformity(feats["features"], w)}
    out.update(cluster_geometry(feats["features"], groups, w))
    return out


def _block_weights(n: int, blocks: int, seed: int) -> Iterator[torch.Tensor]:
    """Leave-one-block-out weights: the images split into ``blocks`` random blocks (seeded), each
    left out once."""
    block = np.empty(n, dtype=np.int64)
    block[np.random.default_rng(seed).permutation(n)] = np.arange(n) % blocks
    for b in range(blocks):
        yield torch.from_numpy((block != b).astype(np.float64))


def jackknife_interval(point: float, leave_out: list[float], level: float) -> list[float]:
    """``point`` +- t * the grouped jackknife standard error ``sqrt((G-1)/G sum (x_g - mean)^2)`` of
    the ``G`` leave-one-block-out values (Student's t with G - 1 degrees of freedom)."""
    v = np.asarray(leave_out, dtype=np.float64)
    if v.size < 2 or not np.isfinite(v).all() or not math.isfinite(point):
        return [math.nan, math.nan]
    g = v.size
    se = math.sqrt((g - 1) / g * float(((v - v.mean()) ** 2).sum()))
    t = float(student_t.ppf((1 + level) / 2, g - 1))
    return [point - t * se, point + t * se]


def summarize(feats: dict[str, torch.Tensor], groups: np.ndarray, cfg: LabelFreeConfig) -> dict[str, Any]:
    """``{metric: value}``, ``ci`` ``{metric: [low, high]}`` (grouped jackknife over images) and the
    sample's size."""
    n = feats["features"].shape[0]
    point = metrics(feats, groups)
    outs = [metrics(feats, groups, w) for w in _block_weights(n, min(cfg.blocks, n), cfg.seed)]
    ci = {m: jackknife_interval(point[m], [o[m] for o in outs], cfg.level) for m in METRICS}
    return {**point, "ci": ci, "images": n, "clusters": int(len(np.unique(groups))), "level": cfg.level}


def paired(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor], groups: np.ndarray,
           cfg: LabelFreeConfig) -> dict[str, Any]:
    """Per metric: ``before``, ``after``, ``change`` (after - before) with its paired interval (the
    same images left out on both sides), the verdict (``rose``/``fell`` when the interval excludes 0,
    else ``within noise``), which way the literature reads as better, and what the number is known
    for (and how it moved with kNN accuracy in our measurement)."""
    n = before["features"].shape[0]
    if after["features"].shape[0] != n:
        raise UserError(f"label-free change: before has {n} images, after {after['features'].shape[0]}")
    pb, pa = metrics(before, groups), metrics(after, groups)
    diffs: dict[str, list[float]] = {m: [] for m in METRICS}
    for w in _block_weights(n, min(cfg.blocks, n), cfg.seed):
        b, a = metrics(before, groups, w), metrics(after, groups, w)
        for m in METRICS:
            diffs[m].append(a[m] - b[m])
    out: dict[str, Any] = {}
    for m in METRICS:
        change = pa[m] - pb[m]
        lo, hi = jackknife_interval(change, diffs[m], cfg.level)
        verdict = "rose" if lo > 0 else ("fell" if hi < 0 else "within noise")
        out[m] = {"before": pb[m], "after": pa[m], "change": change, "ci_low": lo, "ci_high": hi,
                  "level": cfg.level, "better_if": BETTER[m], "verdict": verdict, "meaning": MEANING[m]}
    return out


# ---- the features an encoder gives a fixed sample of a dataset's train images ----

class _ViewCrops(Dataset):
    """Sample ``i`` of ``indices``: its streamed crops (one per view), keyed as the engine's epoch 0."""

    def __init__(self, views: TrainViews, indices: np.ndarray) -> None:
        self.views, self.indices = views, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Any:
        return self.views[(0, int(self.indices[i]))]


def sample_features(model: nn.Module, dataset: Any, augment: Any, cfg: LabelFreeConfig,
                    batch_size: int = 256) -> dict[str, torch.Tensor]:
    """``features`` (evaluation transform), ``view1`` and ``view2`` (the augmentation's two views,
    drawn from ``cfg.seed``, the same every call) of ``cfg.images`` train images evenly spaced over
    the split, in memory or streamed; float32 on the CPU, and ``indices`` of the images."""
    if cfg.images < 2:
        raise UserError(f"label_free.images: expected at least 2 images, got {cfg.images}")
    idx = sample_indices(len(dataset.train), cfg.images)
    dev = model_device(model)
    out: dict[str, torch.Tensor] = {"indices": torch.from_numpy(idx)}
    if getattr(dataset, "streamed", False):
        loader_cfg = dataset.loader
        x, _ = decode_eval(dataset.train, dataset.image_size, idx, workers=loader_workers(loader_cfg),
                           skip=loader_cfg.skip_unreadable, desc="label-free sample")
        out["features"] = extract_features(model, x, augment, batch_size, dev, desc="label-free features")
        crops = TrainViews(dataset.train, dataset.image_size, augment.specs, cfg.seed, loader_cfg.skip_unreadable)
        for v in (0, 1):
            loader = make_loader(_ViewCrops(crops, idx), batch_size=batch_size, workers=loader_workers(loader_cfg),
                                 persistent=False)
            batches = (c[v] for c in _checked(loader, loader_cfg.skip_unreadable))
            out[f"view{v + 1}"] = _view_features(model, batches, augment, v, cfg.seed, dev, len(loader), len(idx),
                                                 finish=True)
        return out
    images = dataset.train.images[torch.from_numpy(idx).to(dataset.train.images.device)]
    out["features"] = extract_features(model, images, augment, batch_size, dev, desc="label-free features")
    starts = range(0, len(idx), batch_size)
    for v in (0, 1):
        out[f"view{v + 1}"] = _view_features(model, (images[s:s + batch_size] for s in starts), augment, v,
                                             cfg.seed, dev, len(starts), len(idx), finish=False)
    return out


def _checked(loader: Iterable[Any], skip: bool) -> Iterator[Any]:
    for crops, _, bad in loader:
        count_unreadable(bad, skip, crops)
        yield crops


def _view_features(model: nn.Module, batches: Iterable[torch.Tensor], augment: Any, v: int, seed: int,
                   dev: torch.device, total: int, n: int, finish: bool) -> torch.Tensor:
    spec = augment.specs[v]
    augment.seed(seed * 2 + v, dev)
    view: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda c: augment.finish(c, spec)) if finish else (lambda x: augment.view(x, spec)))
    return _frozen_features(model, batches, view, dev, f"label-free view {v + 1}", total, n).float()


def evaluate_label_free(model: nn.Module, dataset: Any, augment: Any, cfg: LabelFreeConfig,
                        groups: np.ndarray | None = None, batch_size: int = 256
                        ) -> tuple[dict[str, Any], dict[str, torch.Tensor], np.ndarray]:
    """The label-free summary of ``model`` on ``dataset``'s train sample, its features and the groups
    (k-means of these features unless ``groups`` is given: pass the before groups for the after side)."""
    feats = sample_features(model, dataset, augment, cfg, batch_size)
    if groups is None:
        groups = kmeans_groups(feats["features"], cfg.clusters, cfg.seed)
    return summarize(feats, groups, cfg), feats, groups
