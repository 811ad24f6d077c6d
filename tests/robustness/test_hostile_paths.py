"""Hostile flags, paths and writes: everything a run needs is checked before the first row is scored, the output
never replaces the test file, and the files are written whole, readable by others, through links and onto
bind-mounted files; a write that cannot happen is one line and exit 1."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from submission import cli, data
from submission.data import DataError, OutputError, read_predictions_csv, read_test_rows, write_predictions
from submission.runtime import runtime

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def test_csv(tmp_path, test_frame):
    path = tmp_path / "t.csv"
    test_frame.head(4).to_csv(path, index=False)
    return path


@pytest.fixture
def no_scoring(monkeypatch):
    """Fails the test if the run gets as far as planning models (the checks must come first)."""
    def planned(*args, **kwargs):
        raise AssertionError("models were planned before the flags/paths were checked")

    monkeypatch.setattr(runtime, "plan_models", planned)


def run_cli(*argv) -> int:
    return cli.run(cli.build_parser().parse_args([str(a) for a in argv]))


@pytest.mark.parametrize("flags, message", [
    (["--time-limit", "nan"], "--time-limit nan: must be a finite number"),
    (["--time-limit", "inf"], "--time-limit inf: must be a finite number"),
    (["--time-limit", "-1"], "must be a finite number of seconds >= 0"),
    (["--max-tokens", "0"], "--max-tokens 0: must be at least"),
    (["--max-tokens", "-5"], "--max-tokens -5: must be at least"),
    (["--token-budget", "0"], "--token-budget 0: must be a positive"),
    (["--device", "gpu0"], "--device 'gpu0'"),
])
def test_bad_flags_exit_2_before_anything_loads(test_csv, tmp_path, tiny_model_dir, no_scoring, capsys, flags, message):
    pred = tmp_path / "p.csv"
    assert run_cli("--test_path", test_csv, "--pred_path", pred, "--model-dir", tiny_model_dir, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not pred.exists()


def test_pred_path_equal_to_the_test_path_exits_2_and_keeps_the_test_file(test_csv, tmp_path, tiny_model_dir):
    before = test_csv.read_bytes()
    proc = subprocess.run(["./run.sh", str(test_csv), str(test_csv), "--model-dir", str(tiny_model_dir)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHON": sys.executable})
    assert proc.returncode == 2, proc.stderr
    assert "is the input file" in proc.stderr and "Traceback" not in proc.stderr
    assert test_csv.read_bytes() == before


def test_pred_path_that_links_to_the_test_file_exits_2(test_csv, tmp_path, no_scoring, capsys):
    link = tmp_path / "sub" / "out.csv"
    link.parent.mkdir()
    link.symlink_to(test_csv)
    before = test_csv.read_bytes()
    assert run_cli("--test_path", test_csv, "--pred_path", link) == 2
    assert "after resolving links" in capsys.readouterr().err
    assert test_csv.read_bytes() == before


def test_pred_path_that_is_a_folder_exits_1_before_scoring(test_csv, tmp_path, no_scoring, capsys):
    folder = tmp_path / "out"
    folder.mkdir()
    assert run_cli("--test_path", test_csv, "--pred_path", folder) == 1
    assert "is a folder" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_exits_1_before_scoring(test_csv, tmp_path, no_scoring, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert run_cli("--test_path", test_csv, "--pred_path", folder / "p.csv") == 1
    finally:
        folder.chmod(0o755)
    assert "cannot write" in capsys.readouterr().err


def test_read_only_file_system_exits_1_before_scoring(test_csv, tmp_path, no_scoring, monkeypatch, capsys):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(data.tempfile, "mkstemp", read_only)
    assert run_cli("--test_path", test_csv, "--pred_path", tmp_path / "p.csv") == 1
    err = capsys.readouterr().err.strip()
    assert "Read-only file system" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("make, message", [
    (lambda p: p.mkdir(), "is a folder, not a CSV file"),
    (lambda p: None, "file not found"),
])
def test_test_path_problems_are_named(tmp_path, make, message):
    path = tmp_path / "test.csv"
    make(path)
    with pytest.raises(DataError, match=message):
        read_test_rows(path)


def test_dev_null_as_test_path_is_a_device_not_a_missing_file():
    with pytest.raises(DataError, match="is a device"):
        read_test_rows("/dev/null")


def test_model_dir_that_is_a_file_is_named_as_such(test_csv, tmp_path, capsys):
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"x")
    assert run_cli("--test_path", test_csv, "--pred_path", tmp_path / "p.csv", "--model-dir", model) == 2
    err = capsys.readouterr().err
    assert "is a file, not a model folder" in err and "does not exist" not in err


@pytest.mark.parametrize("text, name", [("id\tprompt\n1\t\"a, b, c\"\n", "tab"), ("id;prompt\n1;a\n", "semicolon")])
def test_tsv_and_semicolon_files_name_the_delimiter(tmp_path, text, name):
    path = tmp_path / "t.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=f"looks {name}-separated"):
        read_test_rows(path)


def test_ids_keep_their_surrounding_spaces_through_the_round_trip(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("id,prompt\n a ,x\nb ,y\n", encoding="utf-8")
    ids = read_test_rows(path).ids
    assert ids == [" a ", "b "]
    write_predictions(tmp_path / "p.csv", ids, [0, 1])
    assert read_predictions_csv(tmp_path / "p.csv")["id"].tolist() == ids


# -- writing -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        write_predictions(tmp_path / "p.csv", ["a"], [1])
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "p.csv").stat().st_mode) == mode


def test_a_symlinked_pred_path_is_written_through(tmp_path):
    target = tmp_path / "real" / "p.csv"
    target.parent.mkdir()
    target.write_text("old\n")
    link = tmp_path / "p.csv"
    link.symlink_to(target)
    write_predictions(link, ["a"], [2])
    assert link.is_symlink() and target.read_text() == "id,score\na,2\n"


def test_a_bind_mounted_file_is_written_in_place_when_rename_is_busy(tmp_path, monkeypatch):
    path = tmp_path / "p.csv"
    path.write_text("old\n")
    inode = path.stat().st_ino

    def busy(src, dst):
        raise OSError(errno.EBUSY, "Device or resource busy")

    monkeypatch.setattr(os, "replace", busy)
    write_predictions(path, ["a", "b"], [0, 3])
    assert path.read_text() == "id,score\na,0\nb,3\n" and path.stat().st_ino == inode
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]  # no temp file left behind


def test_a_full_disk_while_writing_the_meta_is_one_line_exit_1_and_no_empty_meta(test_csv, tmp_path, tiny_model_dir,
                                                                                 monkeypatch, capsys):
    pred = tmp_path / "p.csv"
    (tmp_path / "p_meta.json").write_text('{"old": true}')
    real, calls = os.fsync, []

    def fills_up(fd):
        calls.append(fd)
        if len(calls) == 2:  # the predictions went through; the disk is full when the meta is flushed
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(os, "fsync", fills_up)
    assert run_cli("--test_path", test_csv, "--pred_path", pred, "--model-dir", tiny_model_dir, "--device", "cpu") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "No space left on device" in err[-1] and "p_meta.json" in err[-1]
    assert json.loads((tmp_path / "p_meta.json").read_text()) == {"old": True}  # whole, not 0 bytes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p_meta.json", "t.csv"]


def test_output_error_is_one_line(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError) as err:
        data.write_text_atomic(tmp_path / "d", "x")
    assert "\n" not in str(err.value)


def test_meta_file_is_strict_json_even_with_an_infinite_limit(tmp_path, tiny_model_dir, test_frame):
    result = runtime.predict(test_frame.head(3), runtime.RunSettings(model_dir=tiny_model_dir, device="cpu",
                                                                     time_limit_s=float("inf")))
    meta = runtime.write_outputs(result, tmp_path / "p.csv")
    assert json.loads(meta.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the meta"))["time_limit_s"] is None
