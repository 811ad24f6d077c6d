"""grade.py: a good bundle is graded; late, incomplete, wrong-label, weightless and networked bundles are not."""

import json
import shutil
import time
import zipfile
from pathlib import Path

import pytest

from tests.build_scripts import load_script

grade = load_script("grade")
bundle = load_script("bundle")


@pytest.fixture(scope="module")
def good_bundle(tmp_path_factory, tiny_model_dir):
    runs = tmp_path_factory.mktemp("runs")
    shutil.copytree(tiny_model_dir, runs / "tiny" / "merged")
    out = runs.parent / "good.zip"
    bundle.make_bundle(runs, out)
    return out


def fake_bundle(path, script):
    """A bundle whose run.sh is the given shell script (to test the grader, not the runtime)."""
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, "#!/usr/bin/env bash\nset -e\n" + script)
    return path


def run_grade(bundle_path, data, tmp_path, isolation="none", time_limit=300):
    return grade.grade(bundle_path, data / "test.csv", data / "gold.csv", time_limit, isolation, tmp_path / "out")


def test_good_bundle_is_valid_and_scored(good_bundle, grade_data, tmp_path):
    report = run_grade(good_bundle, grade_data, tmp_path)
    assert report["valid"], report["problems"]
    assert report["metrics"]["n"] == 12 and "qwk" in report["metrics"]
    assert json.loads((tmp_path / "out" / "grade_report.json").read_text())["valid"]


def test_late_run_is_rejected(grade_data, tmp_path):
    report = run_grade(fake_bundle(tmp_path / "b.zip", "sleep 30\n"), grade_data, tmp_path, time_limit=1)
    assert report["late"] and not report["valid"]


def _alive(pid):
    """True for a live process (a zombie waiting for its reaper counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_late_run_kills_its_grandchildren(grade_data, tmp_path):
    pid_file, finished = tmp_path / "grandchild.pid", tmp_path / "grandchild.finished"
    # The grandchild leaves a mark only if it lives out its sleep: a grader that waited for it instead of killing it
    # fails here, with no clock in the assertion.
    script = f"bash -c 'sleep 60; touch {finished}' &\necho $! > {pid_file}\nwait\n"
    report = run_grade(fake_bundle(tmp_path / "b.zip", script), grade_data, tmp_path, time_limit=2)
    assert report["late"] and not report["valid"]
    assert not finished.exists(), "the grader waited for the late run's grandchild to finish"
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), f"grandchild {pid} survived the late run"


def test_missing_id_is_rejected(grade_data, tmp_path):
    script = "head -n 5 test.csv >/dev/null; python3 - <<'EOF'\nimport csv\nrows=list(csv.DictReader(open('test.csv')))\nw=csv.writer(open('predictions.csv','w'))\nw.writerow(['id','score'])\nfor r in rows[:-1]: w.writerow([r['id'],0])\nEOF\n"
    report = run_grade(fake_bundle(tmp_path / "b.zip", script), grade_data, tmp_path)
    assert not report["valid"] and any("predictions for" in p for p in report["problems"])


def test_wrong_label_is_rejected(grade_data, tmp_path):
    script = "python3 - <<'EOF'\nimport csv\nrows=list(csv.DictReader(open('test.csv')))\nw=csv.writer(open('predictions.csv','w'))\nw.writerow(['id','score'])\nfor r in rows: w.writerow([r['id'],7])\nEOF\n"
    report = run_grade(fake_bundle(tmp_path / "b.zip", script), grade_data, tmp_path)
    assert not report["valid"] and any("outside their rubric" in p for p in report["problems"])


def test_bundle_without_weights_fails(grade_data, tmp_path):
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as archive:
        for path in sorted((grade.ROOT / "submission").glob("*.py")):
            archive.write(path, f"submission/{path.name}")
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, (grade.ROOT / "run.sh").read_text())
    report = run_grade(tmp_path / "b.zip", grade_data, tmp_path)
    assert not report["valid"] and report["returncode"] == 2


@pytest.mark.skipif(not grade.netns_available(), reason="unshare --net is not available")
def test_network_is_cut_under_netns(grade_data, tmp_path):
    script = ("python3 -c \"import socket; socket.create_connection(('127.0.0.1', 9), timeout=2)\" 2>/dev/null "
              "|| python3 -c \"import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)\"\n"
              "cp test.csv predictions.csv\n")
    report = run_grade(fake_bundle(tmp_path / "b.zip", script), grade_data, tmp_path, isolation="netns")
    assert not report["valid"] and report["returncode"] != 0
    assert "Network is unreachable" in report["log_tail"] or "Errno" in report["log_tail"]


def test_cli_reports_missing_files_with_exit_2(tmp_path):
    assert grade.main(["--bundle", str(tmp_path / "x.zip"), "--test", "t", "--gold", "g"]) == 2
