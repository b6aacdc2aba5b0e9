import json

from umgkit.data.synth import ensure_world


def test_world_is_generated_once_and_regenerated_when_settings_change(tmp_path):
    out = tmp_path / "world"
    ensure_world(out, num=10, size=48, seed=1)
    stamp = (out / "world.json").stat().st_mtime_ns
    ensure_world(out, num=10, size=48, seed=1)
    assert (out / "world.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    ensure_world(out, num=12, size=48, seed=1)
    assert json.loads((out / "world.json").read_text())["num"] == 12


def test_world_from_an_older_version_is_regenerated(tmp_path):
    out = tmp_path / "world"
    ensure_world(out, num=10, size=48, seed=1)
    world = json.loads((out / "world.json").read_text())
    (out / "world.json").write_text(json.dumps(dict(world, version=world["version"] - 1)))
    ensure_world(out, num=10, size=48, seed=1)
    assert json.loads((out / "world.json").read_text())["version"] == world["version"]
    first = json.loads((out / "manifest" / "train.jsonl").read_text().splitlines()[0])
    assert len(first["captions"]) == 5 and first["caption"] == first["captions"][0]


def test_a_second_machine_keeps_the_first_published_world_and_leaves_no_temp(tmp_path):
    """Two local rank 0s on one shared filesystem: the later one discards its identical copy."""
    from umgkit.data.synth.ensure import _generate_and_publish
    from umgkit.data.synth.world import WORLD_VERSION

    out = tmp_path / "world"
    ensure_world(out, num=6, size=32, seed=2)
    marker = (out / "world.json").stat().st_mtime_ns
    wanted = {"num": 6, "size": 32, "seed": 2, "val_fraction": 0.2, "version": WORLD_VERSION}
    _generate_and_publish(out, wanted, num=6, size=32, seed=2, val_fraction=0.2)
    assert (out / "world.json").stat().st_mtime_ns == marker  # the first world stays in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["world"]  # no .tmp / .old folder left
