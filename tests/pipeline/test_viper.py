"""ViPER-GT XML reader and the Mini-drone adapter, on XML files written here."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mgfn.errors import InputError
from pipeline.cli import main as cli
from pipeline.datasets.minidrone import MiniDroneConfig, read_clips
from pipeline.datasets.viper import parse_framespan, read_viper

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n<viper xmlns="http://lamp.cfar.umd.edu/viper#" '
        'xmlns:data="http://lamp.cfar.umd.edu/viperdata#">\n')
CONFIG = """<config>
  <descriptor name="Information" type="FILE">
    <attribute dynamic="false" name="NUMFRAMES" type="http://lamp.cfar.umd.edu/viperdata#dvalue"/>
    <attribute dynamic="false" name="FRAMERATE" type="http://lamp.cfar.umd.edu/viperdata#fvalue"/>
    <attribute dynamic="false" name="Category" type="http://lamp.cfar.umd.edu/viperdata#lvalue">
      <data:lvalue-possibles><data:lvalue-enum value="normal"/><data:lvalue-enum value="suspicious"/>
      <data:lvalue-enum value="illicit"/></data:lvalue-possibles>
    </attribute>
  </descriptor>
  <descriptor name="Person" type="OBJECT">
    <attribute dynamic="true" name="Location" type="http://lamp.cfar.umd.edu/viperdata#bbox"/>
    <attribute dynamic="true" name="Action" type="http://lamp.cfar.umd.edu/viperdata#svalue"/>
    <attribute dynamic="false" name="Head" type="http://lamp.cfar.umd.edu/viperdata#point"/>
    <attribute dynamic="false" name="Face" type="http://lamp.cfar.umd.edu/viperdata#circle"/>
    <attribute dynamic="false" name="Zone" type="http://lamp.cfar.umd.edu/viperdata#polygon"/>
    <attribute dynamic="false" name="Box" type="http://lamp.cfar.umd.edu/viperdata#obox"/>
    <attribute dynamic="false" name="Visible" type="http://lamp.cfar.umd.edu/viperdata#bvalue"/>
  </descriptor>
  <descriptor name="Scene" type="CONTENT">
    <attribute dynamic="false" name="Light" type="http://lamp.cfar.umd.edu/viperdata#svalue"/>
  </descriptor>
</config>
"""


def clip_xml(filename: str, category: str, people: list[tuple[str, str]], numframes: int = 100) -> str:
    """One sourcefile; `people` = (framespan, action) per Person object."""
    objs = "".join(f"""
    <object framespan="{span}" id="{i}" name="Person">
      <attribute name="Location"><data:bbox framespan="{span}" x="200" y="300" width="30" height="50"/></attribute>
      <attribute name="Action"><data:svalue framespan="{span}" value="{action}"/></attribute>
      <attribute name="Head"><data:point x="5" y="6"/></attribute>
      <attribute name="Face"><data:circle x="5" y="6" radius="3"/></attribute>
      <attribute name="Zone"><data:polygon><data:point x="1" y="2"/><data:point x="3" y="4"/></data:polygon></attribute>
      <attribute name="Box"><data:obox x="1" y="2" width="3" height="4" rotation="10"/></attribute>
      <attribute name="Visible"><data:bvalue value="true"/></attribute>
    </object>""" for i, (span, action) in enumerate(people))
    return f"""<data>
  <sourcefile filename="{filename}">
    <file id="0" name="Information">
      <attribute name="NUMFRAMES"><data:dvalue value="{numframes}"/></attribute>
      <attribute name="FRAMERATE"><data:fvalue value="25.0"/></attribute>
      <attribute name="Category"><data:lvalue value="{category}"/></attribute>
    </file>
    <content framespan="1:{numframes}" id="0" name="Scene">
      <attribute name="Light"><data:svalue value="day"/></attribute>
    </content>{objs}
  </sourcefile>
