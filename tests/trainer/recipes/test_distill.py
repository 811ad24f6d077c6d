"""`trainer distill`: the teacher's label distribution per id, through the runtime's own engines."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SOFT = ["p_-1", "p_0", "p_1", "p_2", "p_3"]


def _cli(args):
    from typer.testing import CliRunner

    from trainer.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def unlabelled_rows(synth_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("distill") / "rows.csv"
    pd.read_csv(synth_dir / "train.csv", dtype={"id": str}).head(20)[["id", "prompt"]].to_csv(path, index=False)
    return path


def test_distill_writes_the_runtime_probabilities_per_id(tiny_model_dir, unlabelled_rows, tmp_path):
    from submission.prompts.sections import parse_prompt
    from trainer.evaluation.evaluate import score_rows

    out = tmp_path / "soft.csv"
    result = _cli(["distill", "--teacher", tiny_model_dir, "--data", unlabelled_rows, "--out", out])
    assert result.exit_code == 0, result.output
    soft = pd.read_csv(out, dtype={"id": str})
    rows = pd.read_csv(unlabelled_rows, dtype={"id": str})
    assert list(soft.columns) == ["id", *SOFT] and list(soft.id) == list(rows.id)
    values = soft[SOFT].to_numpy()
    assert np.allclose(values.sum(axis=1), 1.0)
    for prompt, row in zip(rows.prompt, values, strict=True):
        outside = [i for i, label in enumerate((-1, 0, 1, 2, 3)) if label not in parse_prompt(prompt).allowed]
        assert np.all(row[outside] == 0)
    expected, _, _ = score_rows(tiny_model_dir, rows.prompt, 4096)
    assert np.allclose(values, expected, atol=1e-6)


def test_free_text_teacher_gives_the_empirical_distribution_of_samples(tiny_model_dir, unlabelled_rows, tmp_path,
                                                                       monkeypatch):
    from submission.engines.engine_hf import TransformersEngine

    teacher = tmp_path / "cot_teacher"
    shutil.copytree(tiny_model_dir, teacher)
    (teacher / "judge.json").write_text(json.dumps({"mode": "generate"}))
    calls = []

    def sample_texts(self, prompts, max_new_tokens, samples, temperature, seed=0):
        calls.append((len(prompts), samples, temperature))
        return [["Думаю... Оценка: 2", "[RESULT] 2", "1", "нет оценки"][:samples] for _ in prompts]

    monkeypatch.setattr(TransformersEngine, "sample_texts", sample_texts)
    out = tmp_path / "soft.csv"
    result = _cli(["distill", "--teacher", teacher, "--data", unlabelled_rows, "--out", out, "--samples", "4",
                   "--temperature", "0.7"])
    assert result.exit_code == 0, result.output
    soft = pd.read_csv(out, dtype={"id": str})
    assert len(soft) == 20 and {c[1:] for c in calls} == {(4, 0.7)}
    assert np.allclose(soft[SOFT].to_numpy(), [[0, 0, 1 / 3, 2 / 3, 0]] * 20)


def test_transformers_sampling_is_seeded_and_draws_k_texts(tiny_engine, tiny_prompts):
    first = tiny_engine.sample_texts(tiny_prompts[:2], 4, samples=3, temperature=1.0, seed=5)
    again = tiny_engine.sample_texts(tiny_prompts[:2], 4, samples=3, temperature=1.0, seed=5)
    assert [len(t) for t in first] == [3, 3] and first == again
    assert any(len(set(t)) > 1 for t in first)  # a random tiny model at T=1 does not repeat itself every time


def test_texts_become_a_distribution_over_allowed_scores_only():
    from submission.scoring.decoding import probabilities_from_texts

    probs = probabilities_from_texts([["3", "Оценка: 3", "2"], ["ничего"]], [(0, 1, 2), (0, 1, 2, 3)])
    assert np.allclose(probs[0], [0, 0, 0, 1, 0])  # "3" is outside the 0..2 rubric: those samples are left out
    assert np.allclose(probs[1], 0)


def test_distill_rejects_a_folder_that_is_not_a_model(tmp_path, unlabelled_rows):
    result = _cli(["distill", "--teacher", tmp_path, "--data", unlabelled_rows, "--out", tmp_path / "x.csv"])
    assert result.exit_code == 2 and "not a model folder" in result.output


def test_soft_labels_file_is_checked(tmp_path):
    from submission.data import DataError
    from trainer.recipes.distill import read_soft_labels

    path = tmp_path / "soft.csv"
    pd.DataFrame({"id": ["a"], "p_-1": [0.0], "p_0": [0.5], "p_1": [0.6], "p_2": [0.0], "p_3": [0.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="sum to 1"):
        read_soft_labels(path)
    assert Path(path).is_file()


def test_vllm_sampling_draws_n_texts_per_prompt(tiny_model_dir, tiny_model, monkeypatch):
    from submission.engines import engine_vllm
    from submission.engines.engine_hf import load_tokenizer
    from tests import fake_vllm

    api, calls = fake_vllm.fake_api(tiny_model)
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    engine = engine_vllm.VllmEngine(tiny_model_dir, load_tokenizer(tiny_model_dir), max_model_len=512)
    texts = engine.sample_texts([[5, 6, 7], [8, 9]], 3, samples=4, temperature=0.9, seed=2)
    assert [len(t) for t in texts] == [4, 4]
    params = calls["params"][-1]
    assert (params.n, params.temperature, params.seed, params.logprobs) == (4, 0.9, 2, None)


def test_distill_on_the_vllm_engine_matches_transformers(tiny_model_dir, tiny_model, unlabelled_rows, monkeypatch):
    from submission.engines import engine_vllm
    from submission.engines.engine_hf import load_tokenizer
    from submission.scoring.decoding import label_token_ids
    from tests import fake_vllm
    from trainer.recipes.distill import teacher_probabilities

    api, _ = fake_vllm.fake_api(tiny_model, lift_ids=label_token_ids(load_tokenizer(tiny_model_dir)))
    monkeypatch.setattr(engine_vllm, "load_vllm_api", lambda: api)
    prompts = pd.read_csv(unlabelled_rows).prompt.tolist()
    on_vllm, _ = teacher_probabilities(tiny_model_dir, prompts, engine="vllm", max_tokens=1024)
    on_hf, _ = teacher_probabilities(tiny_model_dir, prompts, engine="hf", max_tokens=1024)
    assert np.allclose(on_vllm, on_hf, atol=1e-4)


def test_distill_no_prefix_sharing_computes_every_row_and_gives_the_same_soft_labels(tiny_model_dir, tmp_path,
                                                                                     caplog):
    import logging

    from tests.pollux_rows import pollux_prompts

    prompts = pollux_prompts(answers=3, criteria=5, answer_words=120, seed=2)
    data = tmp_path / "rows.csv"
    pd.DataFrame({"id": [f"r{i}" for i in range(len(prompts))], "prompt": prompts}).to_csv(data, index=False)
    soft, counts = {}, {}
    for flags in ([], ["--no-prefix-sharing"]):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trainer.recipes.distill"):
            result = _cli(["distill", "--teacher", tiny_model_dir, "--data", data, "--out", tmp_path / "soft.csv",
                           "--engine", "hf", *flags])
        assert result.exit_code == 0, result.output
        soft[bool(flags)] = pd.read_csv(tmp_path / "soft.csv")[SOFT].to_numpy()
        found = [re.search(r"prompt tokens (\d+) computed of (\d+) submitted", r.getMessage()) for r in caplog.records]
        counts[bool(flags)] = tuple(int(n) for n in next(m for m in found if m).groups())  # (computed, submitted)
    assert counts[True][0] == counts[True][1] == counts[False][1]  # off: every submitted token computed
    assert counts[False][0] < 0.5 * counts[False][1]  # on: each answer once for its 5 criteria
    np.testing.assert_allclose(soft[False], soft[True], atol=1e-5)
