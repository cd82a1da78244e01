"""Typed configuration: dataclasses filled from YAML recipes and ``key=value`` overrides.

A recipe is a YAML mapping whose keys are fields of a dataclass (nested dataclasses are nested
mappings, addressed on the command line with dots: ``optim.lr=0.1``). Unknown keys and values of
the wrong type are errors that name the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A recipe or override that does not fit the configuration's fields."""


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a command-line string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))) \
                and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{key}: cannot be None")
    if origin is typing.Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads on/off as booleans
            value = "on" if value else "off"
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
    if origin is dict:
        if isinstance(value, str) and value.strip().startswith("{"):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, inner, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [
                v for v in value.split(",") if v.strip()
            ]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, key) for v in value]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, checking keys and types."""
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]!s}; valid keys: {', '.join(prefix + k for k in types_)}"
        )
    kwargs = {k: _coerce(v, types_[k], prefix + k) for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A plain, YAML/JSON-serialisable mapping of a configuration dataclass."""
    out = dataclasses.asdict(cfg)

    def fix(v: Any) -> Any:
        if isinstance(v, tuple):
            return [fix(x) for x in v]
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        return v

    return fix(out)


def apply_overrides(cfg: T, overrides: list[str]) -> T:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied (dots address nested fields)."""
    data = to_dict(cfg)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        node: dict[str, Any] = data
        cls: type = type(cfg)
        parts = key.split(".")
        for i, part in enumerate(parts):
            types_ = _field_types(cls)
            if part not in types_:
                where = ".".join(parts[:i])
                valid = ", ".join((where + "." if where else "") + k for k in types_)
                raise ConfigError(f"unknown key {key!r}; valid keys: {valid}")
            if i == len(parts) - 1:
                node[part] = _coerce(_parse_scalar(raw), types_[part], key)
            elif typing.get_origin(types_[part]) is dict and i == len(parts) - 2:   # a mapping's entry
                entry = {parts[-1]: _parse_scalar(raw)}
                node[part] = {**(node.get(part) or {}), **_coerce(entry, types_[part], ".".join(parts[:-1]))}
                break
            else:
                sub = types_[part]
                if not dataclasses.is_dataclass(sub):
                    raise ConfigError(f"{key!r}: {part} has no sub-keys")
                node = node[part]
                cls = sub
    return from_dict(type(cfg), data)


def _parse_scalar(raw: str) -> Any:
    """Read a command-line value the way YAML would (numbers, booleans, lists, null)."""
    try:
        parsed = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(parsed, dict) else parsed


def deep_update(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``base`` with ``new`` laid over it; nested mappings are merged key by key."""
    out = dict(base)
    for k, v in new.items():
        out[k] = deep_update(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_recipe(path: str | Path, what: str = "configuration") -> dict[str, Any]:
    """The mapping a YAML recipe holds (unchecked); errors name the file and what was expected."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"recipe {p}: is a directory (expected a YAML file of {what} fields)")
    if not p.is_file():
        raise ConfigError(f"recipe {p}: no such file (expected a YAML mapping of {what} fields)")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"recipe {p}: not valid YAML text ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {p}: expected a YAML mapping of {what} fields")
    return data


def load_recipe(cls: type[T], path: str | Path | None, overrides: list[str] | None = None,
                base: dict[str, Any] | None = None) -> T:
    """Load ``cls`` from a YAML recipe (or its defaults when ``path`` is None), then apply overrides.

    ``base``: a (partial, nested) mapping laid over the dataclass defaults beneath the recipe,
    e.g. a method's own defaults: the recipe and the overrides win over it."""
    data = deep_update(base or {}, read_recipe(path, cls.__name__) if path is not None else {})
    try:
        cfg = from_dict(cls, deep_update(to_dict(cls()), data))
    except ConfigError as exc:
        raise ConfigError(f"recipe {path}: {exc}" if path is not None else str(exc)) from None
    return apply_overrides(cfg, overrides or [])


def save_recipe(cfg: Any, path: str | Path) -> None:
    """Write a configuration as a YAML recipe that :func:`load_recipe` reads back."""
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as ``{"section.key": value}`` (the names ``key=value`` overrides use)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out
