#!/usr/bin/env python3
"""Issue 16: can the judge say -1 when its train data has none? The demo preset with and without the augmentation.

    .venv/bin/python bench/quality_minus_one.py --out /tmp/minus_one --seeds 1 2 3      # ~6 demo trainings
    .venv/bin/python bench/quality_minus_one.py --out /tmp/minus_one --table-only        # reprint from results-*.json
    .venv/bin/python bench/quality_minus_one.py --out /tmp/minus_one --refit             # refit decisions, no training

Per seed: ``trainer synth --rows 1000 --seed S --train-minus-one 0`` (no -1 in train; test -1 = a criterion of another
task family), then ``trainer train --experiment demo --set seed=S`` once as is and once with
``--set augment_not_applicable=SHARE`` (train + merge + evaluate, the commands a user types). The merged model
scores test.csv with the runtime's renderer, engine and scorer; its ``validation_report.json`` decision (and plain
argmax, for comparison) turns probabilities into scores. Reported on the test file: -1 precision and recall over
all rows, accuracy and QWK over the rows whose gold score is 0..3. Results go to OUT/results-*.json, the table
to stdout. On shared cores, ``--only plain`` and ``--only augmented`` run the two variants as two processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def run(command: list[str], log_path: Path) -> str:
    """One pipeline command (stderr to ``log_path``); returns stdout, stops with the log's tail on failure."""
    print(f"$ {' '.join(command)}", file=sys.stderr, flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    if proc.returncode:
        raise SystemExit(f"failed (exit {proc.returncode}): {' '.join(command)}\n"
                         + log_path.read_text(encoding="utf-8")[-2000:])
    return proc.stdout


def test_scores(run_dir: Path, data_dir: Path, reuse: bool = False) -> dict:
    """-1 precision/recall and 0..3 accuracy/QWK on the test file, for the stored decision and for argmax.

    ``reuse``: take the probabilities saved by an earlier call (``test_predictions.csv``) instead of scoring again.
    """
    import numpy as np
    import pandas as pd

    from submission.data import read_gold_csv, read_test_csv
    from submission.prompts.sections import parse_prompt
    from submission.scoring.decoding import Decision, decide
    from submission.scoring.probabilities import PROBABILITY_COLUMNS
    from trainer.evaluation.evaluate import minus_one_scores, save_predictions, score_rows
    from trainer.evaluation.metrics import compute_metrics
    from trainer.training.rundir import RunDir

    run = RunDir(run_dir)
    report, config = run.read_report(), run.config()
    test = read_test_csv(data_dir / "test.csv").merge(read_gold_csv(data_dir / "gold.csv"), on="id")
    saved = run.path / "test_predictions.csv"
    if reuse and saved.is_file():
        frame = pd.read_csv(saved, dtype={"id": str})
        assert frame["id"].tolist() == test["id"].tolist(), f"{saved}: other rows than {data_dir / 'test.csv'}"
        probs = frame[list(PROBABILITY_COLUMNS)].to_numpy()
        allowed = [parse_prompt(p).allowed for p in test["prompt"]]
    else:
        probs, allowed, _ = score_rows(run.merged, test["prompt"], config["max_tokens"])
        save_predictions(saved, test["id"], probs, test["score"])
    gold = test["score"].astype(int).to_numpy()
    out = {"validation": report.get("not_applicable"), "rule": report["decision"]}
    for name, decision in [("decision", Decision.from_dict(report["decision"])), ("argmax", Decision())]:
        pred = np.asarray(decide(probs, allowed, decision))
        minus_one = minus_one_scores(gold, pred)
        ordinal = gold >= 0
        metrics = compute_metrics(gold[ordinal], pred[ordinal])
        out[name] = {
            "minus_one_precision": minus_one["precision"],
            "minus_one_recall": minus_one["recall"],
            "minus_one_predicted": minus_one["predicted"], "minus_one_gold": minus_one["support"],
            "accuracy_0_3": metrics["accuracy"], "qwk_0_3": metrics["qwk"], "rows_0_3": int(ordinal.sum()),
        }
    return out


def fmt(value) -> str:
    return "  n/a" if value is None else f"{value:.3f}"


def table(results: list[dict]) -> str:
    lines = ["| seed | augmentation | decision | -1 precision | -1 recall | -1 predicted / gold | accuracy 0..3 | "
             "QWK 0..3 | train s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name in ("decision", "argmax"):
            t = r[name]
            rule = json.dumps(r["rule"].get("minus_one_threshold")) if name == "decision" else "argmax"
            lines.append(f"| {r['seed']} | {r['augment']:g} | {name} (P(-1) cut {rule}) | "
                         f"{fmt(t['minus_one_precision'])} | {fmt(t['minus_one_recall'])} | "
                         f"{t['minus_one_predicted']} / {t['minus_one_gold']} | {fmt(t['accuracy_0_3'])} | "
                         f"{fmt(t['qwk_0_3'])} | {r['train_seconds']:.0f} |")
    lines += ["", "| augmentation | decision | mean -1 precision | mean -1 recall | mean accuracy 0..3 | mean QWK 0..3 |",
              "|---|---|---|---|---|---|"]
    for share in sorted({r["augment"] for r in results}):
        for name in ("decision", "argmax"):
            rows = [r[name] for r in results if r["augment"] == share]

            def mean(key, rows=rows):
                values = [row[key] if row[key] is not None else 0.0 for row in rows]
                return sum(values) / len(values)

            lines.append(f"| {share:g} | {name} | {fmt(mean('minus_one_precision'))} | {fmt(mean('minus_one_recall'))} "
                         f"| {fmt(mean('accuracy_0_3'))} | {fmt(mean('qwk_0_3'))} |")
    lines.append("(a run that predicts no -1 counts as precision 0 in the means)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work folder: data, tiny model, runs, results.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--rows", type=int, default=1000, help="synthetic train rows per seed")
    parser.add_argument("--share", type=float, default=0.15, help="augment_not_applicable of the augmented runs")
    parser.add_argument("--only", choices=["plain", "augmented"], default=None,
                        help="train one variant only (two processes, one per variant, may share OUT)")
    parser.add_argument("--table-only", action="store_true", help="print the table of OUT/results-*.json and stop")
    parser.add_argument("--refit", action="store_true",
                        help="re-run `trainer evaluate` on every finished run (the current decision fitting) and "
                             "recompute the test scores from the saved probabilities, then print the table")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    shares = {"plain": [0.0], "augmented": [args.share], None: [0.0, args.share]}[args.only]
    results_path = out / f"results-{args.only or 'all'}.json"
    if args.refit:
        for path in sorted(out.glob("results-*.json")):
            results = json.loads(path.read_text(encoding="utf-8"))
            for r in results:
                run_dir = out / "runs" / f"seed{r['seed']}-na{r['augment']:g}"
                run([sys.executable, "-m", "trainer", "evaluate", str(run_dir)], out / "logs" / f"{run_dir.name}.refit.log")
                r.update(test_scores(run_dir, out / f"data-{r['seed']}", reuse=True))
            path.write_text(json.dumps(results, indent=1), encoding="utf-8")
        args.table_only = True
    if args.table_only:
        print(table(sorted((r for path in sorted(out.glob("results-*.json"))
                            for r in json.loads(path.read_text(encoding="utf-8"))),
                           key=lambda r: (r["seed"], r["augment"]))))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    py = sys.executable
    results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else []
    done = {(r["seed"], r["augment"]) for r in results}
    if not (out / "tiny" / "config.json").is_file():
        run([py, "-m", "trainer", "tiny-model", str(out / "tiny")], out / "logs" / "tiny.log")
    for seed in args.seeds:
        data = out / f"data-{seed}"
        if not (data / "gold.csv").is_file():  # same arguments, same files: written once, then reused
            run([py, "-m", "trainer", "synth", str(data), "--rows", str(args.rows), "--seed", str(seed),
                 "--train-minus-one", "0"], out / "logs" / f"synth-{seed}.log")
    for seed in args.seeds:
        data = out / f"data-{seed}"
        for share in shares:
            if (seed, share) in done:
                continue
            name = f"seed{seed}-na{share:g}"
            started = time.perf_counter()
            stdout = run([py, "-m", "trainer", "train", "--experiment", "demo", "--train-path", str(data / "train.csv"),
                          "--base-model", str(out / "tiny"), "--output-dir", str(out / "runs"), "--run-name", name,
                          "--set", f"seed={seed}", "--set", f"augment_not_applicable={share}"],
                         out / "logs" / f"{name}.log")
            run_dir = Path(stdout.strip().splitlines()[-1])
            results.append({"seed": seed, "augment": share, "train_seconds": time.perf_counter() - started,
                            **test_scores(run_dir, data)})
            results_path.write_text(json.dumps(results, indent=1), encoding="utf-8")
            print(f"seed {seed} augment {share:g}: {json.dumps(results[-1])}", file=sys.stderr, flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
