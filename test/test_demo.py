"""`sfm-ros demo` end to end on a short sample (the real one uses the packaged model)."""

from __future__ import annotations

import json
from pathlib import Path

from rosbags.highlevel import AnyReader

from sfm_ros.demo import run_demo


def test_demo_writes_bag_previews_plot_and_metrics(tiny_checkpoint: Path, tmp_path: Path):
    out = tmp_path / "demo"
    metrics = run_demo(out, checkpoint=str(tiny_checkpoint), frames=12)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["sample"] == metrics["sample"] == "synthetic:street:12:1000"
    for key in ("default_model", "after_warmup"):
        assert 0 <= saved[key]["depth"]["a1"] <= 1
        assert saved[key]["pose"]["ate5_mean"] >= 0
    assert saved["warmup"]["frames"] == 12
    previews = out / "output_bag_previews"
    assert (previews / "trajectory.png").is_file() and list(previews.glob("depth_*.png"))
    with AnyReader([out / "output_bag"]) as reader:
        topics = {c.topic: c.msgcount for c in reader.connections}
    assert topics["/sfm/depth"] == topics["/camera/image_raw"] == 12
    assert topics["/sfm/odom"] == 12
