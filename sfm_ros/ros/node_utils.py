"""Helpers shared by the rclpy nodes: parameters from a dataclass, QoS, logging, diagnostics.

Importable without ROS: the pure parts (parameter specs, value normalisation, the logging
bridge) are tested offline; functions taking a ``node`` import rclpy when called.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sfm_ros.core.errors import ConfigError, SfmError
from sfm_ros.core.params import Params, param

QOS_NAMES = ("sensor_data", "reliable")

_SCALAR_TYPES = {bool: "BOOL", int: "INTEGER", float: "DOUBLE", str: "STRING"}


@dataclass
class NodeConfig(Params):
    """ROS-side settings of a camera node (the pipeline does not see them)."""

    image_qos: str = param(
        "sensor_data", "QoS of the camera inputs: sensor_data (best effort) or reliable"
    )
    queue_depth: int = param(5, "history depth of the camera inputs and the outputs")
    diagnostics_period: float = param(1.0, "seconds between /diagnostics messages")

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid setting."""
        if self.image_qos not in QOS_NAMES:
            raise ConfigError(f"image_qos must be one of {QOS_NAMES}, got {self.image_qos!r}")
        if self.queue_depth < 1:
            raise ConfigError(f"queue_depth must be >= 1, got {self.queue_depth}")
        if not self.diagnostics_period > 0:
            raise ConfigError(f"diagnostics_period must be > 0, got {self.diagnostics_period}")


@dataclass
class DepthNodeConfig(NodeConfig):
    """ROS-side settings of the depth_odometry node."""

    max_observed_frames: int = param(
        30,
        "frames that arrive while the worker is busy, at most this many, are kept for the "
        "pose network (3-8 ms each on one CPU thread) before the newest is processed: it sees "
        "those that make its pairs as long as the motions it learnt (every one for a car at "
        "10 Hz, every 2nd to 20th for a handheld camera at 30 Hz), and the stream's gaps are "
        "the camera's (a synthetic street processed at every 1-3 frames: 5-frame ATE 0.18 -> "
        "0.03); 0 = only the newest frame is used",
    )

    def validate(self) -> None:
        super().validate()
        if self.max_observed_frames < 0:
            raise ConfigError(f"max_observed_frames must be >= 0, got {self.max_observed_frames}")


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter derived from a dataclass field."""

    name: str
    default: Any
    type_name: str | None
    """``rclpy.Parameter.Type`` member (``"DOUBLE"``, ``"STRING_ARRAY"``...); None = dynamic."""
    description: str


def _type_name(default: Any) -> str | None:
    if isinstance(default, list | tuple):
        if not default:
            return None  # rclpy would type [] as a byte array; any array is accepted instead
        item = _SCALAR_TYPES.get(type(default[0]))
        return None if item is None else f"{item}_ARRAY"
    return _SCALAR_TYPES.get(type(default))


def parameter_specs(cls: type) -> list[ParamSpec]:
    """Name, default, type and description of every field of a config dataclass.

    The description comes from ``field(metadata={"description": ...})``; the type from the
    default. Raises ConfigError for a field without default or description, or whose default
    is not a ROS parameter value (bool, int, float, str or a list of one of them).
    """
    specs = []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise ConfigError(f"parameter '{f.name}' of {cls.__name__} has no default")
        description = f.metadata.get("description")
        if not description:
            raise ConfigError(f"parameter '{f.name}' of {cls.__name__} has no description")
        type_name = _type_name(default)
        if type_name is None and default != []:
            raise ConfigError(f"parameter '{f.name}' default {default!r} is not a ROS value")
        if f.metadata.get("choices"):
            type_name = None  # e.g. "auto" | "true" | "false": ROS reads true as a bool
        specs.append(ParamSpec(f.name, default, type_name, description))
    return specs


def parameter_value(value: Any, default: Any) -> Any:
    """A value read from rclpy -> plain Python: None (unset) -> default, arrays -> lists."""
    if value is None:
        return default
    if isinstance(default, list | tuple):
        return list(value)
    return value


def declare_parameters(node: Any, cls: type) -> dict[str, Any]:
    """Declare every field of ``cls`` as a read-only parameter of ``node``; return the values.

    Fields with an empty-list default are declared with dynamic typing (the parameter file
    parser rejects ``[]`` and rclpy types it as bytes) and read back as the default when unset;
    so are fields with choices, whose values the config's `coerce` checks.
    """
    from rcl_interfaces.msg import ParameterDescriptor

    values = {}
    for spec in parameter_specs(cls):
        descriptor = ParameterDescriptor(description=spec.description, read_only=True)
        if spec.type_name is None:
            descriptor.dynamic_typing = True
            node.declare_parameter(
                spec.name, spec.default if spec.default != [] else None, descriptor
            )
        else:
            node.declare_parameter(spec.name, spec.default, descriptor)
        value = node.get_parameter_or(spec.name).value  # None when unset
        values[spec.name] = parameter_value(value, spec.default)
    return values


def qos_profile(name: str, depth: int) -> Any:
    """``QoSProfile``: keep last ``depth``, volatile; best effort for 'sensor_data'."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    reliability = {
        "sensor_data": ReliabilityPolicy.BEST_EFFORT,
        "reliable": ReliabilityPolicy.RELIABLE,
    }[name]
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability,
        durability=DurabilityPolicy.VOLATILE,
    )


