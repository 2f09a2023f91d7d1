"""Run folders: the next runs/<task>/expN or --out, refused before any work when unusable, and
never left behind empty."""

from pathlib import Path

import pytest

from yolo_cli.errors import YoloError
from yolo_cli.runs import fresh_out, next_run_dir, run_folder


def test_next_run_dir_counts_up(tmp_path):
    assert next_run_dir(tmp_path) == tmp_path / "exp"
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp2").mkdir()
    assert next_run_dir(tmp_path) == tmp_path / "exp3"


def test_fresh_out_numbers_an_existing_folder(tmp_path, monkeypatch):
    assert fresh_out(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "run").mkdir()
    (tmp_path / "run2").mkdir()
    (tmp_path / "file").write_text("")
    assert fresh_out(tmp_path / "run") == tmp_path / "run3"
    assert fresh_out(tmp_path / "file") == tmp_path / "file"  # refused by run_folder
    with run_folder(tmp_path / "run", "detect", fresh=True) as out:
        assert out == tmp_path / "run3" and out.is_dir()
    monkeypatch.chdir(tmp_path / "run")
    assert fresh_out(".") == tmp_path / "run3"  # "." is named by its absolute path


def test_default_folders_are_made_one_each_and_kept_when_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with run_folder(None, "detect") as first:
        assert first == Path("runs/detect/exp") and first.is_dir()
        (first / "a.jpg").write_bytes(b"x")
        with run_folder(None, "detect") as second:
            assert second == Path("runs/detect/exp2") and second.is_dir()
        assert not second.exists()  # nothing written: removed
    assert (first / "a.jpg").is_file()


def test_a_failure_leaves_no_empty_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError), run_folder(tmp_path / "a" / "b" / "c", "train") as out:
        assert out.is_dir()
        raise RuntimeError("fails early")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError), run_folder(None, "eval"):
        raise RuntimeError("fails early")
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_is_used_and_kept(tmp_path):
    (tmp_path / "out").mkdir()
    with run_folder(tmp_path / "out", "train") as out:
        assert out == tmp_path / "out"
    assert out.is_dir()


@pytest.mark.parametrize(
    "out, says",
    [
        ("file.txt", "is a file"),
        ("file.txt/run", "lies under the file"),
        ("file.txt/a/b", "lies under the file"),
        ("/proc/x", "cannot create the run folder"),
    ],
)
def test_unusable_out_is_refused_in_one_line(tmp_path, out, says):
    (tmp_path / "file.txt").write_text("not a folder")
    path = tmp_path / out
    with pytest.raises(YoloError, match=says) as e:
        with run_folder(path, "train"):
            pytest.fail("the block must not run")
    assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
