"""Shared parameter-dataclass machinery: coerce, param, Params.from_mapping / replace."""

from dataclasses import dataclass

import pytest

from sfm_ros.core.errors import ConfigError
from sfm_ros.core.params import Params, coerce, param, section
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


@dataclass
class Inner(Params):
    """A nested section."""

    mode: str = param("a", "a choice", choices=("a", "b"))
    topic: str | None = param(None, "optional topic", optional=str)
    names: list = param(["x"], "some strings")


@dataclass
class Outer(Params):
    """A config with a section."""

    inner: Inner = section(Inner, "the inner section")
    rate: float = param(1.0, "a rate")


def test_choices_optional_string_lists_and_sections():
    cfg = Outer.from_mapping({"inner": {"mode": "b", "topic": "/t", "names": "y"}, "rate": 2})
    assert cfg.inner == Inner(mode="b", topic="/t", names=["y"]) and cfg.rate == 2.0
    assert Outer.from_mapping({"inner": {"topic": None}}, cfg).inner.topic is None
    assert cfg.to_dict()["inner"]["names"] == ["y"]
    with pytest.raises(ConfigError, match=r"'inner.mode' must be one of \['a', 'b'\]"):
        Outer.from_mapping({"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match="'inner.topic' must be a str"):
        Outer.from_mapping({"inner": {"topic": 3}})
    with pytest.raises(ConfigError, match="'inner.names' must be a list of strings"):
        Outer.from_mapping({"inner": {"names": [1]}})
    with pytest.raises(ConfigError, match="'inner' is a section"):
        Outer.from_mapping({"inner": 3})
    with pytest.raises(ConfigError, match="unknown parameter 'inner.bogus'"):
        Outer.from_mapping({"inner": {"bogus": 1}})
    assert Outer.from_mapping({"inner": {"bogus": 1}}, strict=False) == Outer()


def test_training_config_is_params_with_sections():
    from sfm_ros.core.config import config_from_dict, load_config

    cfg = load_config(overrides=["optim.lr=1e-3", "data.train=synthetic:field:10:0"])
    assert cfg.optim.lr == 1e-3 and cfg.data.train == ["synthetic:field:10:0"]
    assert config_from_dict({**cfg.to_dict(), "retired_option": 1}) == cfg
    with pytest.raises(ConfigError, match="'model.rotation' must be one of"):
        load_config(overrides=["model.rotation=quaternion"])
    with pytest.raises(ConfigError, match="data.snippet_length must be 3 or 5"):
        load_config(overrides=["data.snippet_length=4"])
    with pytest.raises(ConfigError, match="render_workers must be >= 0"):
        load_config(overrides=["data.render_workers=-1"])


def test_boolean_looking_choices_take_bools_and_are_declared_dynamic():
    @dataclass
    class Tri(Params):
        """auto / true / false, as the pipeline's ``rectified``."""

        rectified: str = param("auto", "tri-state", choices=("auto", "true", "false"))

    assert Tri.from_mapping({"rectified": True}).rectified == "true"
    assert Tri.from_mapping({"rectified": False}).rectified == "false"
    assert Tri.from_mapping({"rectified": "auto"}).rectified == "auto"
    with pytest.raises(ConfigError, match="must be one of"):
        Tri.from_mapping({"rectified": "maybe"})
    (spec,) = parameter_specs(Tri)
    assert spec.type_name is None and spec.default == "auto"  # ROS may hand over a bool
