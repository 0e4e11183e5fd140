"""Lists, feature layouts and the reference's 32-segment pooling."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import write_csv, write_features
from mgfn.data import (PairedBatches, TrainingSet, load_features, magnitude_channel, pool_segments, read_csv_list,
                       read_list, read_rtfm_list)
from mgfn.errors import InputError


def reference_process_feat(feat, length=32):
    """The reference's utils.process_feat with np.int replaced by int."""
    new_feat = np.zeros((length, feat.shape[1])).astype(np.float32)
    r = np.linspace(0, len(feat), length + 1, dtype=int)
    for i in range(length):
        if r[i] != r[i + 1]:
            new_feat[i, :] = np.mean(feat[r[i]:r[i + 1], :], 0)
        else:
            new_feat[i, :] = feat[r[i], :]
    return new_feat


@pytest.mark.parametrize("t", [1, 5, 31, 32, 33, 100, 1000])
def test_pooling_matches_reference_boundaries(t):
    x = np.random.default_rng(t).random((t, 3, 16), dtype=np.float32)
    ours = pool_segments(x, 32)
    for c in range(3):
        np.testing.assert_allclose(ours[:, c], reference_process_feat(x[:, c]), rtol=1e-6, atol=1e-7)


def test_csv_paths_are_relative_to_the_list_and_cannot_escape(tmp_path):
    (tmp_path / "sub").mkdir()
    rows = write_features(tmp_path / "sub", 1, 1, 2, 8)
    entries = read_csv_list(write_csv(tmp_path / "sub" / "list.csv", rows))
    assert [e.label for e in entries] == [0, 1] and entries[0].path.parent == (tmp_path / "sub").resolve()
    write_csv(tmp_path / "sub" / "bad.csv", [("x", 0, "../x.npy")])
    with pytest.raises(InputError, match="escapes"):
        read_csv_list(tmp_path / "sub" / "bad.csv")
    assert read_csv_list(tmp_path / "sub" / "bad.csv", allow_outside=True)[0].path == (tmp_path / "x.npy").resolve()


def test_bad_labels_and_duplicates_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match=r"label must be 0 or 1, got '2'"):
        read_csv_list(write_csv(tmp_path / "a.csv", [("v", 2, "v.npy")]))
    with pytest.raises(InputError, match="duplicate"):
        read_csv_list(write_csv(tmp_path / "b.csv", [("v", 0, "v.npy"), ("v", 1, "v.npy")]))


def test_rtfm_list_split_index_and_i3d_names(tmp_path):
    paths = []
    for name in ("Abuse028_x264_i3d.npy", "Arson011_x264_i3d.npy", "Normal_Videos_003_x264_i3d.npy"):
        np.save(tmp_path / name, np.zeros((4, 10, 8), np.float32))
        paths.append(str(tmp_path / name))
    (tmp_path / "ucf.list").write_text("\n".join(paths) + "\n")
    entries = read_rtfm_list(tmp_path / "ucf.list", n_abnormal=2)
    assert [(e.video_id, e.label) for e in entries] == [("Abuse028_x264", 1), ("Arson011_x264", 1),
                                                         ("Normal_Videos_003_x264", 0)]
    assert [e.label for e in read_rtfm_list(tmp_path / "ucf.list")] == [1, 1, 0]


def test_per_crop_files_are_stacked_in_crop_order(tmp_path):
    x = np.random.default_rng(0).random((7, 5, 16), dtype=np.float32)
    name = "Bad.Boys.1995__#00-26-51_00-27-53_label_B2-0-0"
    for k in range(5):
        np.save(tmp_path / f"{name}__{k}.npy", x[:, k])
    for path in (tmp_path / f"{name}__0.npy", tmp_path / f"{name}.npy"):
        np.testing.assert_array_equal(load_features(path), x)


def test_two_dimensional_files_are_one_crop_and_float16_is_read(tmp_path):
    np.save(tmp_path / "c3d.npy", np.ones((32, 4096), np.float16))
    assert load_features(tmp_path / "c3d.npy").shape == (32, 1, 4096)


