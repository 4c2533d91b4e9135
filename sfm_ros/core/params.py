"""Parameter dataclasses, the one configuration mechanism of the package.

Every field has a default and a one-line description (:func:`param`), or is a nested section
(:func:`section`, for the training config). Node configs are flat: their field names are the
ROS parameter names, which ``sfm_ros.ros.node_utils`` declares from
``field.metadata["description"]``. Values from YAML, the command line or rclpy go through
:func:`coerce`, so a parameter always keeps the type of its default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, field, fields
from typing import Any, TypeVar

from sfm_ros.core.errors import ConfigError

P = TypeVar("P", bound="Params")


def param(
    default: Any,
    description: str,
    *,
    choices: tuple[str, ...] = (),
    optional: type | None = None,
) -> Any:
    """A dataclass field with ``default`` (lists are copied per instance) and a description.

    ``choices``: the allowed values of a string parameter. ``optional``: the type of a
    parameter whose default is None (e.g. ``str`` for "a topic, or None to auto-detect").
    """
    metadata = {"description": description, "choices": choices, "optional": optional}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def section(cls: type, description: str) -> Any:
    """A nested `Params` section (default: ``cls()``), set from a mapping."""
    return field(default_factory=cls, metadata={"description": description, "section": True})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def coerce(
    name: str,
    value: Any,
    default: Any,
    choices: tuple[str, ...] = (),
    optional: type | None = None,
) -> Any:
    """``value`` converted to the type of ``default``, or ConfigError naming ``name``.

    bool, int and str must match exactly; floats also accept ints and numeric strings (YAML
    reads ``1e-4`` as a string); lists of numbers become lists of floats, and a list whose
    default holds strings takes strings (a single string becomes a one-item list). A string
    must be one of ``choices`` when given (a bool becomes "true"/"false" when those are
    choices); with ``optional`` the value may also be None.
    """
    if optional is not None and (value is None or default is None):
        return None if value is None else coerce(name, value, optional(), choices)
    if isinstance(default, list) and default and all(isinstance(v, str) for v in default):
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"parameter {name!r} must be a list of strings, got {value!r}")
        return list(items)
    if choices and isinstance(value, bool) and {"true", "false"} <= set(choices):
        value = "true" if value else "false"  # YAML and ROS read a bare true as a bool
    if choices and value not in choices:
        raise ConfigError(f"parameter {name!r} must be one of {list(choices)}, got {value!r}")
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
        cls: type[P],
        values: dict[str, Any],
        base: P | None = None,
        strict: bool = True,
        where: str = "",
    ) -> P:
        """A validated instance: ``base`` (or the defaults) updated with ``values``.

        Each value is converted with :func:`coerce`; a section takes a mapping, applied
        recursively. Unknown names raise ConfigError when ``strict``, else are ignored.
        ``where`` prefixes names in messages (``"optim."``).
        """
        base = base if base is not None else cls()
        known = {f.name: f for f in fields(cls)}
        defaults = cls.defaults()
        changes: dict[str, Any] = {}
        for name, value in values.items():
            f = known.get(name)
            if f is None:
                if strict:
                    raise ConfigError(
                        f"unknown parameter '{where}{name}'; known: {', '.join(sorted(known))}"
                    )
                continue
            if f.metadata.get("section"):
                if not isinstance(value, dict):
                    raise ConfigError(f"parameter '{where}{name}' is a section: give a mapping")
                current = getattr(base, name)
                changes[name] = type(current).from_mapping(
                    value, current, strict, f"{where}{name}."
                )
            else:
                meta = f.metadata
                changes[name] = coerce(
                    f"{where}{name}",
                    value,
                    defaults[name],
                    meta.get("choices", ()),
                    meta.get("optional"),
                )
        obj = dataclasses.replace(base, **changes)
        obj.validate()
        return obj

    def replace(self: P, **changes: Any) -> P:
        """A validated copy with some parameters changed (unknown names raise ConfigError)."""
        return type(self).from_mapping(changes, base=self)

    def to_dict(self) -> dict[str, Any]:
        """Parameter name -> value (lists copied, sections as nested dicts)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid parameter; nothing to check here."""
