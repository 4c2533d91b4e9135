"""Run trained networks on a camera stream: depth in metres and frame-to-frame camera motion.

`DepthPoseEstimator` is what the ROS node, the offline bag tool and the demo use. It takes
images of any size with their pinhole `Camera` (or bare K), fits them to the network input
(resize, or scale-and-centre-crop keeping the aspect ratio; the camera follows with scales from
the integer sizes), and returns depth at the input resolution plus `T_prev_cur`, the 4x4
optical-frame motion from the previous frame to the current one (`p_prev = T_prev_cur @ p_cur`).
The networks can be swapped atomically between frames (online fine-tuning publishes new
weights).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sfm_ros.core.camera import Camera
from sfm_ros.core.checkpoint import (
    ARCH_KEYS,
    check_finite_weights,
    networks_from_checkpoint,
    resolve_checkpoint,
)
from sfm_ros.core.device import resolve_device
from sfm_ros.core.errors import InputError
from sfm_ros.core.geometry import rigid_flow, snippet_poses_in_target

log = logging.getLogger(__name__)
RESIZE_POLICIES = ("resize", "crop")


@dataclass
class EstimatorOutput:
    """Result for one frame."""

    depth_m: np.ndarray
    """(H, W) float32 metres along the optical axis at the input resolution; NaN = no estimate."""
    T_prev_cur: np.ndarray | None
    """(4, 4) float64 motion from the previous frame (None for the first frame)."""
    stamp_ns: int
    model_version: int
    """Increments each time the networks are swapped."""
    depth_bounds_m: tuple[float, float] = (0.0, float("inf"))
    """(min, max) metres bounding every finite value of `depth_m` (may be loose)."""
    flow: np.ndarray | None = None
    """(H, W, 2) float32 rigid optical flow (pixels) from this frame to the previous one."""
    explainability: np.ndarray | None = None
    """(H, W) float32 in [0, 1]: how well the previous frame explains this one (1 = fully)."""


def _inverse(x: float) -> float:
    """1 / x, with 1 / 0 = inf and 1 / inf = 0 (depth <-> disparity of range limits)."""
    return 1.0 / x if x > 0 else math.inf


def _resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, C, H, W) image -> (1, C, *size) bilinear, antialiased when shrinking."""
    if tuple(image.shape[-2:]) == size:
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=shrink)


