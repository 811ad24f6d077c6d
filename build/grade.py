#!/usr/bin/env python3
"""Local stand-in for the contest's offline grader: unpack the bundle, run it without network, check, score.

    python build/grade.py --bundle dist/submission.zip --test data/test.csv --gold data/gold.csv
    python build/grade.py --bundle dist/submission.zip --test t.csv --gold g.csv --time-limit 600 --isolation netns

Steps: unzip into a fresh temp dir; copy the test CSV in as test.csv; run each entry point there (``--entry``,
default both: ``./run.sh test.csv predictions.csv`` and the organisers' ``python run.py --test_path test.csv
--pred_path predictions.csv``) with a clean environment, a wall-clock limit and no network — ``docker run --network none`` on the
submission image (``--isolation docker``), a fresh network namespace via ``unshare --net`` (``netns``), or nothing
(``none``, only when asked; ``auto`` picks docker when an engine answers and the image exists, else netns when it
works, else refuses); then check the predictions (every id once, same order, integer labels allowed by each
rubric) and compute every metric against the gold labels. Writes ``grade_report.json`` and prints a table.

Before anything is unpacked every zip member is checked: an absolute name, a ``..`` part, a symbolic link, a folder
named like a file the grader writes (test.csv, predictions.csv), more than 20,000 members or more than 16 GiB
unpacked refuse the bundle (exit 2). The test and gold files are read and checked before anything runs: a gold file that does not cover the test ids
exactly is refused (exit 2, the missing and unexpected ids counted) unless ``--grade-overlap`` says to score the
shared ids only. While an entry point runs, its output (the runtime logs one line per scored chunk) is passed
through on stderr, each line prefixed with the entry, the elapsed seconds and the time limit.
Exit codes: 0 valid and on time, 1 invalid predictions or a crash, 3 late, 2 bad arguments or data.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the grader reuses the runtime's CSV contract and metrics, as the contest would

from submission.data import DataError, read_gold_csv, read_predictions_csv, read_test_csv  # noqa: E402
from submission.prompts.sections import parse_prompt  # noqa: E402
from trainer.evaluation.metrics import compute_metrics, format_table  # noqa: E402

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_LATE = 0, 1, 2, 3
ENTRIES = {"run.sh": ("run.sh",), "run.py": ("run.py",), "both": ("run.sh", "run.py")}
# Zip-bomb guards, checked on the archive's directory before a byte is extracted (the contest caps a bundle at 5 GB;
# weights are stored uncompressed, so the unpacked size stays close to the zip's).
MAX_MEMBERS = 20_000
MAX_UNPACKED_BYTES = 16 * 1024**3
# Names the grader writes at the bundle's root: the bundle may not hold folders under them.
GRADER_FILES = ("test.csv", "predictions.csv", "predictions_meta.json")


class BundleRefused(ValueError):
    """The zip cannot be unpacked safely (a member escaping the folder, a link, a zip bomb); one line."""


def safe_members(archive: zipfile.ZipFile, max_members: int = MAX_MEMBERS,
                 max_bytes: int = MAX_UNPACKED_BYTES) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Every member with its relative path inside the extraction folder; BundleRefused, before anything is
    written, for an absolute name, a ``..`` part, a symbolic link, a folder where the grader writes its files, more
    than ``max_members`` members or more than ``max_bytes`` unpacked."""
    infos = archive.infolist()
    if len(infos) > max_members:
        raise BundleRefused(f"{len(infos)} members in the zip, over the limit of {max_members}")
    total = sum(info.file_size for info in infos)
    if total > max_bytes:
        raise BundleRefused(f"the zip would unpack to {total / 2**30:.1f} GiB, over the limit of "
                            f"{max_bytes / 2**30:.1f} GiB")
    members = []
    for info in infos:
        name = info.filename.replace("\\", "/")
        relative = PurePosixPath(name)
        if name.startswith("/") or re.match(r"[A-Za-z]:", name) or ".." in relative.parts or "\0" in name:
            raise BundleRefused(f"zip member {info.filename!r} points outside the bundle folder (absolute or '..')")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise BundleRefused(f"zip member {info.filename!r} is a symbolic link; a bundle holds plain files only")
        if relative.parts and relative.parts[0] in GRADER_FILES and (info.is_dir() or len(relative.parts) > 1):
            raise BundleRefused(f"zip member {info.filename!r}: a folder named {relative.parts[0]} is in the way of "
                                "the file the grader writes there")
        if relative.parts:
            members.append((info, relative))
    return members


