"""Pictures people would rather look at than numbers: coloured depth maps and trajectory plots."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


@lru_cache(maxsize=4)
def _lut(cmap: str) -> np.ndarray:
    """A (256, 3) uint8 lookup table of a matplotlib colormap."""
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)


def colorize(
    values: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "magma",
    invert: bool = False,
) -> np.ndarray:
    """Colour a (H, W) float map with `cmap`; NaN/inf become black.

    `vmin`/`vmax` default to the 2nd/98th percentiles of the finite values. `invert=True`
    colours high values dark (for depth: near is bright, as in disparity pictures).
    Returns (H, W, 3) uint8 RGB.
    """
    values = np.asarray(values, dtype=np.float32)
    finite = np.isfinite(values)
    out = np.zeros((*values.shape, 3), dtype=np.uint8)
    if not finite.any():
        return out
    lo = float(np.percentile(values[finite], 2)) if vmin is None else vmin
    hi = float(np.percentile(values[finite], 98)) if vmax is None else vmax
    scaled = (values - lo) / max(hi - lo, 1e-12)
    if invert:
        scaled = 1.0 - scaled
    idx = (np.clip(np.nan_to_num(scaled), 0.0, 1.0) * 255).astype(np.uint8)
    out[finite] = _lut(cmap)[idx[finite]]
    return out


def colorize_depth(
    depth_m: np.ndarray, min_depth: float | None = None, max_depth: float | None = None
) -> np.ndarray:
    """Depth picture in the usual style: near bright, far dark (magma on inverse depth)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(depth_m > 0, 1.0 / depth_m, np.nan)
    vmin = None if max_depth is None else 1.0 / max_depth
    vmax = None if min_depth is None else 1.0 / min_depth
    return colorize(inv, vmin, vmax, cmap="magma")


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write a (H, W, 3) or (H, W) uint8 array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(image)).save(path)
    return path


def plot_trajectories(
    path: str | Path, trajectories: dict[str, np.ndarray], title: str = "Trajectory"
) -> Path:
    """Top-down plot (x right, z forward of the first camera) of (N, 3) optical-frame positions."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    for name, xyz in trajectories.items():
        xyz = np.asarray(xyz)
        ax.plot(xyz[:, 0], xyz[:, 2], label=name, marker="." if len(xyz) < 60 else None)
    ax.set_xlabel("x (right) [m]")
    ax.set_ylabel("z (forward) [m]")
    ax.set_title(title)
    ax.axis("equal")
    ax.grid(True, alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
