"""The runtime's meta file says how many prompt tokens were computed beside those submitted, and
``--no-prefix-sharing`` scores every row on its own (same scores, every token computed)."""

from __future__ import annotations

import json

import pandas as pd

from submission.cli import build_parser, run
from submission.runtime.run_meta import RunMeta, meta_path_for
from tests.pollux_rows import pollux_prompts


def _run(tmp_path, tiny_model_dir, *flags) -> tuple[list, dict]:
    prompts = pollux_prompts(answers=3, criteria=4, answer_words=100, singletons=2, seed=7)
    test = tmp_path / "test.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(prompts))], "prompt": prompts}).to_csv(test, index=False)
    pred = tmp_path / f"pred{len(flags)}.csv"
    args = build_parser().parse_args(["--test_path", str(test), "--pred_path", str(pred), "--model-dir",
                                      str(tiny_model_dir), "--device", "cpu", "-q", *flags])
    assert run(args) == 0
    meta = json.loads(meta_path_for(pred).read_text(encoding="utf-8"))
    RunMeta.from_dict(meta)  # the schema knows the new keys
    return pd.read_csv(pred)["score"].tolist(), meta


def test_meta_counts_computed_tokens_and_the_flag_turns_sharing_off(tmp_path, tiny_model_dir):
    shared_scores, shared = _run(tmp_path, tiny_model_dir)
    plain_scores, plain = _run(tmp_path, tiny_model_dir, "--no-prefix-sharing")
    assert shared_scores == plain_scores
    assert shared["prefix_sharing"] is True and plain["prefix_sharing"] is False
    assert shared["tokens"] == plain["tokens"] == plain["tokens_computed"]
    assert shared["tokens_computed"] < 0.6 * shared["tokens"]
