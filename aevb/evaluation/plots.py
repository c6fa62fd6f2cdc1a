"""Drawing primitives for a run's pictures: image grids, reconstructions, the 2-D latent
manifold's codes, first-layer filters, histograms and curves. Which pictures a run draws
is its family's choice (`aevb/families/`)."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from aevb.run import files


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


def save_filters(tiles: np.ndarray, workdir: str, name: str = files.FILTERS) -> str:
    """First-layer filters [N, h, w, C] in [0, 1] (an architecture's `filter_tiles`) as a
    10-column grid, enlarged so each tile is at least 56 pixels wide (a 3x3 conv filter
    as well as a 28x28 dense one)."""
    h = tiles.shape[1]
    return save_png(image_grid(tiles, 10, pad=2 if h >= 8 else 1),
                    os.path.join(workdir, name), scale=max(2, -(-56 // h)))


def latent_grid(num_per_side: int) -> np.ndarray:
    """Codes [n*n, 2] at Gaussian quantiles, as in figure 4 of Kingma & Welling (2014).

    The unit square's grid is mapped through the inverse CDF of N(0, 1), so equal areas of
    the picture hold equal prior mass. Row i, column j decodes z = (q_j, q_{n-1-i}).
    """
    from scipy import stats  # 0.9 s to import: only the 2-D latent manifold pays for it

    q = stats.norm.ppf(np.linspace(0.05, 0.95, num_per_side)).astype(np.float32)
    zx, zy = np.meshgrid(q, q[::-1])
    return np.stack([zx.ravel(), zy.ravel()], axis=-1)


def activation_histogram(mean_activations: np.ndarray, target: float | None, path: str) -> str:
    """Histogram of the coding units' mean activations, with the sparsity target marked."""
    import matplotlib  # only runs that draw it pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    ax.hist(np.asarray(mean_activations), bins=40, range=(0.0, 1.0), color="tab:blue")
    if target is not None:
        ax.axvline(target, color="tab:red", linestyle="--", label=f"target {target:g}")
        ax.legend()
    ax.set_xlabel("mean activation of a coding unit over the test set")
    ax.set_ylabel("units")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_grid(images: np.ndarray, image_shape: tuple[int, int, int], workdir: str, name: str,
              columns: int | None = None, pad: int = 2) -> str:
    """Images [N, D] (flattened, values in [0, 1]) as one grid picture `workdir/name`."""
    images = np.asarray(images).reshape(-1, *image_shape)
    columns = columns or max(1, int(np.sqrt(images.shape[0])))
    return save_png(image_grid(images, columns, pad), os.path.join(workdir, name))


def save_reconstructions(x: np.ndarray, recon: np.ndarray, image_shape: tuple[int, int, int],
                         workdir: str) -> str:
    """`reconstructions.png`: inputs x [N, D] in rows, each above its reconstruction [N, D]."""
    columns = max(1, int(np.sqrt(x.shape[0])))
    as_images = lambda a: np.asarray(a).reshape(-1, *image_shape)
    return save_png(image_grid(interleave_rows(as_images(x), as_images(recon), columns),
                               columns), files.path(workdir, files.RECONSTRUCTIONS))


def save_curves(curves: dict[str, list[tuple[int, float]]], xlabel: str, ylabel: str,
                path: str, marker: str = "o", ylim: tuple[float, float] | None = None,
                mark: tuple[float, str] | None = None) -> str:
    """Line plot of named curves [(x, y), ...] (e.g. test accuracy against steps); `ylim`
    the y range shown, `mark` (x, label) a dashed vertical line."""
    import matplotlib  # only runs that draw it pay for the import

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    for name, points in curves.items():
        if points:
            ax.plot(*zip(*points), marker=marker, label=name)
    if mark is not None:
        ax.axvline(mark[0], color="grey", linestyle="--", linewidth=1, label=mark[1])
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
