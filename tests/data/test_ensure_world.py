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
