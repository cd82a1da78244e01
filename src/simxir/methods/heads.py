"""MLP builders shared by the methods' projectors and predictors."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


def mlp(dims: Sequence[int], *, hidden_bn: bool = True, last_bn: bool = False,
        last_bn_affine: bool = True, bias: bool = True) -> nn.Sequential:
    """Linear layers through ``dims`` (input first), ReLU between them.

    ``hidden_bn``: BatchNorm1d before each hidden ReLU; ``last_bn``: BatchNorm1d after the last
    Linear (``last_bn_affine=False`` makes it a pure standardization, as SimSiam's). A Linear
    followed by BatchNorm has no bias (the BN removes it); ``bias=False`` drops every bias
    (bias-free heads, e.g. the bridge method's projector).
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or any(d <= 0 for d in dims):
        raise ValueError(f"mlp: expected at least two positive sizes, got {dims}")
    layers: list[nn.Module] = []
    n = len(dims) - 1
    for i in range(n):
        last = i == n - 1
        followed_by_bn = (last and last_bn) or (not last and hidden_bn)
        layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias and not followed_by_bn))
        if not last:
            if hidden_bn:
                layers.append(nn.BatchNorm1d(dims[i + 1]))
            layers.append(nn.ReLU(inplace=True))
        elif last_bn:
            layers.append(nn.BatchNorm1d(dims[i + 1], affine=last_bn_affine))
    return nn.Sequential(*layers)
