"""Transformer blocks of the hybrid generator: SegFormer-style efficient ViT and DiT-style EAdaLN-ViT.

Owns `modulate`, `EfficientSelfAttention` (keys/values spatially reduced by a strided conv),
`MixFFN` (a 3x3 depthwise conv between the two linears gives the tokens positional cues, so no
positional embedding is needed), the plain `ViTBlock` and the expression-conditioned
`EAdaLNViTBlock`. Tokens are (B, N, D) with N = hw * hw, hw the side of the square token grid.
Initialisation of the modulation lives in the generator's `initialize_weights()` (one place);
the block's own `reset_modulation()` is what it calls.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# DiT's LayerNorm epsilon for the affine-free norms under adaLN.
_ADALN_EPS = 1e-6


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Apply a per-sample affine modulation to tokens: x (B, N, D), shift/scale (B, D)."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def _tokens_to_grid(x: torch.Tensor, hw: int) -> torch.Tensor:
    """(B, N, D) tokens -> (B, D, hw, hw) feature map."""
    b, n, d = x.shape
    return x.transpose(1, 2).reshape(b, d, hw, n // hw)


def _grid_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) feature map -> (B, H*W, D) tokens."""
    return x.flatten(2).transpose(1, 2)


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention whose keys/values come from a grid reduced by `sr_ratio` (SegFormer)."""

    def __init__(self, dim: int, heads: int, sr_ratio: int = 1) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        if sr_ratio > 1:
            # Attention cost drops by sr_ratio^2: K/V see a coarser grid, Q keeps every token.
            self.sr = nn.Conv2d(dim, dim, kernel_size=sr_ratio, stride=sr_ratio)
            self.sr_norm = nn.LayerNorm(dim)
        # Feature check with a graceful fallback (nanoGPT style).
        self.flash = hasattr(F, "scaled_dot_product_attention")

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

    def forward(self, x: torch.Tensor, hw: int) -> torch.Tensor:
        b, n, d = x.shape
        q = self._split_heads(self.q(x))  # (B, H, N, Dh)
        kv_src = x
        if self.sr_ratio > 1:
            grid = self.sr(_tokens_to_grid(x, hw))  # (B, D, hw/sr, hw/sr)
            kv_src = self.sr_norm(_grid_to_tokens(grid))  # (B, M, D)
        k, v = self.kv(kv_src).chunk(2, dim=-1)  # (B, M, D) each
        k, v = self._split_heads(k), self._split_heads(v)  # (B, H, M, Dh)
        if self.flash:
            out = F.scaled_dot_product_attention(q, k, v)  # (B, H, N, Dh)
        else:
            attn = (q @ k.transpose(-2, -1)) * self.head_dim ** -0.5  # (B, H, N, M)
            out = attn.softmax(dim=-1) @ v  # (B, H, N, Dh)
        out = out.transpose(1, 2).reshape(b, n, d)  # (B, N, D)
        return self.proj(out)


class MixFFN(nn.Module):
    """SegFormer's Mix-FFN: Linear -> 3x3 depthwise conv on the token grid -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, hw: int) -> torch.Tensor:
        h = self.fc1(x)  # (B, N, Hd)
        h = _grid_to_tokens(self.dwconv(_tokens_to_grid(h, hw)))  # (B, N, Hd)
        return self.fc2(self.act(h))  # (B, N, D)


class ViTBlock(nn.Module):
    """Pre-norm transformer block: efficient self-attention then Mix-FFN, both residual."""

    def __init__(self, dim: int, heads: int, hidden: int, sr_ratio: int = 1) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MixFFN(dim, hidden)

    def forward(self, x: torch.Tensor, hw: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw)  # (B, N, D)
        return x + self.mlp(self.norm2(x), hw)  # (B, N, D)


class EAdaLNViTBlock(nn.Module):
    """ViT block whose norms are modulated by the expression code e: EAdaLN(x, e) = (1+σ(e))·LN(x) + μ(e).

    Residuals are gated by (1 + gate(e)) rather than DiT's bare gate: with the whole modulation
    Linear zero-initialised the block starts as an ordinary, expression-neutral ViT block, yet the
    gradient w.r.t. the modulation weights is nonzero (a bare zero gate would also zero the
    attention/MLP branches and their gradients).
    """

    def __init__(self, dim: int, heads: int, hidden: int, sr_ratio: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=_ADALN_EPS)
        self.attn = EfficientSelfAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=_ADALN_EPS)
        self.mlp = MixFFN(dim, hidden)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 6 * dim))

    def reset_modulation(self) -> None:
        """Zero the whole modulation Linear: expression-neutral at init (tested)."""
        nn.init.zeros_(self.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.adaLN_modulation[-1].bias)

    def forward(self, x: torch.Tensor, e: torch.Tensor, hw: int) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (
            self.adaLN_modulation(e).chunk(6, dim=-1)  # 6 x (B, D)
        )
        h = self.attn(modulate(self.norm1(x), shift_msa, scale_msa), hw)  # (B, N, D)
        x = x + (1 + gate_msa.unsqueeze(1)) * h
        h = self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp), hw)  # (B, N, D)
        return x + (1 + gate_mlp.unsqueeze(1)) * h