def _seen_range(offset: int, size: int, scaled: int, full: int) -> tuple[int, int]:
    """Input pixels [first, stop) along one axis whose centres fall in the window
    [offset, offset + size) (pixel edges) of the image resized from ``full`` to ``scaled``
    pixels, where centre v lands at ``(v + 0.5) * scaled / full``; exact integer arithmetic."""

    def first_at_or_after(edge: int) -> int:  # ceil((2 edge full - scaled) / (2 scaled))
        return min(full, max(0, -((scaled - 2 * edge * full) // (2 * scaled))))

    return first_at_or_after(offset), first_at_or_after(offset + size)


@dataclass
class _Prepared:
    image: torch.Tensor  # (1, 3, h, w) float in [0, 1] on the device, network dtype
    K_net: torch.Tensor  # (1, 3, 3) float32 intrinsics of the network input, on the device
    scaled_hw: tuple[int, int]  # size of the resized image the network input is cut from
    offset: tuple[int, int]  # (y0, x0) of the network input in the resized image


class DepthPoseEstimator:
    """Depth and ego-motion from a monocular stream with trained SfMLearner-style networks."""

    def __init__(
        self,
        depth_net: nn.Module,
        pose_net: nn.Module,
        arch: dict[str, Any],
        device: str = "auto",
        fp16: bool = False,
        resize_policy: str = "resize",
        min_depth: float = 0.1,
        max_depth: float = 100.0,
    ) -> None:
        if resize_policy not in RESIZE_POLICIES:
            raise InputError(
                f"resize_policy must be one of {RESIZE_POLICIES}, got {resize_policy!r}"
            )
        if not 0 <= min_depth < max_depth:
            raise InputError(f"need 0 <= min_depth < max_depth, got {min_depth}, {max_depth}")
        self.device = resolve_device(device)
        if fp16 and self.device.type != "cuda":
            log.warning("fp16 needs CUDA; running in fp32 on %s", self.device)
            fp16 = False
        self.dtype = torch.float16 if fp16 else torch.float32
        self.arch = dict(arch)
        self.height, self.width = int(arch["height"]), int(arch["width"])
        self.snippet_length = int(arch["snippet_length"])
        self.resize_policy = resize_policy
        self.min_depth, self.max_depth = min_depth, max_depth
        self._lock = threading.Lock()
        self.model_version = 0
        self.model_path = ""
        """Checkpoint or export folder the networks were loaded from ('' = built in memory)."""
        self.checkpoint_path = ""
        """The .pt checkpoint holding these weights, for fine-tuning ('' = none known)."""
        self._nets = self._prepare_networks(depth_net, pose_net)
        self._frames: deque[torch.Tensor] = deque(maxlen=self.snippet_length)
        self._input_key: tuple[int, int] | None = None
        self._since_step: torch.Tensor | None = None
        """(4, 4) float64 motion chained over the frames observed since the last `step`."""
        self._stepped = False
        """Whether a frame kept was stepped (a motion of the next step has a start)."""

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs: Any) -> DepthPoseEstimator:
        """Load networks from an sfm_ros checkpoint (weights_only) and wrap them."""
        depth_net, pose_net, ckpt = networks_from_checkpoint(path)
        estimator = cls(depth_net, pose_net, ckpt["arch"], **kwargs)
        estimator.model_path = estimator.checkpoint_path = str(path)
        return estimator

    @classmethod
    def load(cls, path: str | Path = "", **kwargs: Any) -> DepthPoseEstimator:
        """The model at `path`: a checkpoint (.pt, run with PyTorch), an `sfm-ros export`
        folder (run with onnxruntime: TensorRT > CUDA > CPU), or '' for the packaged model."""
        if path and Path(path).expanduser().is_dir():
            if kwargs.pop("fp16", False):
                log.warning(
                    "fp16 does not apply to ONNX models: export with --fp16, or let TensorRT "
                    "build fp16 engines (the default)"
                )
            return cls.from_onnx(Path(path).expanduser(), **kwargs)
        return cls.from_checkpoint(resolve_checkpoint(path), **kwargs)

    @classmethod
    def from_onnx(
        cls, export_dir: str | Path, providers: list[Any] | None = None, **kwargs: Any
    ) -> DepthPoseEstimator:
        """Run an `sfm-ros export` folder with onnxruntime (`providers`: None = TensorRT or
        CUDA when available, else CPU). Pre- and post-processing are those of the torch path."""
        from sfm_ros.core.onnx_backend import load_onnx_networks

        depth_net, pose_net, meta = load_onnx_networks(export_dir, providers)
        estimator = cls(depth_net, pose_net, meta["arch"], **kwargs)
        estimator.model_path = str(export_dir)
        estimator.checkpoint_path = str(meta.get("checkpoint", {}).get("path", ""))
        log.info("running %s on onnxruntime (%s)", export_dir, estimator.backend)
        return estimator

    @property
    def backend(self) -> str:
        """'torch' or 'onnxruntime <first execution provider>'."""
        session = getattr(self._nets[0], "session", None)
        if session is None:
            return "torch"
        return "onnxruntime " + session.get_providers()[0].replace("ExecutionProvider", "")

    # ---------------------------------------------------------------- model swaps
    def _prepare_networks(
        self, depth_net: nn.Module, pose_net: nn.Module
    ) -> tuple[nn.Module, nn.Module]:
        nets = []
        for net in (depth_net, pose_net):
            # channels_last (NHWC) is faster on CUDA and on CPU (oneDNN) alike
            net = net.to(self.device, dtype=self.dtype, memory_format=torch.channels_last).eval()
            for p in net.parameters():
                p.requires_grad_(False)
            nets.append(net)
        return nets[0], nets[1]

    def swap_networks(self, depth_net: nn.Module, pose_net: nn.Module, source: str = "") -> int:
        """Replace both networks between frames; returns the new model version.

        Args:
            source: the checkpoint holding these weights ('' = in memory only).

        Raises:
            CheckpointError: a weight is NaN or inf (the current networks stay in service).
        """
        for what, net in (("depth", depth_net), ("pose", pose_net)):
            check_finite_weights(net.state_dict(), what, source or "(in memory)")
        prepared = self._prepare_networks(depth_net, pose_net)  # off the hot path
        with self._lock:
            self._nets = prepared
            self.model_path = self.checkpoint_path = source
            self.model_version += 1
            return self.model_version

    def load_weights(self, path: str | Path) -> int:
        """Swap in the networks of another checkpoint of the same architecture."""
        depth_net, pose_net, ckpt = networks_from_checkpoint(path)
        diff = [k for k in ARCH_KEYS if ckpt["arch"].get(k) != self.arch.get(k)]
        if diff:
            raise InputError(f"checkpoint {path} differs in {diff}; cannot swap it in live")
        if self.backend != "torch":
            log.info("swapping PyTorch weights from %s in place of %s", path, self.backend)
        return self.swap_networks(depth_net, pose_net, source=str(path))

    # ---------------------------------------------------------------- inputs
    def _check_inputs(
        self, image: np.ndarray, camera: Camera | np.ndarray
    ) -> tuple[np.ndarray, Camera]:
        """(H, W, 3) uint8 RGB image and its pinhole camera (a bare K gets the image size)."""
        if not isinstance(image, np.ndarray):
            raise InputError(f"image must be a numpy array, got {type(image).__name__}")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image must be (H, W, 3) RGB or (H, W) grey, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise InputError(f"image must be uint8, got {image.dtype}")
        H, W = image.shape[:2]
        if H < 8 or W < 8:
            raise InputError(f"image of {W}x{H} px is too small")
        if not isinstance(camera, Camera):
            camera = Camera(camera, W, H)
        elif camera.size != (W, H):
            raise InputError(
                f"the camera is for {camera.width}x{camera.height} images, the image is {W}x{H}"
            )
        if camera.distorted:
            raise InputError(
                f"the camera has {camera.distortion_model} distortion: undistort the image "
                "first (sfm_ros.core.undistort)"
            )
        return image, camera

    def _prepare(self, image: np.ndarray, camera: Camera) -> _Prepared:
        H, W = image.shape[:2]
        h, w = self.height, self.width
        if self.resize_policy == "resize":
            scaled_hw = (h, w)
        else:  # scale to cover the network input, keeping the aspect ratio; centre crop
            s = max(h / H, w / W)
            scaled_hw = (max(h, round(H * s)), max(w, round(W * s)))
        y0, x0 = (scaled_hw[0] - h) // 2, (scaled_hw[1] - w) // 2
        camera_net = camera.resized(scaled_hw[1], scaled_hw[0]).cropped(x0, y0, w, h)
        if not image.flags.writeable or not image.flags.c_contiguous:
            image = np.ascontiguousarray(image).copy()  # torch.from_numpy needs writable memory
        tensor = torch.from_numpy(image).permute(2, 0, 1)[None]  # (1, 3, H, W) uint8, NHWC memory
        if self.device.type == "cpu":
            # uint8 resizing is 5x faster than float on CPU; its antialiasing is PIL's, which
            # the training data loader uses.
            tensor = _resize(tensor, scaled_hw).to(self.dtype).div_(255.0)
        else:
            tensor = tensor.to(self.device, non_blocking=True).to(self.dtype).div_(255.0)
            tensor = _resize(tensor, scaled_hw)
        tensor = tensor[:, :, y0 : y0 + h, x0 : x0 + w].contiguous(
            memory_format=torch.channels_last
        )
        K_t = torch.from_numpy(camera_net.K.astype(np.float32)).to(self.device)[None]
        return _Prepared(tensor, K_t, scaled_hw, (y0, x0))

    @staticmethod
    def _to_input_resolution(
        net_map: torch.Tensor, prep: _Prepared, shape: tuple[int, int]
    ) -> torch.Tensor:
        """Map a (1, C, h, w) network-resolution map back to the (H, W) input image grid.

        The exact inverse of `_prepare`: the map is placed at its offset in the resized image
        (edges extended), resampled to (H, W) with the same pixel-centre convention, and the
        input pixels whose centres lie outside the region the network saw are NaN.

        Returns (1, C, H, W) float32.
        """
        H, W = shape
        (sh, sw), (y0, x0) = prep.scaled_hw, prep.offset
        h, w = net_map.shape[-2:]
        pads = (x0, sw - x0 - w, y0, sh - y0 - h)
        net_map = net_map.float()
        if any(pads):
            net_map = F.pad(net_map, pads, mode="replicate")
        out = F.interpolate(net_map, size=(H, W), mode="bilinear", align_corners=False)
        if any(pads):
            top, bottom = _seen_range(y0, h, sh, H)
            left, right = _seen_range(x0, w, sw, W)
            out[..., :top, :] = out[..., bottom:, :] = float("nan")
            out[..., :left] = out[..., right:] = float("nan")
        return out

    # ---------------------------------------------------------------- outputs
    @torch.inference_mode()
    def depth(self, image: np.ndarray, camera: Camera | np.ndarray) -> np.ndarray:
        """Depth (H, W) float32 metres for one image; NaN where there is no estimate.

        Args:
            camera: the image's pinhole `Camera`, or its (3, 3) K.
        """
        image, camera = self._check_inputs(image, camera)
        prep = self._prepare(image, camera)
        depth_net, _ = self._nets
        disp = depth_net(prep.image)[0]
        return self._depth_from_disp(disp, prep, image.shape[:2])[0]

    def _depth_from_disp(
        self, disp: torch.Tensor, prep: _Prepared, shape: tuple[int, int]
    ) -> tuple[np.ndarray, tuple[float, float]]:
        """(1, h, w) network disparity -> (H, W) depth in metres and its (min, max) bounds.

        Disparity is upsampled (it is smooth in image space), then inverted. Bilinear values
        lie between their neighbours, so the network-resolution extremes bound the result: the
        full-resolution range check only runs when some disparity is out of range.
        """
        lo, hi = _inverse(self.max_depth), _inverse(self.min_depth)
        disp_min, disp_max = torch.stack(torch.aminmax(disp.float())).tolist()  # one sync
        depth = self._to_input_resolution(disp, prep, shape)[0, 0].reciprocal_()
        if disp_min <= lo or disp_max >= hi:
            depth = torch.where(
                (depth >= self.min_depth) & (depth <= self.max_depth), depth, torch.nan
            )
        # clamped to the range itself: 1 / (1 / x) can miss x by a rounding error
        near = max(_inverse(min(max(disp_max, lo), hi)), self.min_depth)
        far = min(_inverse(max(min(disp_min, hi), lo)), self.max_depth)
        bounds = (near, far)
        return depth.cpu().numpy(), bounds

    def _snippet_poses(
        self, pose_net: nn.Module, frames: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Poses of `snippet_length` prepared frames in the middle (target) frame's camera.

        Returns `T_tgt_frame` (L, 4, 4) float64 in time order (identity at the target) and
        the explainability masks of the sources (or None).
        """
        mid = self.snippet_length // 2
        srcs = torch.stack(frames[:mid] + frames[mid + 1 :], dim=1)
        T_src_tgt, masks = pose_net(frames[mid], srcs)
        return snippet_poses_in_target(T_src_tgt[0].double()), masks

    @torch.inference_mode()
    def snippet_poses(self, images: list[np.ndarray], camera: Camera | np.ndarray) -> np.ndarray:
        """SfMLearner's per-snippet output: poses `T_first_frame` (L, 4, 4) of exactly
        `snippet_length` images, relative to the first one (used by the legacy pose metric)."""
        if len(images) != self.snippet_length:
            raise InputError(f"need {self.snippet_length} images, got {len(images)}")
        frames = [self._prepare(*self._check_inputs(im, camera)).image for im in images]
        T_tgt_frame, _ = self._snippet_poses(self._nets[1], frames)
        return (torch.linalg.inv(T_tgt_frame[0]) @ T_tgt_frame).cpu().numpy()

    def reset(self) -> None:
        """Forget previous frames (after a time jump or a resolution change)."""
        self._frames.clear()
        self._input_key = None
        self._since_step, self._stepped = None, False

    def _add_frame(self, image: np.ndarray, camera: Camera) -> _Prepared:
        """Prepare the stream's next image and keep it (a new resolution resets the history)."""
        key = image.shape[:2]
        if self._input_key is not None and key != self._input_key:
            log.warning(
                "input resolution changed from %s to %s: pose history reset", self._input_key, key
            )
            self._frames.clear()
            self._since_step, self._stepped = None, False
        self._input_key = key
        prep = self._prepare(image, camera)
        self._frames.append(prep.image)
        return prep

    def _newest_motion(self, pose_net: nn.Module) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """(4, 4) float64 motion from the second newest frame kept to the newest, and the
        explainability masks; at the start of a stream the missing older frames are mirrored."""
        frames = list(self._frames)
        while len(frames) < self.snippet_length:
            frames.insert(0, frames[1])
        T_tgt_frame, masks = self._snippet_poses(pose_net, frames)
        return torch.linalg.inv(T_tgt_frame[-2]) @ T_tgt_frame[-1], masks

    @torch.inference_mode()
    def observe(self, image: np.ndarray, camera: Camera | np.ndarray) -> None:
        """A frame of the stream that will not be processed (a live node behind its camera
        keeps only the newest): the pose network still sees it, so that the next `step`'s
        motion chains motions between neighbouring frames, the baselines the network learnt,
        instead of one across the whole gap (whose length it underestimates: on a synthetic
        street 1.41 where the truth was 1.98 and 3.10). No depth is computed.

        Args:
            camera: the image's pinhole `Camera`, or its (3, 3) K.
        """
        image, camera = self._check_inputs(image, camera)
        self._add_frame(image, camera)
        if len(self._frames) < 2:
            return
        with self._lock:
            pose_net = self._nets[1]
        T_step, _ = self._newest_motion(pose_net)
        self._since_step = T_step if self._since_step is None else self._since_step @ T_step

    @torch.inference_mode()
    def step(
        self,
        image: np.ndarray,
        camera: Camera | np.ndarray,
        stamp_ns: int = 0,
        with_flow: bool = False,
    ) -> EstimatorOutput:
        """Process the next frame of a stream: depth now, motion since the previous frame.

        Args:
            camera: the image's pinhole `Camera`, or its (3, 3) K.

        The pose network sees the last `snippet_length` frames; at the start of a stream the
        missing older ones are mirrored (frames 0, 1 are seen as 1, 0, 1): repeating frame 0
        instead shows the network a source that did not move, and it then under-estimates the
        first translation by 20-30 %. A resolution change resets the history.
        """
        image, camera = self._check_inputs(image, camera)
        key = image.shape[:2]
        prep = self._add_frame(image, camera)
        since_step, self._since_step = self._since_step, None
        stepped, self._stepped = self._stepped, True
        with self._lock:
            depth_net, pose_net = self._nets
            version = self.model_version
        disp = depth_net(prep.image)[0]
        depth_m, bounds = self._depth_from_disp(disp, prep, key)
        if len(self._frames) < 2 or not stepped:  # the first frame stepped has no motion
            return EstimatorOutput(depth_m, None, stamp_ns, version, bounds)
        T_prev_cur, masks = self._newest_motion(pose_net)
        if since_step is not None:  # from the last frame stepped, over those observed since
            T_prev_cur = since_step @ T_prev_cur
        out = EstimatorOutput(depth_m, T_prev_cur.cpu().numpy(), stamp_ns, version, bounds)
        if masks is not None:
            mask = masks[0][:, -1:]  # the current frame is the last source
            out.explainability = self._to_input_resolution(mask, prep, key)[0, 0].cpu().numpy()
        if with_flow:
            depth_net_res = 1.0 / disp.float().clamp_min(1e-6)
            flow_to_prev = rigid_flow(depth_net_res, T_prev_cur.float()[None], prep.K_net)
            (sh, sw), (H, W) = prep.scaled_hw, key
            scale = torch.tensor([W / sw, H / sh], device=flow_to_prev.device).view(1, 2, 1, 1)
            flow = self._to_input_resolution(flow_to_prev * scale, prep, key)[0]
            out.flow = flow.permute(1, 2, 0).cpu().numpy()
        return out