def latched_qos() -> Any:
    """Reliable, transient local, depth 1: a late subscriber still gets the last message."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=1,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


class RosLogHandler(logging.Handler):
    """Forwards ``logging`` records to an rclpy logger (which has no %-style arguments)."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger

    def emit(self, record: logging.LogRecord) -> None:
        # rclpy ties one severity to each calling line (Humble raises "Logger severity cannot
        # be changed between calls"), so every severity gets a call of its own.
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.ros_logger.error(message)
        elif record.levelno >= logging.WARNING:
            self.ros_logger.warning(message)
        elif record.levelno >= logging.INFO:
            self.ros_logger.info(message)
        else:
            self.ros_logger.debug(message)


def ros_logging_bridge(ros_logger: Any, name: str) -> logging.Logger:
    """A ``logging.Logger`` named ``name`` whose records all go to ``ros_logger``."""
    logger = logging.getLogger(name)
    logger.handlers = [RosLogHandler(ros_logger)]
    logger.setLevel(logging.DEBUG)  # the rclpy logger applies its own level
    logger.propagate = False
    return logger


DiagnosticsFn = Callable[[], tuple[str, str, Mapping[str, Any]]]
"""Returns ``(level, message, values)``; level is ``"OK"``, ``"WARN"`` or ``"ERROR"``."""


def start_diagnostics(node: Any, name: str, period_s: float, report: DiagnosticsFn) -> Any:
    """Publish ``report()`` as a ``DiagnosticArray`` on ``/diagnostics`` every ``period_s``.

    Uses ``diagnostic_updater`` when installed (it also declares ``diagnostic_updater.period``),
    otherwise a timer and a publisher of the same message. Returns the updater or the timer;
    keep a reference for the life of the node.
    """
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

    hardware_id = node.get_fully_qualified_name()
    try:
        import diagnostic_updater
    except ImportError:
        diagnostic_updater = None

    if diagnostic_updater is not None:

        def fill(stat: Any) -> Any:
            level, message, values = report()
            stat.summary(getattr(DiagnosticStatus, level), message)
            for key, value in values.items():
                stat.add(str(key), str(value))
            return stat

        updater = diagnostic_updater.Updater(node, period=period_s)
        updater.setHardwareID(hardware_id)
        updater.add(name, fill)
        return updater

    publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 1)

    def publish() -> None:
        level, message, values = report()
        status = DiagnosticStatus(
            level=getattr(DiagnosticStatus, level),
            name=f"{node.get_name()}: {name}",
            message=message,
            hardware_id=hardware_id,
            values=[KeyValue(key=str(k), value=str(v)) for k, v in values.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(array)

    return node.create_timer(period_s, publish)


def run_nodes(
    program: str,
    *builders: Callable[[list[Any]], Any],
    args: list[str] | None = None,
    multi_threaded: bool = True,
) -> int:
    """Entry point body: init rclpy, build the nodes in order (each builder gets the nodes
    built so far), spin until Ctrl-C or shutdown, then destroy them in reverse order.

    Returns the exit code: 0, or 2 (the reason on stderr) when a node cannot start.
    """
    import rclpy
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    nodes: list[Any] = []
    try:
        for build in builders:
            nodes.append(build(nodes))
    except SfmError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor() if multi_threaded else SingleThreadedExecutor()
    for node in nodes:
        executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        for node in reversed(nodes):
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
