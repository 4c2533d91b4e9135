"""`ReplayPool`: snippets of the original training data, mixed into fine-tuning batches.

Replaying what the model was trained on keeps it from forgetting it. The pool is built from a
comma-separated list of sources: ``synthetic:DOMAIN[:FRAMES[:SEED[:RANDOM]]]`` windows are rendered
lazily, one snippet at a time when first drawn, at the adaptation size, then cached (the
renderer's frame i is the same whatever the window, so a snippet costs its own frames only:
a few hundred frames at most, rendered in the training thread, never in a camera callback);
paths and bags go through `SnippetDataset`, which reads their frames from disk when drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sfm_ros.core.data import BagReader, SnippetDataset
from sfm_ros.core.errors import DatasetError
from sfm_ros.core.online.buffer import Snippet
from sfm_ros.core.sources import SYNTHETIC_PREFIX, open_source, parse_synthetic
from sfm_ros.core.synthetic import render_sequence
from sfm_ros.core.synthetic.domains import domain_spec

MAX_SYNTHETIC_FRAMES = 300
"""Upper bound on the frames one synthetic replay source renders."""


def parse_replay(spec: str) -> list[str]:
    """The sources of a comma-separated replay spec, checked cheaply (paths exist, synthetic
    sources parse) so that a bad spec fails at construction, not in the training thread.

    Raises:
        DatasetError, ConfigError: a missing path, a malformed synthetic source or an unknown
            domain.
    """
    sources = [s.strip() for s in spec.split(",") if s.strip()]
    for source in sources:
        if source.startswith(SYNTHETIC_PREFIX):
            parsed = parse_synthetic(source)
            domain_spec(parsed.domain)
            if parsed.frames > MAX_SYNTHETIC_FRAMES:
                raise DatasetError(
                    f"replay source {source!r}: at most {MAX_SYNTHETIC_FRAMES} frames are "
                    "rendered for replay"
                )
        elif not Path(source).expanduser().exists():
            raise DatasetError(f"replay source {source} does not exist")
    return sources


class _SyntheticWindows:
    """Non-overlapping snippets of a synthetic trajectory, rendered when first asked for."""

    def __init__(self, source: str, length: int, height: int, width: int) -> None:
        self.source = parse_synthetic(source)
        self.length, self.height, self.width = length, height, width
        self.count = max(1, self.source.frames // length)
        self._cache: dict[int, Snippet] = {}

    def __len__(self) -> int:
        return self.count

    def get(self, index: int) -> Snippet:
        if index not in self._cache:
            src = self.source
            seq = render_sequence(
                src.domain, self.length, seed=src.seed, height=self.height, width=self.width,
                start=index * self.length, randomization=src.randomization,
            )  # fmt: skip
            frames = torch.from_numpy(np.ascontiguousarray(seq.images)).permute(0, 3, 1, 2)
            self._cache[index] = Snippet(
                frames=frames.contiguous(),
                K=torch.from_numpy(np.asarray(seq.K, dtype=np.float32)),
                stamp_ns=int(seq.stamps_ns[self.length // 2]),
            )
        return self._cache[index]

    @property
    def rendered(self) -> int:
        return len(self._cache) * self.length


class _Recorded:
    """Snippets of recorded data, read from disk when drawn."""

    rendered = 0

    def __init__(self, dataset: SnippetDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def get(self, index: int) -> Snippet:
        item = self.dataset.get(index)
        t = self.dataset.snippet_length // 2
        srcs = item["srcs"]
        frames = torch.cat([srcs[:t], item["tgt"][None], srcs[t:]])
        return Snippet(frames=frames.mul(255.0).round_().to(torch.uint8), K=item["K"], stamp_ns=0)


class ReplayPool:
    """Snippets of ``length`` frames at (height, width) from the sources of a replay spec.

    Args:
        spec: comma-separated sources (see the module docstring).
        bag_reader: opens bags (`sfm_ros.messages.BagSequence`).

    Raises:
        DatasetError: a source cannot be opened or yields no snippet.
    """

    def __init__(
        self, spec: str, length: int, height: int, width: int, bag_reader: BagReader | None = None
    ) -> None:
        self.parts: list[_SyntheticWindows | _Recorded] = []
        for source in parse_replay(spec):
            if source.startswith(SYNTHETIC_PREFIX):
                self.parts.append(_SyntheticWindows(source, length, height, width))
            else:
                sequences = open_source(source, height=height, width=width, bag_reader=bag_reader)
                self.parts.append(_Recorded(SnippetDataset(sequences, length, height, width)))
        if not self.parts:
            raise DatasetError(f"replay data {spec!r} names no source")

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    @property
    def rendered_frames(self) -> int:
        """Synthetic frames rendered so far."""
        return sum(p.rendered for p in self.parts)

    def sample(self, rng: np.random.Generator, n: int) -> list[Snippet]:
        """``n`` snippets: a source drawn uniformly, then a snippet of it."""
        out = []
        for _ in range(n):
            part = self.parts[int(rng.integers(len(self.parts)))]
            out.append(part.get(int(rng.integers(len(part)))))
        return out