def unpack(bundle: Path, work: Path) -> None:
    """Extract the checked members (:func:`safe_members`) into ``work``, with their unix permission bits."""
    with zipfile.ZipFile(bundle) as archive:
        members = safe_members(archive, MAX_MEMBERS, MAX_UNPACKED_BYTES)
        work.mkdir(parents=True, exist_ok=True)
        for info, relative in members:
            target = work.joinpath(*relative.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(info) as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            mode = info.external_attr >> 16  # zip keeps unix modes in external_attr; plain extraction drops them
            if mode:
                target.chmod(mode & 0o777)


def entry_command(entry: str, python: str) -> list[str]:
    """How the contest may call the bundle from its root: ``./run.sh T P`` or ``python run.py --test_path T ...``."""
    if entry == "run.sh":
        return ["./run.sh", "test.csv", "predictions.csv"]
    return [python, "run.py", "--test_path", "test.csv", "--pred_path", "predictions.csv"]


def docker_available() -> bool:
    """True when a Docker engine answers."""
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def netns_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=20).returncode == 0


def resolve_isolation(isolation: str) -> str:
    if isolation != "auto":
        return isolation
    if docker_available():
        return "docker"
    if netns_available():
        return "netns"
    raise RuntimeError("no network isolation available (no Docker engine, no unshare --net); pass --isolation none "
                       "to grade without it")


def clean_env(workdir: Path, python: str) -> dict:
    """What the contest machine gives a submission: a PATH, a HOME, a locale, no tokens, no proxies."""
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(workdir), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
            "PYTHON": python, "TMPDIR": str(workdir)}


def build_image(bundle_dir: Path, build_args: list[str], log) -> str:
    """``docker build`` the bundle's own Dockerfile (as the contest would); returns the image tag."""
    tag = f"aij-grade-{uuid.uuid4().hex[:12]}"  # unique: gradings may run side by side (also the container name)
    command = ["docker", "build", "-q", "-t", tag, *(a for arg in build_args for a in ("--build-arg", arg)), "."]
    subprocess.run(command, cwd=bundle_dir, stdout=log, stderr=subprocess.STDOUT, check=True, timeout=1800)
    return tag


def gold_for_test(test: Path, gold: Path, grade_overlap: bool = False) -> tuple[object, dict]:
    """The gold scores (Series by id) for the test ids, and the coverage counts; read before any bundle runs.

    DataError (one line) for an unreadable or malformed file, a gold file sharing no id with the test, or one that
    misses test ids or has ids the test lacks (unless ``grade_overlap``: then only the shared ids are scored).
    """
    test_ids = read_test_csv(test)["id"].tolist()
    scores = read_gold_csv(gold).set_index("id")["score"]
    test_set, gold_set = set(test_ids), set(scores.index)
    coverage = {"test_ids": len(test_ids), "gold_ids": len(gold_set), "shared_ids": len(test_set & gold_set),
                "test_ids_without_gold": len(test_set - gold_set), "gold_ids_not_in_test": len(gold_set - test_set)}
    if not coverage["shared_ids"]:
        raise DataError(f"{gold} shares no id with {test} ({len(test_ids)} test ids, {len(gold_set)} gold ids, e.g. "
                        f"test {test_ids[0]!r} vs gold {scores.index[0]!r}): is it the gold file for this test?")
    if (coverage["test_ids_without_gold"] or coverage["gold_ids_not_in_test"]) and not grade_overlap:
        example = next((i for i in test_ids if i not in gold_set), None)
        raise DataError(f"{gold} does not match {test}: {coverage['test_ids_without_gold']} of {len(test_ids)} test "
                        f"ids have no gold score{f' (e.g. {example!r})' if example is not None else ''}, "
                        f"{coverage['gold_ids_not_in_test']} gold ids are not in the test; pass --grade-overlap to "
                        f"score the {coverage['shared_ids']} shared ids only")
    return scores, coverage


