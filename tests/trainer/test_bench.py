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
                                      "--repeats", "1", "--device", "cpu", "--out", str(out), "--pollux-grid", "3x150"])
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
    # The POLLUX-shaped workload: unshared is its own baseline, sharing computes each answer's prefix once.
    unshared, shared = (next(r for r in report["results"] if r["method"] == f"pollux-K3-A150/{m}")
                        for m in ("hf_unshared", "hf_prefix_shared"))
    assert unshared["workload"] == shared["workload"] == "pollux-K3-A150"
    assert unshared["ratio_to_baseline"] == 1.0 and unshared["tokens_computed"] == unshared["tokens"]
    assert shared["tokens"] == unshared["tokens"] and shared["tokens_computed"] < 0.7 * shared["tokens"]


def test_pollux_workload_shares_each_answer_across_its_criteria_and_is_shuffled():
    from submission.engines.prefix_sharing import prefix_groups
    from trainer.bench import make_pollux_workload, parse_pollux_grid

    workload = make_pollux_workload(24, 6, 600, SHAPES["tiny"]["vocab_size"], seed=1)
    assert len(workload.prompts) == 24
    groups = prefix_groups(workload.prompts)
    assert sorted(len(g.rows) for g in groups) == [6, 6, 6, 6]
    assert all(g.prefix >= 60 + 540 for g in groups)  # template + the whole answer (600 +-10%)
    assert any(sorted(g.rows) != list(range(min(g.rows), min(g.rows) + 6)) for g in groups)  # not in answer order
    assert len(make_pollux_workload(5, 14, 150, 2048).prompts) == 28  # whole answers, at least two
    assert parse_pollux_grid("6x600, 1x150") == [(6, 600), (1, 150)] and parse_pollux_grid("none") == []


def test_bench_rejects_a_malformed_pollux_grid():
    result = CliRunner().invoke(app, ["bench", "--suite", "scoring", "--pollux-grid", "6by600", "--device", "cpu"])
    assert result.exit_code == 2 and "--pollux-grid '6by600': expected CRITERIAxANSWER_TOKENS" in result.stderr


def test_bench_rejects_an_unknown_suite():
    result = CliRunner().invoke(app, ["bench", "--suite", "speed"])
    assert result.exit_code == 2


def test_training_step_backs_off_on_out_of_memory_and_trains_every_row():
    """An injected OOM on micro-batches over 2 rows halves the budget until they fit; the step still sees all rows."""
    import torch

    from trainer.bench import MicroBatching, train_step

    rows = [[1] * 10, [2] * 12, [3] * 9, [4] * 11, [5] * 10]
    seen = []

    def row_losses(part):
        if len(part) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        seen.extend(part)
        return weight.sum() * torch.ones(len(part))

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    batching = MicroBatching(token_budget=60)  # 5 rows x 12 tokens: one micro-batch at first
    train_step(rows, row_losses, optimizer, batching)
    assert batching.backoffs == 1 and batching.token_budget == 30 and batching.steps == 1  # 2 rows of 12 fit
    assert seen == rows  # the retried step covered every row once (failed attempts saw none)
    assert torch.allclose(weight, torch.full((3,), 0.9))  # one step, mean loss per row: gradient 1 per weight


def test_training_step_reraises_what_is_not_out_of_memory_or_cannot_shrink():
    import pytest
    import torch

    from trainer.bench import MicroBatching, train_step

    weight = torch.nn.Parameter(torch.ones(1))
    optimizer = torch.optim.SGD([weight], lr=0.1)

    def broken(part):
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        train_step([[1, 2]], broken, optimizer, MicroBatching(64))

    def always_oom(part):
        raise torch.OutOfMemoryError("CUDA out of memory")

    batching = MicroBatching(64)
    with pytest.raises(torch.OutOfMemoryError):
        train_step([[1, 2], [3, 4]], always_oom, optimizer, batching)
    assert batching.backoffs == 5  # 64 -> 2 tokens: one row of 2 per micro-batch, then it gives up


def test_training_budget_follows_the_free_device_memory(monkeypatch):
    import torch

    from trainer.bench import MicroBatching, training_token_budget

    assert training_token_budget("cpu", "tiny") == 4096
    budgets = {}
    for free_gb in (10, 80):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda free_gb=free_gb: (free_gb * 2**30, 80 * 2**30))
        budgets[free_gb] = training_token_budget("cuda", "qwen3-0.6b")
    assert budgets[80] > 7 * budgets[10]
    longest = [[0] * 4000] * 8  # the workload's longest prompts: full logits over 151,936 labels per token
    assert [len(p) for p in MicroBatching(budgets[80]).split(longest)] == [2, 2, 2, 2]
    assert [len(p) for p in MicroBatching(budgets[10]).split(longest)] == [1] * 8
