"""The multi-view sweep's semi-global cost aggregation as one Triton kernel, for CUDA.

`multiview._scanline_steps` steps along the scanlines in PyTorch: about eight operations a path
step, 2,205 for a 64x208 sweep, each a kernel launch on a GPU. Here each program runs whole
paths (a few of one direction) from end to end, all four directions at once: one launch.
The arithmetic is the reference's, operation for operation.

Triton comes with PyTorch's CUDA builds; without it the reference runs. The tests run this
kernel on the CPU under Triton's interpreter (``TRITON_INTERPRET=1``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_PATHS_PER_PROGRAM = 4


@triton.jit
def _scanlines(
    cost_ptr,
    grey_ptr,
    out_ptr,
    rows,
    cols,
    bins,
    step_penalty,
    jump_extra,
    edge_contrast,
    PATHS: tl.constexpr,
    BINS: tl.constexpr,
):
    """Program (i, direction, image): paths i * PATHS .. of one direction (0 left to right, 1
    right to left, 2 top to bottom, 3 bottom to top) through one (bins, rows, cols) cost
    volume; writes each path's costs to out[direction, image]."""
    direction = tl.program_id(1)
    image = tl.program_id(2)
    along_rows = direction < 2
    reverse = direction % 2 == 1
    length = tl.where(along_rows, cols, rows)
    path_stride = tl.where(along_rows, cols, 1)
    step_stride = tl.where(along_rows, 1, cols)
    plane = rows * cols

    paths = tl.program_id(0) * PATHS + tl.arange(0, PATHS)
    live = paths < tl.where(along_rows, rows, cols)
    paths = tl.where(live, paths, 0)  # lanes past the last path redo the first, unstored
    d = tl.arange(0, BINS)
    in_bins = (d < bins)[None, :]
    mask = live[:, None] & in_bins
    cost_at = image * bins * plane + d[None, :] * plane + paths[:, None] * path_stride
    out_at = cost_at + direction * tl.num_programs(2) * bins * plane
    grey_at = image * plane + paths * path_stride
    # a change of one bin costs step_penalty; larger ones are charged below as the jump
    gap = d[:, None] - d[None, :]
    near = tl.where(gap == 0, 0.0, tl.where((gap == 1) | (gap == -1), step_penalty, float("inf")))

    first = tl.where(reverse, length - 1, 0) * step_stride
    path = tl.load(cost_ptr + cost_at + first, mask=in_bins, other=float("inf"))
    tl.store(out_ptr + out_at + first, path, mask=mask)
    grey_before = tl.load(grey_ptr + grey_at + first)
    for i in range(1, length):
        at = tl.where(reverse, length - 1 - i, i) * step_stride
        cost = tl.load(cost_ptr + cost_at + at, mask=in_bins, other=float("inf"))
        grey = tl.load(grey_ptr + grey_at + at)
        jump = step_penalty + jump_extra / (1 + tl.abs(grey - grey_before) / edge_contrast)
        best = tl.min(path, axis=1)
        moved = tl.min(path[:, None, :] + near[None, :, :], axis=2)
        path = cost + tl.minimum(moved - best[:, None], jump[:, None])
        tl.store(out_ptr + out_at + at, path, mask=mask)
        grey_before = grey


def aggregate(
    cost: torch.Tensor,
    key: torch.Tensor,
    step_penalty: float,
    jump_penalty: float,
    edge_contrast: float,
) -> torch.Tensor:
    """`multiview._aggregate` of a float32 (B, D, h, w) cost volume with the (B, 1, h, w) grey
    keyframe, in one launch: the mean over the four scanline directions."""
    B, D, h, w = cost.shape
    cost, key = cost.contiguous(), key.contiguous()
    paths = cost.new_empty((4, B, D, h, w))
    grid = (triton.cdiv(max(h, w), _PATHS_PER_PROGRAM), 4, B)
    _scanlines[grid](
        cost,
        key,
        paths,
        h,
        w,
        D,
        step_penalty,
        jump_penalty - step_penalty,
        edge_contrast,
        PATHS=_PATHS_PER_PROGRAM,
        BINS=triton.next_power_of_2(D),
    )
    return (paths[0] + paths[1] + paths[2] + paths[3]) / 4