</data>
"""


def write(path: Path, *clips: str, config: str = CONFIG) -> Path:
    path.write_text(HEAD + config + "".join(clips) + "</viper>\n")
    return path


def test_framespans_are_lists_of_inclusive_ranges():
    assert parse_framespan("1:20 30:40 50:50") == [(1, 20), (30, 40), (50, 50)]
    assert parse_framespan(None) is None
    with pytest.raises(InputError, match="bad framespan"):
        parse_framespan("1-20")


def test_reader_keeps_descriptor_types_and_every_value_type(tmp_path):
    v = read_viper(write(tmp_path / "a.xml", clip_xml("Clip_001.mp4", "suspicious", [("10:20 40:50", "loitering")])))
    assert {d.name: d.type for d in v.descriptors.values()} == {"Information": "FILE", "Person": "OBJECT",
                                                                "Scene": "CONTENT"}
    assert v.descriptors["Person"].attributes["Location"].dynamic
    assert v.descriptors["Information"].attributes["Category"].choices == ["normal", "suspicious", "illicit"]
    (src,) = v.sourcefiles
    (info,), (person,) = src.of_type("FILE"), src.of_type("OBJECT")
    assert info.values("NUMFRAMES")[0].value == 100 and info.values("FRAMERATE")[0].value == 25.0
    assert info.values("Category")[0].value == "suspicious"
    assert person.framespan == [(10, 20), (40, 50)]
    assert person.values("Location")[0].value == {"x": 200, "y": 300, "width": 30, "height": 50}
    assert person.values("Head")[0].value == {"x": 5, "y": 6}
    assert person.values("Face")[0].value == {"x": 5, "y": 6, "radius": 3}
    assert person.values("Zone")[0].value == [(1, 2), (3, 4)]
    assert person.values("Box")[0].value["rotation"] == 10
    assert person.values("Visible")[0].value is True
    assert src.of_type("CONTENT")[0].values("Light")[0].value == "day"


def test_category_is_the_video_label_and_suspicious_objects_give_the_frames(tmp_path):
    write(tmp_path / "a.xml", clip_xml("Clip_001.mp4", "illicit", [("11:20", "stealing"), ("31:40", "walking")]))
    write(tmp_path / "b.xml", clip_xml("Clip_002.mp4", "normal", [("1:100", "walking")]))
    cfg = MiniDroneConfig(label_attributes=["Action"], abnormal=["stealing", "suspicious", "illicit"])
    a, b = read_clips(tmp_path, cfg)
    assert (a.video_id, a.category, a.num_frames) == ("Clip_001", "illicit", 100)
    assert a.events == [(10, 19)] and a.mask.sum() == 10 and a.mask[10] == 1 and a.mask[9] == 0
    assert b.category == "normal" and b.mask.sum() == 0


def test_object_category_attribute_marks_frames_by_default(tmp_path):
    config = CONFIG.replace('name="Action"', 'name="Category"')
    write(tmp_path / "a.xml", clip_xml("Clip_003.mp4", "suspicious", [("5:8", "suspicious")]).replace(
        '<attribute name="Action">', '<attribute name="Category">'), config=config)
    (clip,) = read_clips(tmp_path / "a.xml", MiniDroneConfig())
    assert clip.category == "suspicious" and clip.events == [(4, 7)]


def test_unknown_layout_lists_the_descriptors_and_attributes_found(tmp_path):
    config = CONFIG.replace('name="Action"', 'name="Role"')
    path = write(tmp_path / "a.xml", clip_xml("c.mp4", "normal", [("1:5", "x")]).replace(
        '<attribute name="Action">', '<attribute name="Role">'), config=config)
    with pytest.raises(InputError) as err:
        read_clips(path, MiniDroneConfig(label_attributes=["Action"]))
    msg = str(err.value)
    assert "Person (OBJECT): Location, Role" in msg and "Information (FILE): NUMFRAMES" in msg
    assert "label_attributes" in msg


def test_mgfn_data_minidrone_writes_lists_and_masks(tmp_path, capsys):
    ann = tmp_path / "ann"
    ann.mkdir()
    for i, (cat, people) in enumerate([("normal", [("1:50", "walking")]), ("normal", [("1:50", "walking")]),
                                       ("suspicious", [("20:60", "suspicious")]), ("illicit", [("30:90", "illicit")])]):
        write(ann / f"{i}.xml", clip_xml(f"Clip_{i:03d}.mp4", cat, people))
    feats = tmp_path / "f"
    feats.mkdir()
    for i in range(4):
        np.save(feats / f"Clip_{i:03d}.npy", np.ones((6, 1, 8), np.float32))
    out = tmp_path / "out"
    assert cli(["data", "minidrone", "--annotation", str(ann), "--features", str(feats), "--out", str(out)]) == 0
    with open(out / "test.csv") as f:
        test = {r["video_id"]: r for r in csv.DictReader(f)}
    assert set(test) == {"Clip_000", "Clip_002", "Clip_003"}
    assert test["Clip_003"]["label"] == "1" and test["Clip_003"]["classes"] == "illicit"
    mask = np.load(out / "gt" / "Clip_003.npy")
    assert len(mask) == 96 and mask[29:90].all() and mask[:29].sum() == 0 and mask[90:].sum() == 0
    assert cli(["data", "minidrone", "--annotation", str(ann), "--stats"]) == 0
    assert "illicit" in capsys.readouterr().out