@pytest.mark.parametrize("content, message", [
    (np.zeros((3, 4, 5, 6), np.float32), "expected features"),
    (np.zeros((3, 4), np.int64), "float16/32/64"),
])
def test_wrong_shape_or_dtype(tmp_path, content, message):
    np.save(tmp_path / "v.npy", content)
    with pytest.raises(InputError, match=message):
        load_features(tmp_path / "v.npy")


def test_training_set_pools_once_with_magnitude_channel(tmp_path):
    rows = write_features(tmp_path, 2, 3, 2, 8, clips=(40, 41))
    data = TrainingSet(read_csv_list(write_csv(tmp_path / "l.csv", rows)))
    assert data.data.shape == (5, 2, 32, 9)
    raw = load_features(tmp_path / rows[0][2])
    pooled = pool_segments(raw)
    np.testing.assert_allclose(data.data[0, 1, :, :8].numpy(), pooled[:, 1])
    np.testing.assert_allclose(data.data[0, 1, :, 8:].numpy(), magnitude_channel(pooled[:, 1]))


def test_mixed_feature_sizes_are_refused(tmp_path):
    rows = write_features(tmp_path, 1, 0, 2, 8, prefix="a") + write_features(tmp_path, 0, 1, 2, 16, prefix="b")
    with pytest.raises(InputError, match="mixes feature sizes"):
        TrainingSet(read_csv_list(write_csv(tmp_path / "l.csv", rows)))


def test_paired_batches_shuffle_is_a_function_of_the_generator():
    batches = PairedBatches(np.arange(10), np.arange(10, 17), batch_size=3, shuffle=True)
    assert len(batches) == 2
    one = batches.epoch(torch.Generator().manual_seed(5))
    two = batches.epoch(torch.Generator().manual_seed(5))
    assert all((a[0] == b[0]).all() and (a[1] == b[1]).all() for a, b in zip(one, two))
    ordered = PairedBatches(np.arange(4), np.arange(4, 8), 2, shuffle=False).epoch(torch.Generator())
    assert [list(n) + list(a) for n, a in ordered] == [[0, 1, 4, 5], [2, 3, 6, 7]]
    with pytest.raises(InputError, match="fewer than the batch size"):
        PairedBatches(np.arange(2), np.arange(5), batch_size=3)


def test_a_feature_set_in_one_npz_archive_is_read_by_video_id(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"a": rng.random((32, 8)).astype(np.float16), "b.1": rng.random((32, 8)).astype(np.float16)}
    np.savez_compressed(tmp_path / "features.npz", **arrays)
    (tmp_path / "train.csv").write_text("video_id,label,class\na,1,Abuse\nb.1,0,Normal\n")   # no path column
    entries = read_list(tmp_path / "train.csv", features=tmp_path / "features.npz")
    assert [(e.video_id, e.label, e.member) for e in entries] == [("a", 1, "a"), ("b.1", 0, "b.1")]
    assert entries[1].load().shape == (32, 1, 8) and entries[1].load().dtype == np.float32
    np.testing.assert_array_equal(entries[0].load()[:, 0], arrays["a"].astype(np.float32))
    (tmp_path / "listed.csv").write_text("video_id,label,path\na,1,features.npz\n")          # a path to the archive
    assert read_list(tmp_path / "listed.csv")[0].load().shape == (32, 1, 8)
    (tmp_path / "missing.csv").write_text("video_id,label\nzz,1\n")
    with pytest.raises(InputError, match="no array named 'zz'"):
        read_list(tmp_path / "missing.csv", features=tmp_path / "features.npz")[0].load()
    with pytest.raises(InputError, match="not found"):
        read_list(tmp_path / "train.csv", features=tmp_path / "nowhere.npz")


def test_features_folder_replaces_the_lists_paths(tmp_path):
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "v1.npy", np.ones((4, 1, 3), np.float32))
    (tmp_path / "list.csv").write_text("v1,1,elsewhere/v1.npy\n")
    entry = read_list(tmp_path / "list.csv", features=tmp_path / "feats")[0]
    assert entry.path == tmp_path / "feats" / "v1.npy" and entry.load().shape == (4, 1, 3)
