"""Pretraining on webdataset shards: 2 processes x 2 workers read every sample exactly once per epoch,
and a killed run resumed from its checkpoint continues the stream without seeing a sample twice."""

import json
import os
import socket
import subprocess
import sys
from itertools import zip_longest
from pathlib import Path

import pytest
import torch
from conftest import tiny_config

from umgkit.data.shards import ShardStream, StreamPlan, read_index, write_shards

HERE = Path(__file__).parent
SHARD_SIZE = 4  # 32 train records -> 8 shards: 2 per reader with 2 processes x 2 workers


@pytest.fixture(scope="module")
def shards(tiny_world, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(tiny_world / "manifest" / "train.jsonl", out, samples_per_shard=SHARD_SIZE, workers=2)
    return out


def test_writer_index_and_reader_items_match_the_manifest_reader(tiny_world, shards):
    from umgkit.data.manifest import ManifestDataset

    urls, counts = read_index(shards / "train.shards.json")
    manifest = ManifestDataset(tiny_world / "manifest", "train")
    assert len(urls) == 8 and counts == [SHARD_SIZE] * 8 and sum(counts) == len(manifest)
    stream = ShardStream(urls, counts, shuffle_buffer=0)
    items = {it["key"]: it for it in stream}
    assert sorted(items) == [f"{i:09d}" for i in range(len(manifest))]
    for i in (0, 13, 31):
        want, got = manifest[i], items[f"{i:09d}"]
        assert got["image"].dtype == torch.uint8
        assert torch.equal(got["image"], (want["image"] * 255).round().to(torch.uint8))
        assert got["caption"] == want["caption"] and got["region_captions"] == want["region_captions"]
        assert torch.equal(got["boxes"], want["boxes"]) and torch.equal(got["masks"], want["masks"])


def test_plan_splits_shards_over_processes_and_workers_and_resumes_by_count(shards):
    urls, counts = read_index(shards / "train.shards.json")
    stream = ShardStream(urls, counts, shuffle_buffer=5)
    assert stream.batches_per_epoch(batch_size=2, num_processes=2, num_workers=2) == 8
    with pytest.raises(Exception, match="8 shards for 9 readers"):
        stream.batches_per_epoch(batch_size=2, num_processes=3, num_workers=3)

    def keys(rank, plan):  # one process's stream, its two workers interleaved batch by batch
        from unittest import mock

        per_worker = []
        for wid in range(2):
            info = mock.Mock(id=wid, num_workers=2)
            with mock.patch("umgkit.data.shards.get_worker_info", return_value=info), \
                    mock.patch.object(ShardStream, "_reader", return_value=(rank, 2, wid, 2)):
                stream.plan(plan)
                per_worker.append([it["key"] for it in stream])
        batches = [[ks[i:i + 2] for i in range(0, len(ks), 2)] for ks in per_worker]
        return [k for pair in zip_longest(*batches, fillvalue=[]) for b in pair for k in b]

    epoch0 = [keys(r, StreamPlan(epoch=0, seed=3, batch_size=2, batches=8)) for r in range(2)]
    assert sorted(epoch0[0] + epoch0[1]) == [f"{i:09d}" for i in range(32)]  # each sample once
    epoch1 = [keys(r, StreamPlan(epoch=1, seed=3, batch_size=2, batches=8)) for r in range(2)]
    assert sorted(epoch1[0] + epoch1[1]) == sorted(epoch0[0] + epoch0[1]) and epoch1 != epoch0
    resumed = keys(0, StreamPlan(epoch=0, seed=3, batch_size=2, batches=8, start_batch=3))
    assert resumed == epoch0[0][3 * 2:]  # the same stream, after the 3 batches already taken


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch(config, ids, *extra):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(_free_port()), str(HERE / "_run_stream.py"), str(config), str(ids), *extra]
    return subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True,
                          timeout=400)


def _calls(path: Path) -> list[list[str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [r["keys"] for r in rows]


@pytest.mark.slow
def test_two_processes_two_workers_each_sample_once_per_epoch_across_kill_and_resume(tiny_world, shards,
                                                                                    tmp_path):
    config = tmp_path / "stream.yaml"
    config.write_text(tiny_config(tiny_world, tmp_path / "run", max_steps=16, save_every=3))
    common = [f"data.root={shards}", "data.format=webdataset", "data.batch_size=2", "data.num_workers=2",
              "data.options={shuffle_buffer: 6}", "task_options.zeroshot=none"]
    first = _launch(config, tmp_path / "ids_killed", "--kill-after", "5", *common)
    assert first.returncode != 0, first.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "step_0000003").is_dir(), first.stderr[-3000:]
    second = _launch(config, tmp_path / "ids_resumed", *common, "train.resume=auto")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from step 3" in second.stderr

    everything = [f"{i:09d}" for i in range(32)]
    for rank in range(2):
        killed = _calls(tmp_path / "ids_killed" / f"rank{rank}.jsonl")
        resumed = _calls(tmp_path / "ids_resumed" / f"rank{rank}.jsonl")
        assert len(resumed) == 16 - 3 and all(len(keys) == 2 for keys in killed + resumed)
        # what counted: the 3 steps in the checkpoint, then the resumed run
        counted = killed[:3] + resumed
        assert len(counted) == 16
        if rank == 0:
            per_rank = [counted]
        else:
            per_rank.append(counted)
    for epoch in range(2):
        seen = [k for calls in per_rank for keys in calls[8 * epoch:8 * (epoch + 1)] for k in keys]
        assert sorted(seen) == everything, f"epoch {epoch}"


def test_a_resumed_stream_augments_each_sample_as_the_unbroken_one(shards):
    """Random crops depend on (seed, epoch, key) only: the records skipped on resume draw nothing that
    would shift the crops of the samples after them."""
    from umgkit.data.transforms import build_transforms

    urls, counts = read_index(shards / "train.shards.json")
    stream = ShardStream(urls, counts, shuffle_buffer=5,
                         transform=build_transforms("detection", train=True, image_size=24, scale=(0.3, 1.0)))
    stream.plan(StreamPlan(epoch=1, seed=4, batch_size=2, batches=16))
    unbroken = [(it["key"], it["image"]) for it in stream]
    stream.plan(StreamPlan(epoch=1, seed=4, batch_size=2, batches=16, start_batch=3))
    resumed = [(it["key"], it["image"]) for it in stream]
    assert [k for k, _ in resumed] == [k for k, _ in unbroken[6:]]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(resumed, unbroken[6:], strict=True))
    stream.plan(StreamPlan(epoch=2, seed=4, batch_size=2, batches=16))
    again = dict((it["key"], it["image"]) for it in stream)
    assert any(not torch.equal(again[k], img) for k, img in unbroken)  # a new epoch, new crops
