"""Manifest readers for pretraining: the lazy map reader agrees with the ``manifest`` reader record for
record; shards name a bad sample or skip and count it; caption draws."""

import json

import pytest
import torch

from umgkit.data import LazyManifest, ManifestDataset, ShardStream, write_shards
from umgkit.data.images import BadSampleError, DatasetError
from umgkit.data.shards import read_index


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


def test_lazy_manifest_equals_map_reader(tiny_world, reference):
    lazy = LazyManifest(tiny_world / "manifest", "train")
    assert len(lazy) == len(reference)
    for i in (0, len(lazy) // 2, len(lazy) - 1):
        _same(lazy[i], reference[i])


def test_bad_shard_sample_raises_naming_it_or_is_skipped_and_counted(tiny_world, tmp_path):
    manifest = tiny_world / "manifest" / "train.jsonl"
    recs = [json.loads(line) for line in manifest.read_text().splitlines()[:3]]
    (tmp_path / "img").mkdir()
    for i, rec in enumerate(recs):  # copies of three images, the second one truncated
        data = (manifest.parent / rec["image"]).read_bytes()
        (tmp_path / "img" / f"{i}.png").write_bytes(data[:40] if i == 1 else data)
        rec["image"] = f"img/{i}.png"
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    index = write_shards(tmp_path / "bad.jsonl", tmp_path / "shards", samples_per_shard=2)
    urls, counts = read_index(index)
    assert counts == [2, 1]
    with pytest.raises(BadSampleError, match=r"bad-000000.tar:000000001"):
        list(ShardStream(urls, counts, shuffle_buffer=0))
    stream = ShardStream(urls, counts, shuffle_buffer=0, skip_bad=True)
    items = list(stream)
    assert len(items) == 3 and items[1] is None and stream.num_skipped == 1
    assert items[2]["caption"] == recs[2]["caption"]


def test_shard_writer_names_a_missing_image_and_its_line(tiny_world, tmp_path):
    manifest = tiny_world / "manifest" / "train.jsonl"
    lines = manifest.read_text().splitlines()[:2]
    rec = json.loads(lines[1])
    rec["image"] = "nowhere.png"
    first = json.loads(lines[0])
    first["image"] = str(manifest.parent / first["image"])
    (tmp_path / "m.jsonl").write_text(json.dumps(first) + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(DatasetError, match=r"m.jsonl:2: image .*nowhere.png does not exist"):
        write_shards(tmp_path / "m.jsonl", tmp_path / "out")


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
