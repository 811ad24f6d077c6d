"""Rubrics in unusual layouts: sections in another order, English or short headers, other scale markers, one-line
scales, indented sub-items. The allowed labels come out right, and whatever the layout no written score can be a
label the prompt's text does not list: the runtime checks against a second, independent reading (stated_labels).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from submission.data import DataError, validate_predictions
from submission.prompts.sections import parse_prompt, parse_scale, stated_labels
from submission.runtime.runtime import ContestRows
from submission.scoring.decoding import LABELS, decide, probabilities_from_label_logits

RUSSIAN = {"task": "Задание для оценки", "reference": "Эталонный ответ", "answer": "Ответ для оценки",
           "criterion": "Критерий оценки", "scale": "Шкала оценивания по критерию"}
ENGLISH = {"task": "Task", "reference": "Reference answer", "answer": "Answer to evaluate",
           "criterion": "Evaluation criterion", "scale": "Scale"}
SHORT = {"task": "Задание", "reference": "Эталон", "answer": "Ответ", "criterion": "Критерий", "scale": "Шкала"}
HEADER_SETS = [RUSSIAN, ENGLISH, SHORT]
HEADER_STYLES = ["### {}:", "## {}", "# {}:", "**{}:**"]
# Each marker writes one scale line for a label.
MARKERS = ["{}: текст", "{} - текст", "{} — текст", "{}) текст", "{}. текст", "**{}** — текст", "Оценка {} — текст",
           "- {}: текст", "{} балла: текст"]
BODIES = {"task": "Сколько будет 2+2?", "reference": "4", "answer": "Ответ: 5", "criterion": "Правильность ответа"}


def layout(labels, order, headers, style, marker, one_line=False, sub_items=False):
    """One prompt: the sections in ``order`` under ``headers``; the scale names ``labels`` in ``marker`` style."""
    lines = [marker.format(label) for label in labels]
    if sub_items:  # numbered details under the last score line, indented: not scores
        lines += ["    2. формат соблюдён", "    3) ответ полный"]
    scale = (", ".join(lines) if one_line and not sub_items else "\n".join(lines))
    parts = []
    for name in order:
        body = scale if name == "scale" else BODIES[name]
        parts.append(f"{style.format(headers[name])}\n{body}")
    return "\n\n".join(parts) + "\n"


LAYOUTS = st.fixed_dictionaries({
    "labels": st.lists(st.sampled_from(LABELS), min_size=2, max_size=5, unique=True).map(sorted),
    "order": st.permutations(["task", "reference", "answer", "criterion", "scale"]),
    "headers": st.sampled_from(HEADER_SETS),
    "style": st.sampled_from(HEADER_STYLES),
    "marker": st.sampled_from(MARKERS),
    "one_line": st.booleans(),
    "sub_items": st.booleans(),
})


@settings(max_examples=250, deadline=None)
@given(case=LAYOUTS)
def test_every_layout_variant_gives_exactly_the_scale_labels(case):
    if case["one_line"] and case["marker"].startswith("- "):
        case["marker"] = "{}: текст"  # a bullet cannot start the second item of a one-line scale
    prompt = layout(**case)
    sections = parse_prompt(prompt)
    assert sections.parsed, prompt
    assert sections.allowed == tuple(case["labels"]), prompt
    assert sections.criterion == BODIES["criterion"] and sections.task == BODIES["task"]
    # The second reading finds at least the scale's labels (it is the check, so it may not miss any).
    assert set(sections.allowed) <= set(stated_labels(prompt))


@settings(max_examples=300, deadline=None)
@given(text=st.lists(st.one_of(st.sampled_from(["0: a", "**1** — b", "Оценка 2 — c", "3) d", "-1: na", "    2. sub",
                                                "0 — нет, 1 — да", "2.5 балла", "### Шкала:", "### Критерий:", "\n"]),
                               st.text(max_size=12)), max_size=20).map("\n".join))
def test_the_scorers_labels_are_always_within_the_independent_reading(text):
    assert set(parse_scale(text)) <= set(stated_labels(text)) or parse_scale(text) == LABELS
    assert set(parse_prompt(text).allowed) <= set(stated_labels(text))


@pytest.mark.parametrize("scale, expected", [
    ("0 — нет, 1 — да", (0, 1)),
    ("0 - нет; 1 - частично; 2 - да", (0, 1, 2)),
    ("**0** — неверно\n**1** — верно", (0, 1)),
    ("Оценка 0 — неверно\nОценка 3 — верно", (0, 3)),
    ("0) неверно\n1) верно", (0, 1)),
    ("0. неверно\n1. верно", (0, 1)),
    ("0: неверно\n1: верно, если:\n   2. формат соблюдён\n   3) ответ полный", (0, 1)),
    ("\t0: неверно\n\t1: верно\n\t\t2. подпункт", (0, 1)),
])
def test_scale_marker_styles_one_line_scales_and_sub_items(scale, expected):
    assert parse_scale(scale) == expected


def test_english_headers_in_another_order_keep_a_zero_one_rubric():
    prompt = ("### Evaluation criterion:\nCorrectness\n\n### Scale:\n0 — wrong, 1 — right\n\n### Task:\n2+2?\n\n"
              "### Answer to evaluate:\n4\n")
    sections = parse_prompt(prompt)
    assert sections.parsed and sections.allowed == (0, 1) and sections.answer == "4"


def test_unrecognised_layout_allows_only_the_labels_its_text_states():
    prompt = "Оцени ответ «5» на вопрос «2+2». Шкала: 0 — неверно, 1 — верно."
    sections = parse_prompt(prompt)
    assert not sections.parsed and sections.allowed == (0, 1)
    assert parse_prompt("Оцени ответ, как считаешь нужным.").allowed == LABELS  # nothing stated: every label


def test_a_judge_that_prefers_three_cannot_write_it_on_a_zero_one_rubric_in_any_layout():
    prompts = [layout([0, 1], order, ENGLISH, "### {}:", marker, one_line=one, sub_items=sub)
               for order in (["task", "answer", "criterion", "scale"], ["scale", "criterion", "task", "answer"])
               for marker in ("{}: x", "**{}** — x", "Оценка {} — x") for one in (False, True) for sub in (False, True)]
    allowed = [parse_prompt(p).allowed for p in prompts]
    logits = np.tile([0.0, 0.0, 0.0, 0.0, 100.0], (len(prompts), 1))  # all mass on 3
    scores = decide(probabilities_from_label_logits(logits, allowed), allowed)
    assert set(scores) <= {0, 1}
    validate_predictions([str(i) for i in range(len(prompts))], scores, [stated_labels(p) for p in prompts])


def test_validation_uses_the_independent_reading_not_the_scorers():
    prompt = "### Задание для оценки:\nx\n### Ответ для оценки:\ny\n### Критерий оценки:\nz\n### Шкала оценивания по критерию:\n0: a\n1: b\n"
    rows = ContestRows.parse({"id": ["a"], "prompt": [prompt]})
    assert rows.stated == [(0, 1)]
    with pytest.raises(DataError, match="outside the rubric"):
        validate_predictions(rows.ids, [3], rows.stated)
