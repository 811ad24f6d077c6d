"""Not-applicable augmentation: -1 rows pair two task families, from one split only, never relabel."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from submission.prompts.sections import compose_prompt, parse_prompt
from trainer.data.augment import NOT_APPLICABLE_LINE, NOT_APPLICABLE_SUFFIX, not_applicable_rows
from trainer.data.synth import make_synthetic

SCALE = "0: плохо\n1: так себе\n2: хорошо\n3: отлично\n"


@pytest.fixture(scope="module")
def train_frame():
    return make_synthetic(400, 7, train_minus_one=0)[0]


def _head(prompt: str) -> tuple:
    sections = parse_prompt(prompt)
    return sections.task, sections.reference, sections.answer


def test_every_augmented_row_takes_its_task_from_one_family_and_its_criterion_from_another(train_frame):
    new = not_applicable_rows(train_frame, 0.2, seed=0)
    assert len(new) == 80
    originals = {str(i): parse_prompt(p) for i, p in zip(train_frame["id"], train_frame["prompt"], strict=True)}
    families_of = {}
    for sections in originals.values():
        families_of.setdefault(sections.criterion, set()).add(sections.family)
    for row in new.itertuples(index=False):
        receiver = originals[row.id.removesuffix(NOT_APPLICABLE_SUFFIX)]
        made = parse_prompt(row.prompt)
        assert (made.task, made.reference, made.answer) == (receiver.task, receiver.reference, receiver.answer)
        assert made.family == receiver.family
        # The criterion comes from rows of other families only: never one seen with the receiver's family.
        assert receiver.family not in families_of[made.criterion], (receiver.family, made.criterion)
        assert row.score == -1 and -1 in made.allowed


def test_original_rows_are_never_relabelled_or_reused_as_ids(train_frame):
    before = train_frame.copy()
    added = not_applicable_rows(train_frame, 0.2, seed=1)
    pd.testing.assert_frame_equal(train_frame, before)  # only read
    assert len(added) and (added["score"] == -1).all()
    assert not set(added["id"]) & set(train_frame["id"]) and added["id"].is_unique
    assert not_applicable_rows(train_frame, 0.0, seed=1).empty


def test_a_criterion_shared_by_two_families_is_never_pasted():
    rows = [
        compose_prompt("Вычислите 2 + 3.", "Ответ: 5", "Грамотность", SCALE, "Ответ: 5"),
        compose_prompt("Вычислите 4 * 3.", "Ответ: 12", "Правильность ответа", SCALE, "Ответ: 12"),
        compose_prompt("Напишите рассказ о лесе.", "Лес шумел.", "Грамотность", SCALE, None),
        compose_prompt("Напишите письмо другу.", "Привет, друг.", "Связность текста", SCALE, None),
    ]
    frame = pd.DataFrame({"id": ["a", "b", "c", "d"], "prompt": rows, "score": [3, 3, 2, 1]})
    new = not_applicable_rows(frame, 1.0, seed=0)
    pairs = {(row.id, parse_prompt(row.prompt).criterion) for row in new.itertuples()}
    # Static rows may only get the generative-only criterion, generative rows the static-only one.
    assert pairs == {("a#na", "Связность текста"), ("b#na", "Связность текста"),
                     ("c#na", "Правильность ответа"), ("d#na", "Правильность ответа")}


def test_the_minus_one_line_is_added_once():
    with_line = compose_prompt("Напишите рассказ.", "Текст.", "Связность текста", f"{NOT_APPLICABLE_LINE}\n{SCALE}", None)
    without = compose_prompt("Вычислите 2 + 2.", "Ответ: 4", "Правильность ответа", SCALE, "Ответ: 4")
    frame = pd.DataFrame({"id": ["g", "s"], "prompt": [with_line, without], "score": [2, 3]})
    new = not_applicable_rows(frame, 1.0, seed=0).set_index("id")["prompt"]
    assert new["g#na"].count("-1:") == 1 and new["s#na"].count("-1:") == 1  # added to one, kept single in the other
    assert parse_prompt(new["g#na"]).allowed == (-1, 0, 1, 2, 3)


def test_training_augments_from_the_train_split_only(tmp_path, train_frame, tiny_tokenizer, tiny_model_dir,
                                                     monkeypatch):
    from trainer.training import train as train_module
    from trainer.training.config import TrainConfig
    from trainer.training.rundir import RunDir

    path = tmp_path / "train.csv"
    train_frame.to_csv(path, index=False)
    seen = {}

    class Stop(Exception):
        pass

    def capture(frame, *args, **kwargs):
        seen["fit"] = frame
        raise Stop

    monkeypatch.setattr(train_module, "build_peft_model", lambda config, precision: (object(), tiny_tokenizer))
    monkeypatch.setattr(train_module, "tokenise", capture)
    config = TrainConfig(train_path=str(path), output_dir=str(tmp_path / "runs"), augment_not_applicable=0.2,
                         val_fraction=0.25, backend="peft", base_model=str(tiny_model_dir))
    with pytest.raises(Stop):
        train_module.train_run(config)
    val_ids = RunDir(config.run_dir()).staging().read_val_ids()  # the stopped run never replaced the run folder
    fit = seen["fit"]
    added = fit[fit["id"].str.endswith(NOT_APPLICABLE_SUFFIX)]
    receivers = {i.removesuffix(NOT_APPLICABLE_SUFFIX) for i in added["id"]}
    assert len(added) == round(0.2 * (len(train_frame) - len(val_ids))) and not receivers & val_ids
    originals = fit[~fit["id"].str.endswith(NOT_APPLICABLE_SUFFIX)]
    assert (originals["score"] >= 0).all() and not set(originals["id"]) & val_ids


def test_the_minus_one_threshold_is_fitted_on_validation_rows_only(tmp_path, train_frame, monkeypatch):
    """evaluate scores the validation rows plus rows augmented from them, nothing else, and fits P(-1) there."""
    from trainer.data.split import stratified_split
    from trainer.evaluation import evaluate
    from trainer.training.rundir import RunDir

    path = tmp_path / "train.csv"
    train_frame.to_csv(path, index=False)
    run_dir = tmp_path / "run"
    (run_dir / "merged").mkdir(parents=True)
    (run_dir / "merged" / "config.json").write_text("{}")
    (run_dir / "merged" / "model.safetensors").write_bytes(b"")  # score_rows is faked: no weights are read
    _, val = stratified_split(train_frame, 0.25, seed=3)
    RunDir(run_dir).write_val_ids(val["id"])
    config = {"name": "t", "run_name": None, "base_model": "b", "method": "lora", "train_path": str(path),
              "max_tokens": 512, "metric": "qwk", "seed": 3, "augment_not_applicable": 0.3}
    (run_dir / "training_config.json").write_text(json.dumps({"config": config}))
    val_prompts = set(val["prompt"])
    scored = []

    def fake_score_rows(model_dir, prompts, max_tokens, device=None, engine="hf", **kwargs):
        prompts = list(prompts)
        scored.extend(prompts)
        sections = [parse_prompt(p) for p in prompts]
        probs = np.zeros((len(prompts), 5))
        gold = dict(zip(val["prompt"], val["score"], strict=True))
        for i, prompt in enumerate(prompts):
            # The original rows: the gold score, a little P(-1); the augmented ones: P(-1) 0.3, never the argmax.
            probs[i, 0] = 0.05 if prompt in gold else 0.3
            probs[i, 1 + (gold.get(prompt, 3) if prompt in gold else 3)] = 1 - probs[i, 0]
        allowed = [s.allowed for s in sections]
        probs[[(-1 not in a) for a in allowed], 0] = 0.0
        return probs, allowed, [s.family for s in sections]

    monkeypatch.setattr(evaluate, "score_rows", fake_score_rows)
    report = evaluate.evaluate_run(run_dir)
    heads = {_head(p) for p in val["prompt"]}
    assert set(scored) - val_prompts and all(_head(p) in heads for p in scored)  # augmented from val rows only
    assert 0.05 < report["decision"]["minus_one_threshold"] < 0.3
    block = report["not_applicable"]
    assert block["augmented_rows"] == round(0.3 * len(val)) and block["argmax"]["recall"] == 0.0
    assert block["decision"]["recall"] == 1.0 and block["decision"]["precision"] == 1.0
    assert report["n"] == len(val)  # the usual metrics stay on the original validation rows
    card = RunDir(run_dir).model_card_path.read_text(encoding="utf-8")
    assert f"-1 precision/recall under this decision: 1.00/1.00 (validation rows + {block['augmented_rows']}" in card
