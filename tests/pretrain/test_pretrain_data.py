"""Manifest readers for pretraining: streaming JSONL, tar shards and the lazy map reader agree with
the map-style ``manifest`` reader record for record."""

import json

import pytest
import torch

from umgkit.data import ManifestDataset
from umgkit.data._images import BadSampleError
from umgkit.pretrain import LazyManifest, ShardDataset, StreamingManifest, write_shards


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        if key == "path":
            continue
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


@pytest.fixture(scope="module")
def reference(tiny_world):
    return ManifestDataset(tiny_world / "manifest", "train")


def test_streaming_equals_map_reader(tiny_world, reference):
    stream = list(StreamingManifest(tiny_world / "manifest" / "train.jsonl"))
    assert len(stream) == len(reference) > 0
    for i, item in enumerate(stream):
        _same(item, reference[i])


def test_streaming_splits_records_over_readers_once(tiny_world, reference):
    src = tiny_world / "manifest" / "train.jsonl"
    parts = [list(StreamingManifest(src, rank=r, world_size=3)) for r in range(3)]
    captions = sorted(it["caption"] + it["path"] for p in parts for it in p)
    assert captions == sorted(reference[i]["caption"] + reference[i]["path"] for i in range(len(reference)))
    assert [len(p) for p in parts] == [len(range(r, len(reference), 3)) for r in range(3)]


def test_shuffle_buffer_permutes_and_depends_on_epoch(tiny_world, reference):
    ds = StreamingManifest(tiny_world / "manifest" / "train.jsonl", shuffle_buffer=8, seed=1)
    first = [it["path"] for it in ds]
    ds.set_epoch(1)
    second = [it["path"] for it in ds]
    plain = [reference[i]["path"] for i in range(len(reference))]
    assert sorted(first) == sorted(plain) == sorted(second)
    assert first != plain and first != second


def test_tar_shards_read_the_same_records(tiny_world, reference, tmp_path):
    shards = write_shards(tiny_world / "manifest" / "train.jsonl", tmp_path / "shards", samples_per_shard=7)
    assert len(shards) == -(-len(reference) // 7)
    mapped = ShardDataset(tmp_path / "shards", "train")
    streamed = list(StreamingManifest(shards))
    assert len(mapped) == len(streamed) == len(reference)
    for i in range(len(reference)):
        _same(mapped[i], reference[i])
        _same(streamed[i], reference[i])


def test_lazy_manifest_equals_map_reader(tiny_world, reference):
    lazy = LazyManifest(tiny_world / "manifest", "train")
    assert len(lazy) == len(reference)
    for i in (0, len(lazy) // 2, len(lazy) - 1):
        _same(lazy[i], reference[i])


def test_bad_line_raises_or_is_skipped(tiny_world, tmp_path):
    manifest = tiny_world / "manifest" / "train.jsonl"
    recs = [json.loads(line) for line in manifest.read_text().splitlines()[:2]]
    for rec in recs:  # absolute image paths, so the copy may live anywhere
        rec["image"] = str((manifest.parent / rec["image"]).resolve())
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([json.dumps(recs[0]), "{not json", json.dumps(recs[1])]) + "\n")
    with pytest.raises(BadSampleError, match="bad.jsonl:2"):
        list(StreamingManifest(bad))
    ds = StreamingManifest(bad, skip_bad=True)
    items = list(ds)
    assert len(items) == 3 and items[1] is None and ds.num_skipped == 1
    assert items[0]["caption"] == recs[0]["caption"]


def test_records_carry_all_captions_and_the_task_draws_among_them(reference):
    from umgkit.pretrain.task import PretrainTask

    item = reference[0]
    assert len(item["captions"]) == 5 and item["caption"] == item["captions"][0]
    sets = item["region_caption_sets"]
    assert [s[0] for s in sets] == item["region_captions"] and len(sets) == len(item["boxes"])
    thing = sets[0]  # things come first: "a <colour> <shape>" and "a <shape>"
    assert len(thing) == 2 and thing[0].split()[-1] == thing[1].split()[-1] and len(thing[1].split()) == 2
    batch = {"image": torch.zeros(200, 3, 2, 2), "caption": [item["caption"]] * 200,
             "captions": [item["captions"]] * 200, "region_captions": [item["region_captions"]] * 200,
             "region_caption_sets": [sets] * 200}
    task = PretrainTask(model=None, train_dataset=None, weights={"image_text": 1})
    assert set(task.image_captions(batch)) == set(item["captions"])  # 200 draws from 5 hit every one
    drawn = task.region_captions(batch)
    assert len(drawn) == 200 * len(sets) and set(drawn[::len(sets)]) == set(thing)
    first = PretrainTask(model=None, train_dataset=None, weights={"image_text": 1}, captions="first")
    assert first.image_captions(batch) == batch["caption"]
    assert first.region_captions(batch) == item["region_captions"] * 200
    with pytest.raises(ValueError, match="captions='best'"):
        PretrainTask(model=None, train_dataset=None, weights={"image_text": 1}, captions="best")