def kill_process_group(proc: subprocess.Popen) -> None:
    """SIGKILL every process in ``proc``'s group (it leads one: start_new_session) and reap ``proc``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:  # the group is already empty
        pass
    proc.wait()


def pass_through(pipe, log, entry: str, start: float, time_limit: float, echo: bool) -> None:
    """Copy the run's output into its log, echoing each line on stderr as ``[entry 12.3/600 s] line`` when ``echo``."""
    try:
        for raw in iter(pipe.readline, b""):
            log.write(raw)
            log.flush()
            if echo:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n").rsplit("\r", 1)[-1]
                print(f"  [{entry} {time.perf_counter() - start:.1f}/{time_limit:.0f} s] {line}", file=sys.stderr,
                      flush=True)
    except (OSError, ValueError):  # the log was closed under a straggler that escaped the process group
        pass


def run_bundle(bundle_dir: Path, isolation: str, time_limit: float, python: str,
               build_args: list[str] | None = None, entry: str = "run.sh", echo: bool = True) -> dict:
    """Run one entry point in ``bundle_dir`` (docker: the bundle's image on /data); returns {returncode, seconds,
    late, log_tail}. With ``echo``, a start line, the run's output as it comes and an end line go to stderr."""
    command = entry_command(entry, python)
    log_path = bundle_dir.parent / f"{bundle_dir.name}.{entry}.log"
    if isolation == "docker":
        if echo:
            print(f"grade: {entry}: building the bundle's image (not counted against the limit)", file=sys.stderr,
                  flush=True)
        with log_path.open("wb") as log:
            tag = build_image(bundle_dir, build_args or [], log)
        bundle_dir.chmod(0o777)  # the image runs as a non-root user and writes predictions.csv here
        inside = ["/data/test.csv", "/data/predictions.csv"]
        if entry == "run.py":  # the image's own interpreter ($PYTHON, set by the Dockerfile) on the image's run.py
            inside = ["-c", '"$PYTHON" /app/run.py --test_path /data/test.csv --pred_path /data/predictions.csv']
        command = ["docker", "run", "--rm", "--name", tag, "--network", "none", "-v", f"{bundle_dir}:/data",
                   *(["--entrypoint", "sh"] if entry == "run.py" else []), tag, *inside]
    elif isolation == "netns":
        command = ["unshare", "--net", "--", *command]
    elif isolation != "none":
        raise ValueError(f"unknown isolation {isolation!r}")
    if echo:
        print(f"grade: {entry}: started, limit {time_limit:.0f} s", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with log_path.open("ab") as log:
        # Its own session and process group, so the whole tree (run.sh, python, workers) can be killed at once.
        proc = subprocess.Popen(command, cwd=bundle_dir, env=clean_env(bundle_dir, python), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        reader = threading.Thread(target=pass_through, args=(proc.stdout, log, entry, start, time_limit, echo),
                                  daemon=True)
        reader.start()
        try:
            returncode, late = proc.wait(timeout=time_limit), False
        except subprocess.TimeoutExpired:
            returncode, late = None, True
            if isolation == "docker":  # killing the client does not stop the container
                subprocess.run(["docker", "rm", "-f", tag], capture_output=True, timeout=60)
        finally:
            kill_process_group(proc)  # late, or done but left children behind: nothing outlives the run
            reader.join(timeout=10)  # the pipe closes with the group; a straggler outside it must not hang the grader
            if isolation == "docker":  # the tag is unique per grading; its layers stay cached for the next build
                subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)
    seconds = time.perf_counter() - start
    if echo:
        outcome = f"late, killed after the {time_limit:.0f} s limit" if late else f"exit {returncode}"
        print(f"grade: {entry}: {outcome}, {seconds:.1f} s of {time_limit:.0f} s", file=sys.stderr, flush=True)
    return {"returncode": returncode, "seconds": round(seconds, 2), "late": late,
            "log_tail": log_path.read_text(encoding="utf-8", errors="replace")[-4000:]}


def check_predictions(test_csv: Path, pred_csv: Path) -> tuple[list[str], object]:
    """(problems, predictions frame); no problems means a valid submission."""
    if not pred_csv.is_file():
        return ["predictions.csv was not written"], None
    try:
        test = read_test_csv(test_csv)
        pred = read_predictions_csv(pred_csv)
    except DataError as err:
        return [str(err)], None
    problems = []
    if len(pred) != len(test):
        problems.append(f"{len(pred)} predictions for {len(test)} test rows")
    if pred["id"].tolist() != test["id"].tolist()[: len(pred)]:
        missing = sorted(set(test["id"]) - set(pred["id"]))[:5]
        extra = sorted(set(pred["id"]) - set(test["id"]))[:5]
        problems.append(f"ids differ from the test file (missing {missing}, unexpected {extra}, or out of order)")
    if pred["id"].duplicated().any():
        problems.append("duplicate ids in predictions")
    allowed = {i: parse_prompt(p).allowed for i, p in zip(test["id"], test["prompt"], strict=True)}
    bad = [(i, s) for i, s in zip(pred["id"], pred["score"], strict=True) if s not in allowed.get(i, ())]
    if bad:
        problems.append(f"{len(bad)} scores outside their rubric, e.g. id {bad[0][0]!r} -> {bad[0][1]}")
    return problems, pred


def run_entry(work: Path, entry: str, isolation: str, time_limit: float, python: str,
              build_args: list[str] | None, echo: bool = True) -> dict:
    """Run one entry point from a clean slate and check its predictions: the run's fields + valid, problems, pred."""
    for name in ("predictions.csv", "predictions_meta.json"):
        (work / name).unlink(missing_ok=True)
    if not (work / entry).is_file():
        return {"returncode": None, "seconds": 0.0, "late": False, "log_tail": "", "valid": False,
                "problems": [f"the bundle has no {entry} at its root"], "pred": None}
    run = run_bundle(work, isolation, time_limit, python, build_args, entry, echo)
    problems, pred = ([], None)
    if run["late"]:
        problems = [f"late: still running after the {time_limit:.0f} s limit"]
    elif run["returncode"] != 0:
        problems = [f"{entry} exited with {run['returncode']}"]
    else:
        problems, pred = check_predictions(work / "test.csv", work / "predictions.csv")
    meta = work / "predictions_meta.json"
    return {**run, "valid": not problems, "problems": problems, "pred": pred,
            "meta": json.loads(meta.read_text(encoding="utf-8")) if meta.is_file() and not problems else None}


def grade(bundle: Path, test: Path, gold: Path, time_limit: float, isolation: str, out_dir: Path,
          python: str = sys.executable, build_args: list[str] | None = None, keep: bool = False,
          entry: str = "both", grade_overlap: bool = False, echo: bool = True) -> dict:
    """Unpack, run each entry point (``entry``: run.sh, run.py or both), check and score; returns the grade report
    (also written to out_dir). Top-level run fields are the first entry's; ``entries`` has each one's; the bundle
    is valid when every entry is, and the metrics score the first entry's predictions on the ids that have gold.

    The test and gold files are checked first (:func:`gold_for_test`: DataError before anything runs); ``echo``
    passes each run's output through on stderr.
    """
    gold_scores, coverage = gold_for_test(test, gold, grade_overlap)
    isolation = resolve_isolation(isolation)
    work = Path(tempfile.mkdtemp(prefix="aij-grade-")) / "bundle"
    try:
        unpack(bundle, work)
        shutil.copyfile(test, work / "test.csv")
        runs = {name: run_entry(work, name, isolation, time_limit, python, build_args, echo)
                for name in ENTRIES[entry]}
        first = runs[ENTRIES[entry][0]]
        problems = [p if len(runs) == 1 else f"{name}: {p}" for name, r in runs.items() for p in r["problems"]]
        report = {"bundle": str(bundle), "isolation": isolation, "time_limit_s": time_limit,
                  **{k: first[k] for k in ("returncode", "seconds", "late", "log_tail")},
                  "late": any(r["late"] for r in runs.values()), "valid": not problems, "problems": problems,
                  "gold_coverage": coverage,
                  "entries": {name: {k: r[k] for k in ("returncode", "seconds", "late", "valid", "problems")}
                              for name, r in runs.items()}}
        if not problems:
            pred = first["pred"]
            families = [parse_prompt(p).family for p in read_test_csv(work / "test.csv")["prompt"]]
            known = [i for i, x in enumerate(pred["id"]) if x in gold_scores.index]
            report["metrics"] = compute_metrics([int(gold_scores[pred["id"][i]]) for i in known],
                                                [int(pred["score"][i]) for i in known], [families[i] for i in known])
            report["meta"] = first["meta"]
            if len(runs) > 1:  # the same bundle called two ways: how many rows got the same score
                other = runs[ENTRIES[entry][1]]["pred"]
                report["entries_agree"] = float((other["score"].to_numpy() == pred["score"].to_numpy()).mean())
        out_dir.mkdir(parents=True, exist_ok=True)
        if first["pred"] is not None:
            first["pred"].to_csv(out_dir / "predictions.csv", index=False)
        (out_dir / "grade_report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        return report
    finally:
        if not keep:
            shutil.rmtree(work.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="submission zip (python build/bundle.py)")
    parser.add_argument("--test", type=Path, required=True, help="test CSV (id,prompt)")
    parser.add_argument("--gold", type=Path, required=True, help="gold CSV (id,score)")
    parser.add_argument("--time-limit", type=float, default=3600.0, help="wall-clock seconds (default 3600)")
    parser.add_argument("--isolation", choices=["auto", "docker", "netns", "none"], default="auto",
                        help="how to cut the network (default auto: docker, else netns)")
    parser.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="docker build argument for the bundle's Dockerfile (e.g. BASE_IMAGE=... for an offline base)")
    parser.add_argument("--out-dir", type=Path, default=Path("dist/grade"), help="where grade_report.json goes")
    parser.add_argument("--python", default=sys.executable, help="interpreter run.sh uses (its PYTHON)")
    parser.add_argument("--keep", action="store_true", help="keep the unpacked bundle for inspection")
    parser.add_argument("--entry", choices=sorted(ENTRIES), default="both",
                        help="entry point(s) to smoke-test: run.sh, run.py (the organisers' call) or both (default)")
    parser.add_argument("--grade-overlap", action="store_true",
                        help="score the ids the test and gold share when gold misses test ids or has extra ones "
                             "(default: refuse, exit 2)")
    parser.add_argument("--quiet", action="store_true", help="do not pass the runs' output through on stderr")
    args = parser.parse_args(argv)
    if not math.isfinite(args.time_limit) or args.time_limit <= 0:  # the runtime refuses these too
        print(f"error: --time-limit {args.time_limit}: must be a finite number of seconds > 0", file=sys.stderr)
        return EXIT_USAGE
    for path in (args.bundle, args.test, args.gold):
        if not path.is_file():
            print(f"error: {path}: file not found", file=sys.stderr)
            return EXIT_USAGE
    try:
        report = grade(args.bundle, args.test, args.gold, args.time_limit, args.isolation, args.out_dir,
                       args.python, args.build_arg, args.keep, args.entry, args.grade_overlap, not args.quiet)
    except (DataError, BundleRefused) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except subprocess.CalledProcessError as err:
        print(f"error: docker build of the bundle failed (exit {err.returncode}); see the log with --keep", file=sys.stderr)
        return EXIT_INVALID
    except (RuntimeError, FileNotFoundError, zipfile.BadZipFile) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"isolation {report['isolation']}, {report['seconds']} s of {report['time_limit_s']:.0f} s, "
          f"{'VALID' if report['valid'] else 'INVALID'}")
    for problem in report["problems"]:
        print(f"  problem: {problem}")
    coverage = report["gold_coverage"]
    if coverage["shared_ids"] != coverage["test_ids"] or coverage["gold_ids"] != coverage["test_ids"]:
        print(f"  scored on the overlap (--grade-overlap): {coverage['shared_ids']} of {coverage['test_ids']} test ids "
              f"have gold; {coverage['gold_ids_not_in_test']} gold ids are not in the test")
    if report["valid"]:
        print(format_table(report["metrics"]))
    else:
        print(report["log_tail"][-1500:], file=sys.stderr)
    print(args.out_dir / "grade_report.json")
    if report["late"]:
        return EXIT_LATE
    return EXIT_OK if report["valid"] else EXIT_INVALID


if __name__ == "__main__":
    sys.exit(main())
