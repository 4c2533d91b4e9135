"""Shared parameter-dataclass machinery: coerce, param, Params.from_mapping / replace."""

from dataclasses import dataclass

import pytest

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.params import Params, coerce, param
from sfm_ros.ros.node_utils import parameter_specs


@dataclass
class Demo(Params):
    """A toy parameter set."""

    rate: float = param(2.0, "a rate")
    count: int = param(3, "a count")
    name: str = param("a", "a name")
    flag: bool = param(False, "a flag")
    values: list = param([], "some numbers")

    def validate(self) -> None:
        if self.count < 0:
            raise ConfigError(f"count must be >= 0, got {self.count}")


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (3, 1.0, 3.0),
        ("1e-4", 1.0, 1e-4),
        (True, False, True),
        (7, 1, 7),
        ("x", "", "x"),
        ((1, 2.5), [], [1.0, 2.5]),
    ],
)
def test_coerce_accepts_and_converts(value, default, expected):
    out = coerce("p", value, default)
    assert out == expected and type(out) is type(default)


@pytest.mark.parametrize(
    ("value", "default"),
    [("fast", 1.0), (True, 1.0), (2.5, 1), (True, 1), ("yes", False), (3, ""), ([1, "a"], [])],
)
def test_coerce_rejects_wrong_types(value, default):
    with pytest.raises(ConfigError, match="'p'"):
        coerce("p", value, default)


def test_param_list_defaults_are_not_shared_and_specs_see_descriptions():
    a, b = Demo(), Demo()
    a.values.append(1.0)
    assert b.values == [] and Demo.defaults()["values"] == []
    assert Demo.descriptions()["rate"] == "a rate"
    assert [s.name for s in parameter_specs(Demo)] == list(Demo.defaults())


def test_from_mapping_and_replace():
    cfg = Demo.from_mapping({"rate": 5, "values": [1, 2]})
    assert cfg.rate == 5.0 and isinstance(cfg.rate, float) and cfg.values == [1.0, 2.0]
    changed = cfg.replace(count=0)
    assert changed.count == 0 and changed.rate == 5.0 and cfg.count == 3
    assert Demo.from_mapping({"count": 1}, base=changed).rate == 5.0
    assert Demo.from_mapping({"bogus": 1}, strict=False) == Demo()
    d = cfg.to_dict()
    d["values"].append(9.0)
    assert cfg.values == [1.0, 2.0]
    with pytest.raises(ConfigError, match="unknown parameter 'bogus'"):
        cfg.replace(bogus=1)
    with pytest.raises(ConfigError, match="count must be >= 0"):
        cfg.replace(count=-1)
    with pytest.raises(ConfigError, match="'flag'"):
        Demo.from_mapping({"flag": 1})
