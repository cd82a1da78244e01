"""Vision Transformers with timm's parameter names and module structure, so that timm-format
weights (and DINO, MoCo v3, iBOT, DINOv2, MAE checkpoints once their prefixes are stripped) load as
they are: ``patch_embed.proj``, ``cls_token``, ``reg_token``, ``pos_embed``,
``blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``norm``.

- Sizes (timm's): tiny 192-d / 3 heads, small 384 / 6, base 768 / 12, large 1024 / 16; 12 blocks
  (24 for large), MLP ratio 4, LayerNorm eps 1e-6, qkv bias. ``vit-S`` is patch 16 at 224 px;
  ``vit-S-cifar`` is patch 4 at 32 px (64 tokens, runs on a CPU).
- ``heads`` overrides the size's number of attention heads (MoCo v3's ViT-S uses 12) and ``norm_eps``
  the LayerNorm eps (Hugging Face's ViTModel uses 1e-12); both are saved with the encoder, since no
  tensor shape shows them.
- Attention goes through ``torch.nn.functional.scaled_dot_product_attention`` (``attn="softmax"``
  writes it out, for the benchmark).
- Position embeddings hold the class token's slot first (timm's default), registers (DINOv2's
  ``reg_token``) follow the class token without one. Another image size resamples the patch grid's
  embeddings bicubically, by output size as timm does or by DINO's offset scale factor
  (``pos_offset``, set by the DINO/DINOv2 layouts); the stored size is used as is.
- ``representation``: ``cls`` (the final norm's class token, what DINO/MoCo v3 evaluate), ``mean``
  (mean of the patch tokens after the final norm) or ``cls+mean`` (both concatenated, as DINO's
  linear evaluation does with ``avgpool_patchtokens``); ``feature_dim`` follows.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from simxir.errors import UserError

#: size -> (embedding dim, depth, heads)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (192, 12, 3), "small": (384, 12, 6), "base": (768, 12, 12), "large": (1024, 24, 16),
}
Representation = Literal["cls", "mean", "cls+mean"]
REPRESENTATIONS: tuple[str, ...] = ("cls", "mean", "cls+mean")


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int, img_size: int) -> None:
        super().__init__()
        self.patch_size, self.img_size = patch, img_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)           # (N, tokens, dim)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, impl: str = "sdpa") -> None:
        super().__init__()
        if dim % heads:
            raise UserError(f"ViT: embedding dim {dim} is not divisible by {heads} heads")
        self.heads, self.impl = heads, impl
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.impl == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v)
        else:
            a = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
            o = a.softmax(dim=-1) @ v
        return self.proj(o.transpose(1, 2).reshape(n, t, d))


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth (DINO's / timm's ``drop_path``): in training, each sample's residual branch is
    dropped with probability ``drop_prob`` and kept ones scaled by 1 / (1 - drop_prob)."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = float(drop_prob)

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = (keep + torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)).floor_()
        return x.div(keep) * mask


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, qkv_bias: bool, layer_scale: float | None,
                 impl: str, eps: float = 1e-6, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias, impl)
        self.ls1 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x))))
        return x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))


def resample_pos_embed(pos: Tensor, grid: tuple[int, int], prefix: int, offset: float = 0.0,
                       antialias: bool = True) -> Tensor:
    """``pos`` (1, prefix + h*w, d) with its patch part resampled bicubically to ``grid``; returned
    unchanged when the grid already matches. ``offset`` 0: by output size, as timm's
    ``resample_abs_pos_embed`` (antialiased by default); ``offset`` 0.1: by the scale factor
    ``(grid + 0.1) / side``, as DINO's and DINOv2's ``interpolate_pos_encoding`` (not antialiased)."""
    n = pos.shape[1] - prefix
    side = int(round(math.sqrt(n)))
    if side * side != n:
        raise UserError(f"pos_embed: {n} patch positions do not form a square grid")
    if (side, side) == tuple(grid):
        return pos
    head, patches = pos[:, :prefix], pos[:, prefix:]
    d = pos.shape[-1]
    p = patches.reshape(1, side, side, d).permute(0, 3, 1, 2).float()
    if offset:
        scale = ((grid[0] + offset) / side, (grid[1] + offset) / side)
        p = F.interpolate(p, scale_factor=scale, mode="bicubic", antialias=antialias)
    else:
        p = F.interpolate(p, size=grid, mode="bicubic", antialias=antialias)
    if tuple(p.shape[-2:]) != tuple(grid):
        raise UserError(f"pos_embed: resampling {side}x{side} to {grid} gave {tuple(p.shape[-2:])}")
    p = p.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d).to(pos.dtype)
    return torch.cat([head, p], dim=1)


class VisionTransformer(nn.Module):
    """timm's ``VisionTransformer`` without its head; ``forward`` returns the representation."""

    def __init__(self, size: str = "small", patch: int = 16, img_size: int = 224, registers: int = 0,
                 layer_scale: float | None = None, representation: str = "cls", qkv_bias: bool = True,
                 mlp_ratio: float = 4.0, attn: str = "sdpa", arch: str | None = None, pos_offset: float = 0.0,
                 pos_antialias: bool = True, heads: int | None = None, norm_eps: float = 1e-6,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_path < 1.0:
            raise UserError(f"ViT drop_path: expected a rate in [0, 1), got {drop_path}")
        if size not in VIT_SIZES:
            raise UserError(f"ViT size {size!r}: expected one of {', '.join(VIT_SIZES)}")
        if representation not in REPRESENTATIONS:
            raise UserError(f"ViT representation {representation!r}: expected one of {', '.join(REPRESENTATIONS)}")
        if attn not in ("sdpa", "softmax"):
            raise UserError(f"ViT attention {attn!r}: expected 'sdpa' or 'softmax'")
        dim, depth, default_heads = VIT_SIZES[size]
        heads = heads or default_heads
        self.arch = arch or f"vit-{size}"
        self.size, self.heads = size, heads       # MoCo v3's ViT-S has 12 heads where timm's has 6
        self.embed_dim, self.num_registers, self.representation = dim, registers, representation
        self.pos_offset, self.pos_antialias = float(pos_offset), bool(pos_antialias)   # see resample_pos_embed
        self.feature_dim = 2 * dim if representation == "cls+mean" else dim
        self.patch_embed = PatchEmbed(patch, dim, img_size)
        grid = img_size // patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.reg_token = nn.Parameter(torch.zeros(1, registers, dim)) if registers else None
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.norm_eps = float(norm_eps)           # LayerNorm eps: timm's 1e-6, Hugging Face's ViT 1e-12
        rates = torch.linspace(0, drop_path, depth).tolist()   # DINO / timm: rising with depth
        self.blocks = nn.Sequential(*[Block(dim, heads, mlp_ratio, qkv_bias, layer_scale, attn, self.norm_eps,
                                            rates[i]) for i in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=self.norm_eps)
        self._init()

    def set_representation(self, representation: str) -> None:
        """Choose the feature again (a loaded encoder evaluated another way); ``feature_dim`` follows."""
        if representation not in REPRESENTATIONS:
            raise UserError(f"ViT representation {representation!r}: expected one of {', '.join(REPRESENTATIONS)}")
        self.representation = representation
        self.feature_dim = 2 * self.embed_dim if representation == "cls+mean" else self.embed_dim

    def _init(self) -> None:
        """timm's default init: pos_embed trunc-normal 0.02, tokens normal 1e-6, Linear
        trunc-normal 0.02 with zero bias."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        if self.reg_token is not None:
            nn.init.normal_(self.reg_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x: Tensor) -> Tensor:
        """All output tokens after the final norm: (N, 1 + registers + patches, dim)."""
        n, _, h, w = x.shape
        p = self.patch_embed.patch_size
        if h % p or w % p:
            raise UserError(f"ViT: image size {h}x{w} is not a multiple of the patch size {p}")
        t = self.patch_embed(x)
        pos = resample_pos_embed(self.pos_embed, (h // p, w // p), 1, self.pos_offset, self.pos_antialias)
        t = torch.cat([self.cls_token.expand(n, -1, -1) + pos[:, :1], t + pos[:, 1:]], dim=1)
        if self.reg_token is not None:
            t = torch.cat([t[:, :1], self.reg_token.expand(n, -1, -1), t[:, 1:]], dim=1)
        return self.norm(self.blocks(t))

    def forward(self, x: Tensor) -> Tensor:
        t = self.tokens(x)
        cls, patches = t[:, 0], t[:, 1 + self.num_registers:]
        if self.representation == "cls":
            return cls
        if self.representation == "mean":
            return patches.mean(dim=1)
        return torch.cat([cls, patches.mean(dim=1)], dim=1)


def parse_vit(name: str) -> dict | None:
    """``vit-SIZE`` (patch 16, 224 px), ``vit-SIZE-cifar`` (patch 4, 32 px) or ``vit-SIZE-pP-IMG``
    (e.g. DINOv2's ``vit-small-p14-518``) -> constructor kwargs; None for other names."""
    parts = name.split("-")
    if len(parts) < 2 or parts[0] != "vit" or parts[1] not in VIT_SIZES:
        return None
    if len(parts) == 2:
        patch, img = 16, 224
    elif parts[2:] == ["cifar"]:
        patch, img = 4, 32
    elif len(parts) == 4 and parts[2][:1] == "p" and parts[2][1:].isdigit() and parts[3].isdigit():
        patch, img = int(parts[2][1:]), int(parts[3])
    else:
        return None
    return {"size": parts[1], "patch": patch, "img_size": img, "arch": name}


def vit_options_from_state(sd: dict[str, Tensor], where: str = "checkpoint") -> dict:
    """Constructor kwargs of the ViT whose timm-named tensors are ``sd``: size from the embedding
    width and depth, patch from ``patch_embed.proj``, image size from ``pos_embed``'s grid,
    registers from ``reg_token``, layer scale from ``blocks.0.ls1.gamma``."""
    w = sd.get("patch_embed.proj.weight")
    if w is None or w.dim() != 4 or "pos_embed" not in sd:
        raise UserError(f"{where}: no patch_embed.proj.weight / pos_embed among the tensors; not a ViT")
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    size = next((s for s, (d, n, _) in VIT_SIZES.items() if (d, n) == (dim, depth)), None)
    if size is None:
        raise UserError(f"{where}: a ViT of width {dim} and depth {depth} is none of "
                        f"{', '.join(f'{s} ({d}, {n})' for s, (d, n, _) in VIT_SIZES.items())}")
    registers = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    grid = int(sd["pos_embed"].shape[1]) - 1
    side = int(round(math.sqrt(grid)))
    if side * side != grid:
        raise UserError(f"{where}: pos_embed has {grid} patch positions (+ the class token), not a square grid")
    arch = f"vit-{size}" if (patch, side * patch) == (16, 224) else \
        f"vit-{size}-cifar" if (patch, side * patch) == (4, 32) else f"vit-{size}-p{patch}-{side * patch}"
    return {"size": size, "patch": patch, "img_size": side * patch, "registers": registers,
            "layer_scale": 1.0 if "blocks.0.ls1.gamma" in sd else None, "arch": arch}
