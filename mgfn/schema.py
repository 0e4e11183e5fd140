"""One schema for every YAML the project reads, taken from the dataclasses that hold the settings.

A setting is a dataclass field (or a keyword parameter of a class such as `FeatureExtractor`): its type hint is
its type and its default its default; `setting(...)` adds help text, a range, choices and, for a nested mapping,
the schema of that section. `check` holds a YAML mapping against it before any work starts and reports the first
problem in one line naming the file, the section and the key: an unknown setting (with the closest valid name),
a wrong type, a value out of range, a missing required setting.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mgfn.errors import InputError



class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()           # the default of a setting that has none
_META = ("help", "min", "max", "choices", "schema")


def setting(default=MISSING, *, factory=MISSING, help="", min=None, max=None, choices=None, schema=None):
    """A dataclass field with its help text, its range (`min`/`max`, inclusive), its `choices` (for text values)
    and, for a nested mapping, its `schema`: a dataclass, or a function of the enclosing section that returns one."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "schema": schema}
    return field(default=default, default_factory=factory,
                 metadata={k: v for k, v in meta.items() if v is not None and v != ""})


@dataclass(frozen=True)
class Setting:
    name: str
    type: Any = Any
    default: Any = REQUIRED
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    schema: Any = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def settings(schema) -> dict[str, Setting]:
    """{name: Setting} of a dataclass (its init fields) or of a class or function (its keyword parameters)."""
    if isinstance(schema, dict):
        return schema
    if dataclasses.is_dataclass(schema):
        hints = typing.get_type_hints(schema)
        out = {}
        for f in dataclasses.fields(schema):
            if f.init:
                default = (f.default if f.default is not MISSING
                           else f.default_factory() if f.default_factory is not MISSING else REQUIRED)
                meta = {k: v for k, v in f.metadata.items() if k in _META}
                out[f.name] = Setting(f.name, hints.get(f.name, Any), default, **meta)
        return out
    hints = typing.get_type_hints(schema.__init__ if isinstance(schema, type) else schema)
    return {p.name: Setting(p.name, hints.get(p.name, Any), REQUIRED if p.default is p.empty else p.default)
            for p in inspect.signature(schema).parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def read_yaml(path, what: str = "config file"):
    """A YAML file's contents; a missing, unreadable or unparseable file is one InputError line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(f"{path}: not valid YAML{at}: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it ({exc})") from None


def check(data, schema, where, section: str = "") -> dict:
    """`data` (a YAML mapping) held against `schema` (a dataclass, a class, or {name: Setting}), nested sections
    too. Returns it with numbers written as text (YAML reads `1e-3` as text) made numbers."""
    spec = settings(schema)
    if not isinstance(data, dict):
        raise InputError(f"{where}: {section + ': ' if section else ''}expected a mapping (name: value lines), "
                         f"got {_kind(data)}")
    for key in data:
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = (f"did you mean {close[0]}?" if close else f"known: {', '.join(spec)}" if spec
                    else "this section takes no settings")
            raise InputError(f"{where}: {_key(section, key)}: unknown setting ({hint})")
    for s in spec.values():
        if s.required and s.name not in data:
            raise InputError(f"{where}: {_key(section, s.name)}: missing required setting"
                             + (f" ({s.help})" if s.help else ""))
    return {key: _value(value, spec[key], where, _key(section, key), data) for key, value in data.items()}


def _value(value, s: Setting, where, key: str, parent: dict):
    schema = s.schema
    if schema is not None and not isinstance(schema, (type, dict)):
        schema = schema(parent)
    if schema is not None and value is None and not _convert(None, s.type)[0]:
        value = {}                                   # `train:` with nothing under it: an empty section
    args = typing.get_args(s.type)
    if typing.get_origin(s.type) is dict and len(args) == 2 and isinstance(value, dict):   # name the entry
        return {k: _value(v, Setting(str(k), args[1]), where, f"{key}.{k}", value) for k, v in value.items()}
    ok, value = _convert(value, s.type)
    if not ok:
        raise InputError(f"{where}: {key}: expected {_describe(s.type)}, got {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (
            (s.min is not None and value < s.min) or (s.max is not None and value > s.max)):
        bounds = (f"from {s.min} to {s.max}" if s.min is not None and s.max is not None
                  else f">= {s.min}" if s.min is not None else f"<= {s.max}")
        raise InputError(f"{where}: {key}: expected {_describe(s.type)} {bounds}, got {_show(value)}")
    if s.choices and isinstance(value, str) and value not in s.choices:
        close = difflib.get_close_matches(value, list(s.choices), n=1)
        raise InputError(f"{where}: {key}: expected one of {', '.join(map(str, s.choices))}, got {_show(value)}"
                         + (f" (did you mean {close[0]}?)" if close else ""))
    if schema is not None and isinstance(value, dict):
        value = check(value, schema, where, key)
    return value


def _convert(value, tp) -> tuple[bool, Any]:
    """(does `value` fit the type hint `tp`, the value with numbers written as text made numbers)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return True, value
    if origin in (typing.Union, types.UnionType):
        for arm in args:
            ok, out = _convert(value, arm)
            if ok:
                return True, out
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, str):
            try:
                return True, float(value)
            except ValueError:
                return False, value
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if tp in (str, Path):
        return isinstance(value, str), value
    if origin is typing.Literal:
        return value in args, value
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, value
        items = [_convert(v, args[0] if args else Any) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            return False, value
        items = {k: _convert(v, args[1] if args else Any) for k, v in value.items()}
        keys_ok = all(_convert(k, args[0])[0] for k in value) if args else True
        return keys_ok and all(ok for ok, _ in items.values()), {k: v for k, (_, v) in items.items()}
    return (isinstance(value, tp) if isinstance(tp, type) else True), value


_NAMES = {int: ("an integer", "integers"), float: ("a number", "numbers"), bool: ("true or false", "true/false values"),
          str: ("a string", "strings"), Path: ("a path", "paths"), dict: ("a mapping", "mappings"),
          list: ("a list", "lists"), tuple: ("a list", "lists")}


def _describe(tp, plural: bool = False) -> str:
    """`float | None` -> "a number"; `tuple[int, ...]` -> "a list of integers"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a, plural) for a in args if a is not type(None))
    if tp in _NAMES:
        return _NAMES[tp][plural]
    if origin in (list, tuple):
        return ("lists" if plural else "a list") + (f" of {_describe(args[0], True)}" if args and args[0] is not Any else "")
    if origin is dict:
        return ("mappings" if plural else "a mapping") + (f" to {_describe(args[1], True)}" if args else "")
    if origin is typing.Literal:
        return "one of " + ", ".join(map(str, args))
    return getattr(tp, "__name__", str(tp))


def _kind(value) -> str:
    if value is None:
        return "nothing"
    kind = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}.get(type(value))
    return f"{kind} ({_show(value)})" if kind else type(value).__name__


def _show(value) -> str:
    text = "nothing (null)" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _key(section: str, key) -> str:
    return f"{section}.{key}" if section else str(key)


def describe(schema) -> list[str]:
    """One line per setting: name, type, default and help (for documentation and tests)."""
    lines = []
    for s in settings(schema).values():
        default = "required" if s.required else f"default {s.default!r}"
        lines.append(f"{s.name}: {_describe(s.type)}, {default}" + (f" - {s.help}" if s.help else ""))
    return lines
