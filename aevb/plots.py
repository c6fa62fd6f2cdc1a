"""PNG pictures of a run: image grids (reconstructions, samples) and the 2-D latent manifold."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import stats


def image_grid(images: np.ndarray, num_columns: int, pad: int = 2) -> np.ndarray:
    """Tiles images [N, H, W, C] with values in [0, 1] into one uint8 picture.

    Rows are filled left to right; the last row is padded with blank tiles. Returns
    [rows * (H + pad) + pad, cols * (W + pad) + pad] (grey) or [..., 3] (colour).
    """
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    cols = min(num_columns, n)
    rows = -(-n // cols)
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y:y + h, x:x + w] = img
    grid = (np.clip(grid, 0.0, 1.0) * 255).round().astype(np.uint8)
    return grid[..., 0] if c == 1 else grid


def interleave_rows(top: np.ndarray, bottom: np.ndarray, num_columns: int) -> np.ndarray:
    """Stacks two image sets [N, ...] so each row of `top` has its `bottom` row under it.

    Used for reconstruction grids: inputs above outputs, `num_columns` pairs per row pair.
    """
    n = top.shape[0]
    out = []
    for start in range(0, n, num_columns):
        out.append(top[start:start + num_columns])
        out.append(bottom[start:start + num_columns])
    return np.concatenate(out)


def save_png(picture: np.ndarray, path: str, scale: int = 2) -> str:
    """Writes a uint8 picture [H, W] or [H, W, 3], enlarged `scale` times; returns the path."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    img = Image.fromarray(picture)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return path


def latent_grid(num_per_side: int) -> np.ndarray:
    """Codes [n*n, 2] at Gaussian quantiles, as in figure 4 of Kingma & Welling (2014).

    The unit square's grid is mapped through the inverse CDF of N(0, 1), so equal areas of
    the picture hold equal prior mass. Row i, column j decodes z = (q_j, q_{n-1-i}).
    """
    q = stats.norm.ppf(np.linspace(0.05, 0.95, num_per_side)).astype(np.float32)
    zx, zy = np.meshgrid(q, q[::-1])
    return np.stack([zx.ravel(), zy.ravel()], axis=-1)
