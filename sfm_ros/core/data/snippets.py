"""`SnippetDataset`: training snippets (target = middle frame, sources = the others).

Each item is a dict of tensors at the output resolution::

    tgt        (3, H, W) float32 in [0, 1]
    srcs       (S, 3, H, W) float32 in [0, 1], sources in time order
    K          (3, 3) float32 intrinsics of the output images
    depth_m    (1, H, W) float32 metres, 0 = unknown   (when every sequence has depth)
    T_src_tgt  (S, 4, 4) float32 ground truth           (when every sequence has poses)
    index      int

so the default ``torch.utils.data.default_collate`` batches them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from sfm_ros.core.data.augment import (
    color_jitter,
    flip_pose,
    horizontal_flip,
    random_scale_crop,
    resize,
)
from sfm_ros.core.data.sequence import FrameSequence, has_depth, has_poses
from sfm_ros.core.errors import DatasetError

THUMB_WIDTH = 32


def _thumbnail(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> small grey (h, 32) float32 in [0, 1] for motion checks."""
    h, w = image.shape[:2]
    size = (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w)))
    grey = Image.fromarray(image).convert("L").resize(size, Image.BILINEAR)
    return np.asarray(grey, dtype=np.float32) / 255.0


class SnippetDataset(Dataset):
    """Snippets of ``snippet_length`` frames from one or more sequences.

    Args:
        sequences: frame sequences (a single one is accepted too).
        snippet_length: frames per snippet; the target is frame ``snippet_length // 2``.
        height, width: output size in pixels.
        augment: random scale-crop (up to 1.15x), horizontal flip and colour jitter, the same
            for all frames of a snippet; otherwise whole frames are resized.
        min_motion: skip snippets whose mean absolute grey difference between target and
            sources (averaged over sources, on 32 px wide thumbnails, intensities in [0, 1])
            is below this value; 0 disables the check. Skips are counted in
            ``num_skipped_static``.
        seed: seed of the augmentation random numbers (combined with the worker seed).
        stride: frame step between consecutive frames of a snippet.

    Raises:
        DatasetError: no snippet is left (sequences too short, or all static).
    """

    def __init__(
        self,
        sequences: Sequence[FrameSequence] | FrameSequence,
        snippet_length: int = 3,
        height: int = 128,
        width: int = 416,
        augment: bool = False,
        min_motion: float = 0.0,
        seed: int = 0,
        stride: int = 1,
    ) -> None:
        if isinstance(sequences, FrameSequence):
            sequences = [sequences]
        if snippet_length < 2 or stride < 1 or height < 1 or width < 1:
            raise DatasetError(
                f"need snippet_length >= 2, stride >= 1 and a positive size, got "
                f"snippet_length={snippet_length}, stride={stride}, size={height}x{width}"
            )
        self.sequences = list(sequences)
        self.snippet_length = snippet_length
        self.height, self.width = height, width
        self.augment = augment
        self.min_motion = min_motion
        self.seed = seed
        self.stride = stride
        self.with_poses = bool(self.sequences) and all(has_poses(s) for s in self.sequences)
        self.with_depth = bool(self.sequences) and all(has_depth(s) for s in self.sequences)
        self._rng: np.random.Generator | None = None
        self._rng_key: tuple[int, int] | None = None

        span = (snippet_length - 1) * stride
        self.snippets: list[tuple[int, tuple[int, ...]]] = []
        self.num_skipped_static = 0
        total = 0
        for si, seq in enumerate(self.sequences):
            starts = range(len(seq) - span)
            ids = [tuple(range(s, s + span + 1, stride)) for s in starts]
            total += len(ids)
            if min_motion > 0 and ids:
                thumbs = [_thumbnail(seq.load(i).image) for i in range(len(seq))]
                moving = [self._motion(thumbs, frame_ids) >= min_motion for frame_ids in ids]
                self.num_skipped_static += moving.count(False)
                ids = [frame_ids for frame_ids, m in zip(ids, moving, strict=True) if m]
            self.snippets += [(si, frame_ids) for frame_ids in ids]

        if not self.snippets:
            names = ", ".join(f"{s.name} ({len(s)} frames)" for s in self.sequences) or "none"
            if total == 0:
                raise DatasetError(
                    f"no snippets: each sequence needs at least {span + 1} frames for "
                    f"snippet_length={snippet_length} and stride={stride}; sequences: {names}"
                )
            raise DatasetError(
                f"all {total} snippets are static (target-source difference below "
                f"min_motion={min_motion}); lower min_motion or use other data: {names}"
            )

    def _motion(self, thumbs: list[np.ndarray], frame_ids: tuple[int, ...]) -> float:
        """Mean over sources of the mean absolute thumbnail difference to the target."""
        tgt = frame_ids[self.snippet_length // 2]
        diffs = [np.abs(thumbs[i] - thumbs[tgt]).mean() for i in frame_ids if i != tgt]
        return float(np.mean(diffs))

    def __len__(self) -> int:
        return len(self.snippets)

    def _rng_for_worker(self) -> np.random.Generator:
        """A generator per DataLoader worker (and per epoch when workers are respawned)."""
        info = get_worker_info()
        key = (0, 0) if info is None else (info.id + 1, info.seed)
        if self._rng is None or self._rng_key != key:
            self._rng = np.random.default_rng([self.seed, *key])
            self._rng_key = key
        return self._rng

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        return self.get(index)

    def get(
        self, index: int, rng: np.random.Generator | None = None
    ) -> dict[str, torch.Tensor | int]:
        """Snippet `index`; `rng` drives the augmentation (default: the dataset's own stream,
        per DataLoader worker). The trainer passes a generator derived from (seed, step) so
        that a resumed run sees exactly the same batches."""
        si, frame_ids = self.snippets[index]
        seq = self.sequences[si]
        frames = [seq.load(i) for i in frame_ids]
        t = self.snippet_length // 2
        tgt = frames[t]
        try:
            images = np.stack([f.image for f in frames])
        except ValueError as err:
            raise DatasetError(f"frames {frame_ids} of {seq.name} differ in size") from err
        depth = tgt.depth_m if self.with_depth else None

        flipped = False
        if self.augment:
            rng = rng if rng is not None else self._rng_for_worker()
            images, K, depth = random_scale_crop(
                images, tgt.K, self.height, self.width, rng, depth_m=depth
            )
            if flipped := bool(rng.random() < 0.5):
                images, K, depth = horizontal_flip(images, K, depth)
            images = color_jitter(images, rng)
        else:
            images, K, depth = resize(images, tgt.K, self.height, self.width, depth)

        tensors = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        item: dict[str, torch.Tensor | int] = {
            "tgt": tensors[t],
            "srcs": torch.cat([tensors[:t], tensors[t + 1 :]]),
            "K": torch.from_numpy(np.asarray(K, dtype=np.float32)),
            "index": index,
        }
        if depth is not None:
            item["depth_m"] = torch.from_numpy(np.array(depth, dtype=np.float32))[None]
        if self.with_poses:
            srcs = [f for i, f in enumerate(frames) if i != t]
            T = np.stack([np.linalg.inv(f.T_world_cam) @ tgt.T_world_cam for f in srcs])
            T = flip_pose(T) if flipped else T
            item["T_src_tgt"] = torch.from_numpy(T.astype(np.float32))
        return item
