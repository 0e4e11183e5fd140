"""ViPER-GT XML reader: the `config` section (descriptors FILE / OBJECT / CONTENT and their attributes) and the
`data` section (per source file, descriptor instances with framespans and typed attribute values).

Framespans are space-separated inclusive `a:b` ranges. Values keep their type: bbox, obox, point, polygon,
circle, dvalue, fvalue, svalue, bvalue, lvalue (and any other element, kept as its raw XML attributes).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from mgfn.errors import InputError

VIPER_NS = "http://lamp.cfar.umd.edu/viper#"
DATA_NS = "http://lamp.cfar.umd.edu/viperdata#"
DESCRIPTOR_TYPES = ("FILE", "OBJECT", "CONTENT")
_INT_FIELDS = {"x", "y", "width", "height", "rotation", "radius"}


@dataclass
class AttributeSpec:
    name: str
    type: str                 # the value type's local name: bbox, svalue, lvalue, ...
    dynamic: bool = False
    choices: list[str] = field(default_factory=list)   # lvalue possibilities


@dataclass
class Descriptor:
    name: str
    type: str                 # FILE | OBJECT | CONTENT
    attributes: dict[str, AttributeSpec] = field(default_factory=dict)


@dataclass
class Value:
    type: str
    value: object             # int, float, str, bool, or a dict of coordinates / a list of points
    framespan: list[tuple[int, int]] | None = None


@dataclass
class Instance:
    """One FILE / OBJECT / CONTENT record of a source file."""

    descriptor: str
    type: str
    id: str
    framespan: list[tuple[int, int]] | None
    attributes: dict[str, list[Value]] = field(default_factory=dict)

    def values(self, attribute: str) -> list[Value]:
        return self.attributes.get(attribute, [])


@dataclass
class SourceFile:
    filename: str
    instances: list[Instance] = field(default_factory=list)

    def of_type(self, kind: str) -> list[Instance]:
        return [i for i in self.instances if i.type == kind]


@dataclass
class ViperFile:
    path: Path
    descriptors: dict[str, Descriptor]
    sourcefiles: list[SourceFile]

    def describe(self) -> str:
        """`Person (OBJECT): Location, Action; Information (FILE): NUMFRAMES` — what the file's config declares."""
        return "; ".join(f"{d.name} ({d.type}): {', '.join(d.attributes) or 'no attributes'}"
                         for d in self.descriptors.values()) or "no descriptors"


def parse_framespan(text: str | None, where: str = "") -> list[tuple[int, int]] | None:
    """`"1:20 30:40"` -> [(1, 20), (30, 40)]; None when absent."""
    if text is None:
        return None
    spans = []
    for part in text.split():
        a, sep, b = part.partition(":")
        try:
            start, end = int(a), int(b if sep else a)
        except ValueError:
            raise InputError(f"{where}: bad framespan {text!r} (expected space-separated a:b ranges)") from None
        if end < start:
            raise InputError(f"{where}: framespan range {part!r} ends before it starts")
        spans.append((start, end))
    return spans


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _value(elem: ET.Element, where: str) -> Value:
    kind = _local(elem.tag)
    a = elem.attrib
    span = parse_framespan(a.get("framespan"), where)
    try:
        if kind == "dvalue":
            v = int(a["value"])
        elif kind == "fvalue":
            v = float(a["value"])
        elif kind == "bvalue":
            v = a["value"].strip().lower() == "true"
        elif kind in ("svalue", "lvalue"):
            v = a["value"]
        elif kind in ("bbox", "obox", "point", "circle"):
            v = {k: int(val) for k, val in a.items() if k in _INT_FIELDS}
        elif kind == "polygon":
            v = [(int(p.get("x")), int(p.get("y"))) for p in elem if _local(p.tag) == "point"]
        else:
            v = {k: val for k, val in a.items() if k != "framespan"}
    except (KeyError, ValueError) as exc:
        raise InputError(f"{where}: bad {kind} value {dict(a)} ({exc})") from None
    return Value(kind, v, span)


def read_viper(path) -> ViperFile:
    """Parse a ViPER-GT XML file (namespaced or not)."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path}: not a readable ViPER XML file ({exc})") from None
    if _local(root.tag) != "viper":
        raise InputError(f"{path}: root element is <{_local(root.tag)}>, expected <viper>")
    descriptors: dict[str, Descriptor] = {}
    for d in root.iter():
        if _local(d.tag) != "descriptor":
            continue
        kind = d.get("type", "").upper()
        if kind not in DESCRIPTOR_TYPES:
            raise InputError(f"{path}: descriptor {d.get('name')!r} has type {d.get('type')!r}, "
                             f"expected one of {', '.join(DESCRIPTOR_TYPES)}")
        desc = Descriptor(d.get("name", ""), kind)
        for a in d:
            if _local(a.tag) != "attribute":
                continue
            choices = [c.get("value") for c in a.iter() if _local(c.tag) == "lvalue-enum"]
            desc.attributes[a.get("name", "")] = AttributeSpec(
                a.get("name", ""), a.get("type", "").rsplit("#", 1)[-1], a.get("dynamic", "false") == "true", choices)
        descriptors[desc.name] = desc
    sourcefiles = []
    for sf in root.iter():
        if _local(sf.tag) != "sourcefile":
            continue
        source = SourceFile(sf.get("filename", ""))
        for inst in sf:
            kind = _local(inst.tag).upper()
            if kind not in DESCRIPTOR_TYPES:
                continue
            name = inst.get("name", "")
            where = f"{path}: {source.filename} {name} id {inst.get('id')}"
            record = Instance(name, kind, inst.get("id", ""), parse_framespan(inst.get("framespan"), where))
            for attr in inst:
                if _local(attr.tag) == "attribute":
                    record.attributes[attr.get("name", "")] = [_value(v, where) for v in attr]
            source.instances.append(record)
        sourcefiles.append(source)
    return ViperFile(path, descriptors, sourcefiles)
