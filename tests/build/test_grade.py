"""grade.py: a good bundle is graded; late, incomplete, wrong-label, weightless and networked bundles are not; a gold
file that does not fit the test is refused before anything runs; each run's progress is passed through."""

import csv
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


def test_good_bundle_is_valid_and_scored(good_bundle, grade_data, tmp_path, capsys):
    report = run_grade(good_bundle, grade_data, tmp_path)
    assert report["valid"], report["problems"]
    # While each entry runs, the runtime's per-chunk lines come through on stderr between its start and end lines,
    # prefixed with the entry and the seconds against the limit.
    err = capsys.readouterr().err
    for entry in ("run.sh", "run.py"):
        start, end = err.index(f"grade: {entry}: started, limit 300 s"), err.index(f"grade: {entry}: exit 0, ")
        chunk = err.index(f"  [{entry} ", start)
        assert start < chunk < end and "rows (" in err[chunk:end] and "s left before --time-limit" in err[chunk:end]
        assert "/300 s] " in err[chunk:end]
    assert report["metrics"]["n"] == 12 and "qwk" in report["metrics"]
    assert json.loads((tmp_path / "out" / "grade_report.json").read_text())["valid"]
    # Both entry points were smoke-tested, each from a clean slate, and scored the same rows the same way.
    assert set(report["entries"]) == {"run.sh", "run.py"} and all(e["valid"] for e in report["entries"].values())
    assert report["entries_agree"] == 1.0


def test_entry_flag_picks_one_entry_point(good_bundle, grade_data, tmp_path):
    report = grade.grade(good_bundle, grade_data / "test.csv", grade_data / "gold.csv", 300, "none", tmp_path / "o",
                         entry="run.py")
    assert report["valid"] and list(report["entries"]) == ["run.py"]


def test_a_bundle_without_run_py_fails_the_organisers_call(grade_data, tmp_path):
    report = run_grade(fake_bundle(tmp_path / "b.zip", "cp test.csv predictions.csv\n"), grade_data, tmp_path)
    assert not report["valid"] and "run.py: the bundle has no run.py at its root" in report["problems"]


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
        for path in sorted((grade.ROOT / "submission").rglob("*.py")):
            archive.write(path, path.relative_to(grade.ROOT).as_posix())
        archive.write(grade.ROOT / "run.py", "run.py")
        info = zipfile.ZipInfo("run.sh")
        info.external_attr = 0o100755 << 16
        archive.writestr(info, (grade.ROOT / "run.sh").read_text())
    report = run_grade(tmp_path / "b.zip", grade_data, tmp_path)
    assert not report["valid"] and report["returncode"] == 2
    assert {name: e["returncode"] for name, e in report["entries"].items()} == {"run.sh": 2, "run.py": 2}
    assert "no model folder" in report["log_tail"]


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


def _write_csv(path, header, rows):
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])
    return path


def _gold_rows(grade_data):
    with (grade_data / "gold.csv").open(encoding="utf-8") as handle:
        return [(r["id"], r["score"]) for r in csv.DictReader(handle)]


def _hostile_gold(kind, grade_data, path):
    rows = _gold_rows(grade_data)
    if kind == "missing_test_ids":
        return _write_csv(path, ["id", "score"], rows[:8])
    if kind == "extra_gold_ids":
        return _write_csv(path, ["id", "score"], [*rows, ("not-in-test", "1")])
    if kind == "no_shared_id":
        return _write_csv(path, ["id", "score"], [(f"other-{i}", s) for i, s in rows])
    if kind == "bad_score":
        return _write_csv(path, ["id", "score"], [rows[0], (rows[1][0], "high"), *rows[2:]])
    if kind == "score_out_of_range":
        return _write_csv(path, ["id", "score"], [rows[0], (rows[1][0], "7"), *rows[2:]])
    assert kind == "no_score_column"
    return _write_csv(path, ["id", "label"], rows)


@pytest.mark.parametrize("kind, message", [
    ("missing_test_ids", "4 of 12 test ids have no gold score"),
    ("extra_gold_ids", "1 gold ids are not in the test"),
    ("no_shared_id", "shares no id with"),
    ("bad_score", "score 'high' is not one of"),
    ("score_out_of_range", "score '7' is not one of"),
    ("no_score_column", "missing column(s) score"),
])
def test_gold_that_does_not_fit_the_test_is_refused_before_the_bundle_runs(kind, message, grade_data, tmp_path,
                                                                          capsys):
    ran = tmp_path / "ran"  # the bundle leaves this mark if the grader started it
    bundle_path = fake_bundle(tmp_path / "b.zip", f"touch {ran}\ncp test.csv predictions.csv\n")
    gold = _hostile_gold(kind, grade_data, tmp_path / "gold.csv")
    code = grade.main(["--bundle", str(bundle_path), "--test", str(grade_data / "test.csv"), "--gold", str(gold),
                       "--isolation", "none", "--out-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and not ran.exists()
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err  # one line, no traceback
    if kind in ("missing_test_ids", "extra_gold_ids"):
        assert "--grade-overlap" in err


def test_grade_overlap_scores_the_shared_ids_only(grade_data, tmp_path, capsys):
    rows = _gold_rows(grade_data)
    gold = _write_csv(tmp_path / "gold.csv", ["id", "score"], [*rows[:8], ("not-in-test", "1")])
    # A bundle that answers with the gold scores for every test row: valid, and scored on the 8 shared ids.
    answer = "\n".join(["id,score", *(f"{i},{s}" for i, s in rows)])
    bundle_path = fake_bundle(tmp_path / "b.zip", f"cat > predictions.csv <<'EOF'\n{answer}\nEOF\n")
    code = grade.main(["--bundle", str(bundle_path), "--test", str(grade_data / "test.csv"), "--gold", str(gold),
                       "--isolation", "none", "--out-dir", str(tmp_path / "out"), "--entry", "run.sh",
                       "--grade-overlap"])
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "grade_report.json").read_text())
    assert code == 0 and report["valid"] and report["metrics"]["n"] == 8
    assert report["gold_coverage"] == {"test_ids": 12, "gold_ids": 9, "shared_ids": 8, "test_ids_without_gold": 4,
                                       "gold_ids_not_in_test": 1}
    assert "scored on the overlap (--grade-overlap): 8 of 12 test ids have gold" in out
