"""Keyframe snippets from a live stream, and the bounded replay buffer that holds them.

`SnippetBuilder` turns frames (already fitted to the network input) into snippets of
``length`` consecutive *keyframes*: a frame is skipped when it is nearly identical to the
previous keyframe (static camera) or has too little texture; a time gap, time going
backwards or a change of intrinsics starts a new snippet. Snippets do not share frames, so
a held-out snippet is never partly trained on.

`SnippetBuffer` keeps the newest ``capacity`` snippets as uint8 tensors and reports its
memory; `sample` returns a batch that always contains the newest snippet.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import torch

from sfm_ros.core.data.snippets import _thumbnail

SKIP_STATIC = "static"
SKIP_TEXTURELESS = "textureless"


@dataclass
class Snippet:
    """``length`` keyframes at the network resolution (h, w)."""

    frames: torch.Tensor
    """(L, 3, h, w) uint8 RGB in time order; the target is frame L // 2."""
    K: torch.Tensor
    """(3, 3) float32 intrinsics of the frames."""
    stamp_ns: int
    """Stamp of the target frame."""
    ref_log_disp: float | None = None
    """Mean log disparity of the starting weights on the target frame (set by the trainer)."""
    extras: list | None = None
    """What was added with each frame (`SnippetBuilder.add`), in time order; None if nothing."""
    R_src_tgt: torch.Tensor | None = None
    """(L - 1, 3, 3) float32 rotations of the sources (in `collate`'s order) from the target,
    measured otherwise (classical VO); NaN where a pair failed; None without them."""

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes + self.K.nbytes


def texture(image: np.ndarray) -> float:
    """Mean absolute grey gradient (x plus y) of an (H, W, 3) uint8 image, intensities in [0, 1]."""
    grey = image.astype(np.float32).mean(axis=2) / 255.0
    return float(np.abs(np.diff(grey, axis=1)).mean() + np.abs(np.diff(grey, axis=0)).mean())


class SnippetBuilder:
    """Groups keyframes into non-overlapping snippets.

    Args:
        length: frames per snippet (3 or 5).
        min_motion: mean absolute grey difference (32 px thumbnails, [0, 1]) a frame needs
            from the previous keyframe to become a keyframe; the measure of `SnippetDataset`.
        min_texture: frames with a lower `texture` are skipped.
        max_gap_ns: a longer time since the previous keyframe starts a new snippet.
    """

    def __init__(self, length: int, min_motion: float, min_texture: float, max_gap_ns: int) -> None:
        self.length = length
        self.min_motion, self.min_texture, self.max_gap_ns = min_motion, min_texture, max_gap_ns
        self._frames: list[np.ndarray] = []
        self._thumb: np.ndarray | None = None
        self._K: np.ndarray | None = None
        self._stamps: list[int] = []
        self._extras: list = []

    def clear(self) -> None:
        """Forget the keyframes collected so far (a new snippet starts with the next frame)."""
        self._frames, self._stamps, self._extras = [], [], []
        self._thumb = self._K = None

    def add(
        self, image: np.ndarray, K: np.ndarray, stamp_ns: int, extra: object = None
    ) -> tuple[str, Snippet | None]:
        """Offer one (h, w, 3) uint8 frame with its (3, 3) K at the network resolution, and
        anything to hand back with the snippet (``extra``: `Snippet.extras`).

        Returns ``(status, snippet)``: status is ``"static"`` or ``"textureless"`` (frame
        skipped), ``"keyframe"`` (kept) or ``"snippet"`` (kept and it completed ``snippet``).
        """
        if texture(image) < self.min_texture:
            return SKIP_TEXTURELESS, None
        thumb = _thumbnail(image)
        if self._frames:
            gap = stamp_ns - self._stamps[-1]
            if gap <= 0 or gap > self.max_gap_ns or not np.allclose(K, self._K):
                self.clear()
            elif float(np.abs(thumb - self._thumb).mean()) < self.min_motion:
                return SKIP_STATIC, None
        self._frames.append(image)
        self._stamps.append(int(stamp_ns))
        self._extras.append(extra)
        self._thumb, self._K = thumb, np.asarray(K, dtype=np.float64)
        if len(self._frames) < self.length:
            return "keyframe", None
        frames = torch.from_numpy(np.stack(self._frames)).permute(0, 3, 1, 2).contiguous()
        snippet = Snippet(
            frames=frames,
            K=torch.from_numpy(self._K.astype(np.float32)),
            stamp_ns=self._stamps[self.length // 2],
            extras=None if all(e is None for e in self._extras) else list(self._extras),
        )
        self.clear()
        return "snippet", snippet


class SnippetBuffer:
    """The newest ``capacity`` snippets (oldest dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[Snippet] = deque(maxlen=capacity)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(list(self._items))

    def append(self, snippet: Snippet) -> None:
        self._items.append(snippet)

    def clear(self) -> None:
        self._items.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the snippets' tensors."""
        return sum(s.nbytes for s in self._items)

    def sample(self, rng: np.random.Generator, n: int) -> list[Snippet]:
        """``n`` snippets: the newest plus others drawn without replacement (fewer if short)."""
        items = list(self._items)
        if not items or n < 1:
            return []
        others = rng.choice(len(items) - 1, size=min(n - 1, len(items) - 1), replace=False)
        return [items[-1]] + [items[int(i)] for i in sorted(others)]


def collate(snippets: list[Snippet], device: torch.device) -> dict[str, torch.Tensor]:
    """Batch snippets as the training loop wants them, on ``device``.

    Returns ``tgt`` (B, 3, h, w) and ``srcs`` (B, S, 3, h, w) float in [0, 1], ``K`` (B, 3, 3).
    """
    frames = torch.stack([s.frames for s in snippets]).to(device, non_blocking=True)
    frames = frames.float().div_(255.0)
    mid = frames.shape[1] // 2
    return {
        "tgt": frames[:, mid],
        "srcs": torch.cat([frames[:, :mid], frames[:, mid + 1 :]], dim=1),
        "K": torch.stack([s.K for s in snippets]).to(device),
    }
