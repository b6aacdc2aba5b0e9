import pytest

from umgkit._io import atomic_write, atomic_write_text, check_output_folder
from umgkit.errors import ConfigError


def test_atomic_write_replaces_whole_file(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_failed_write_keeps_old_content_and_leaves_no_temp(tmp_path):
    path = atomic_write_text(tmp_path / "a.txt", "old")

    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_check_output_folder_refuses_files_paths_below_them_and_full_folders(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="--out .*f is a file"):
        check_output_folder(tmp_path / "f", "--out")
    with pytest.raises(ConfigError, match="lies below .*f, which is a file"):
        check_output_folder(tmp_path / "f" / "a" / "b", "--out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert check_output_folder(tmp_path / "full", "--out") == tmp_path / "full"  # may hold files
    with pytest.raises(ConfigError, match="already holds files \\(keep.txt\\)"):
        check_output_folder(tmp_path / "full", "--out", empty=True)
    assert check_output_folder(tmp_path / "new" / "deep", "--out", empty=True) == tmp_path / "new" / "deep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "full"]  # nothing was created
