"""The node's parameters outside ROS: a ROS 2 params file plus ``key=value`` overrides.

``sfm-ros bag`` and ``sfm-ros eval`` build the same `PipelineConfig` the node gets from
``config/sfm.yaml`` and ``--ros-args -p``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from sfm_ros.core.config import parse_overrides
from sfm_ros.core.errors import ConfigError
from sfm_ros.pipeline.config import PipelineConfig

log = logging.getLogger(__name__)


def load_params_file(path: str | Path, node: str = "depth_odometry") -> dict[str, Any]:
    """``ros__parameters`` that a ROS 2 params file gives the node ``node``.

    Entries apply when their key is ``/**`` or names the node (``node``, ``/ns/node``,
    ``/**/node``); node-specific entries override wildcard ones, as rcl does. A file with a
    single entry is used whatever its node name.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"params file {path} is not valid YAML: {exc}") from None
    entries = [
        (str(key), value["ros__parameters"] or {})
        for key, value in (data.items() if isinstance(data, dict) else [])
        if isinstance(value, dict) and "ros__parameters" in value
    ]
    wildcard = [params for key, params in entries if key.strip("/") == "**"]
    named = [params for key, params in entries if key.rstrip("/").split("/")[-1] == node]
    if not wildcard and not named and len(entries) == 1:
        named = [entries[0][1]]
    if not wildcard and not named:
        raise ConfigError(
            f"params file {path} has no '{node}: ros__parameters: {{...}}' (or '/**') entry"
        )
    merged: dict[str, Any] = {}
    for params in wildcard + named:
        merged.update(params)
    return merged


def pipeline_config(
    params_file: str | Path | None = None,
    overrides: list[str] | None = None,
    checkpoint: str | None = None,
) -> PipelineConfig:
    """Config from a params file (unknown node parameters ignored), then strict overrides."""
    cfg = PipelineConfig()
    if params_file:
        values = load_params_file(params_file)
        if unknown := sorted(set(values) - set(PipelineConfig.defaults())):
            log.info("params file: ignoring node-only parameters %s", ", ".join(unknown))
        cfg = PipelineConfig.from_mapping(values, cfg, strict=False)
    cfg = PipelineConfig.from_mapping(parse_overrides(overrides or []), cfg)
    if checkpoint:
        cfg = PipelineConfig.from_mapping({"checkpoint": str(checkpoint)}, cfg)
    return cfg
