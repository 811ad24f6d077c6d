"""The benchmark harness on CPU with the tiny shape: every suite runs and reports comparable numbers."""

import json

from typer.testing import CliRunner

from trainer.bench import SHAPES, make_workload
from trainer.cli import app


def test_workload_lengths_are_contest_like_and_seeded():
    a = make_workload(500, SHAPES["qwen3-0.6b"]["vocab_size"], seed=3)
    b = make_workload(500, SHAPES["qwen3-0.6b"]["vocab_size"], seed=3)
    lengths = [len(p) for p in a.prompts]
    assert a.prompts == b.prompts
    assert min(lengths) >= 150 and max(lengths) <= 4000
    assert 700 < sum(lengths) / len(lengths) < 1300  # mean ~970 like the measured workload
    assert max(max(p) for p in a.prompts) < 151936


def test_bench_cli_runs_every_suite_on_cpu(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["bench", "--suite", "all", "--shape", "tiny", "--rows", "12",
                                      "--repeats", "1", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    methods = {(r["suite"], r["method"]) for r in report["results"]}
    assert {("scoring", "hf_organisers_generate10"), ("scoring", "hf_sorted_budget_logits1"),
            ("training", "peft_lora16_full_logits"), ("training", "peft_lora16_last_logits"),
            ("e2e", "run_sh_hf")} <= methods
    for r in report["results"]:
        assert r["seconds_median"] > 0 and r["ratio_to_baseline"] > 0 and r["tokens_per_s"] > 0
    baseline = [r for r in report["results"] if r["method"] == "hf_organisers_generate10"][0]
    assert baseline["ratio_to_baseline"] == 1.0
    assert "| scoring | hf_sorted_budget_logits1 |" in result.output


def test_bench_rejects_an_unknown_suite():
    result = CliRunner().invoke(app, ["bench", "--suite", "speed"])
    assert result.exit_code == 2
