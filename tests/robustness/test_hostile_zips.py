"""The grader unpacks a hostile zip safely or not at all: members that climb out of the folder, links, zip bombs and
folders in the way of the grader's own files are refused (exit 2, one line) before anything is written or chmod-ed;
a time limit that is not a finite positive number is refused too."""

from __future__ import annotations

import os
import stat
import zipfile

import pytest

from tests.build_scripts import load_script

grade = load_script("grade")


def zip_with(path, *members):
    """A zip of (name, data, unix mode) members, next to a harmless run.sh."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        run_sh = zipfile.ZipInfo("run.sh")
        run_sh.external_attr = 0o100755 << 16
        archive.writestr(run_sh, "#!/usr/bin/env bash\nexit 0\n")
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return path


def grade_main(bundle, data, tmp_path, *more):
    return grade.main(["--bundle", str(bundle), "--test", str(data / "test.csv"), "--gold", str(data / "gold.csv"),
                       "--isolation", "none", "--out-dir", str(tmp_path / "out"), *map(str, more)])


def one_error_line(capsys, fragment):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and fragment in err, err
    return err


def test_a_member_named_with_an_absolute_path_chmods_nothing_outside(grade_data, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    victim.chmod(0o600)
    bundle = zip_with(tmp_path / "b.zip", (str(victim), "x", 0o100777))
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "points outside the bundle folder")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o600 and victim.read_text() == "mine"


@pytest.mark.parametrize("name", ["../escaped.txt", "models/../../escaped.txt", "..\\escaped.txt"])
def test_a_member_climbing_out_with_dotdot_is_refused(grade_data, tmp_path, capsys, name):
    bundle = zip_with(tmp_path / "b.zip", (name, "x", 0o100644))
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "points outside the bundle folder")


def test_a_symbolic_link_member_is_refused(grade_data, tmp_path, capsys):
    bundle = zip_with(tmp_path / "b.zip", ("models/m/model.safetensors", "/etc/passwd", 0o120777))
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "symbolic link")


@pytest.mark.parametrize("name", ["test.csv/", "predictions.csv/", "predictions_meta.json/x"])
def test_a_folder_in_the_way_of_the_graders_files_is_refused(grade_data, tmp_path, capsys, name):
    bundle = zip_with(tmp_path / "b.zip", (name, "", 0o040755 if name.endswith("/") else 0o100644))
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "in the way")


def test_a_zip_bomb_is_refused_from_its_directory_before_extraction(grade_data, tmp_path, capsys, monkeypatch):
    bundle = zip_with(tmp_path / "b.zip", ("zeros.bin", b"\0" * (4 << 20), 0o100644))
    assert os.path.getsize(bundle) < 64 << 10  # 4 MiB of zeros deflate to a few KiB
    monkeypatch.setattr(grade, "MAX_UNPACKED_BYTES", 1 << 20)
    extracted = []
    monkeypatch.setattr(grade.shutil, "copyfileobj", lambda *a, **k: extracted.append(a))
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "over the limit")
    assert not extracted
    monkeypatch.setattr(grade, "MAX_UNPACKED_BYTES", 1 << 30)
    monkeypatch.setattr(grade, "MAX_MEMBERS", 1)
    assert grade_main(bundle, grade_data, tmp_path) == 2
    one_error_line(capsys, "2 members in the zip, over the limit of 1")


def test_a_plain_bundle_still_unpacks_with_its_modes(tmp_path):
    bundle = zip_with(tmp_path / "b.zip", ("models/m/config.json", "{}", 0o100644), ("models/", "", 0o040755))
    grade.unpack(bundle, tmp_path / "work")
    assert os.access(tmp_path / "work" / "run.sh", os.X_OK)
    assert (tmp_path / "work" / "models" / "m" / "config.json").read_text() == "{}"


@pytest.mark.parametrize("limit", ["nan", "inf", "-1", "0"])
def test_a_time_limit_that_is_not_a_finite_positive_number_is_refused(grade_data, tmp_path, capsys, limit):
    bundle = zip_with(tmp_path / "b.zip")
    assert grade_main(bundle, grade_data, tmp_path, "--time-limit", limit) == 2
    one_error_line(capsys, "--time-limit")
    assert not (tmp_path / "out").exists()
