"""Flat parameter dataclasses: every field has a default and a one-line description.

The field names are the ROS parameter names; ``sfm_ros.ros.node_utils`` declares them from
``field.metadata["description"]``. Values from YAML, the command line or rclpy go through
:func:`coerce`, so a parameter always keeps the type of its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field, fields
from typing import Any, TypeVar

from sfm_ros.core.errors import ConfigError

P = TypeVar("P", bound="Params")


def param(default: Any, description: str) -> Any:
    """A dataclass field with ``default`` (lists are copied per instance) and a description."""
    metadata = {"description": description}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def coerce(name: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``, or ConfigError naming ``name``.

    bool, int and str must match exactly; floats also accept ints and numeric strings (YAML
    reads ``1e-4`` as a string); lists must hold numbers and become lists of floats.
    """
    kind = type(default)
    if kind is float and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"parameter {name!r} must be a number, got {value!r}") from None
    ok = {
        bool: lambda: isinstance(value, bool),
        int: lambda: isinstance(value, int) and not isinstance(value, bool),
        float: lambda: _is_number(value),
        str: lambda: isinstance(value, str),
        list: lambda: isinstance(value, list | tuple) and all(_is_number(v) for v in value),
    }.get(kind)
    if ok is None:
        raise ConfigError(f"parameter {name!r} has an unsupported default {default!r}")
    if not ok():
        raise ConfigError(f"parameter {name!r} must be a {kind.__name__}, got {value!r}")
    return [float(v) for v in value] if kind is list else kind(value)


class Params:
    """Mixin of a ``@dataclass`` whose fields are all made with :func:`param`.

    Subclasses override :meth:`validate` to check values against each other.
    """

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Parameter name -> one-line description."""
        return {f.name: f.metadata["description"] for f in fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Parameter name -> default value."""
        return {
            f.name: f.default if f.default is not MISSING else f.default_factory()
            for f in fields(cls)
        }

    @classmethod
    def from_mapping(
        cls: type[P], values: dict[str, Any], base: P | None = None, strict: bool = True
    ) -> P:
        """A validated instance: ``base`` (or the defaults) updated with ``values``.

        Each value is converted with :func:`coerce`. Unknown names raise ConfigError when
        ``strict``, else are ignored.
        """
        current = (base if base is not None else cls()).to_dict()
        defaults = cls.defaults()
        for name, value in values.items():
            if name not in current:
                if strict:
                    raise ConfigError(
                        f"unknown parameter {name!r}; known: {', '.join(sorted(current))}"
                    )
                continue
            current[name] = coerce(name, value, defaults[name])
        obj = cls(**current)
        obj.validate()
        return obj

    def replace(self: P, **changes: Any) -> P:
        """A validated copy with some parameters changed (unknown names raise ConfigError)."""
        return type(self).from_mapping(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """Parameter name -> value (lists copied)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid parameter; nothing to check here."""
