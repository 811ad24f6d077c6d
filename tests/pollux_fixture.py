"""POLLUX-shaped records (the documented schema of ``ai-forever/POLLUX``), written as parquet or JSONL for tests.

Three instructions, several answers each, several criteria per answer; 0-1, 0-2, 0-3, 0-4 and 1-3 rubrics; -1
annotations, fractional means, empty and null references; plus one row for each drop reason. ``EXPECTED`` gives
each kept row's score and what the converter must do with it.
"""

from __future__ import annotations

import json
from pathlib import Path

RUBRICS = {
    "0-1": "0: Ответ не соответствует критерию.\n\n1: Ответ соответствует критерию.",
    "0-2": "0: Не выполнено.\n\n1: Выполнено частично.\n\n2: Выполнено полностью.",
    "0-3": "0: Плохо.\n\n1: Слабо.\n\n2: Хорошо.\n\n3: Отлично.",
    "0-4": "0: a\n\n1: b\n\n2: c\n\n3: d\n\n4: e",
    "1-3": "1: Низкая.\n\n2: Средняя.\n\n3: Высокая.",
}
INSTRUCTIONS = {
    "poem": "Напишите короткое стихотворение о весне.",
    "sum": "Сколько будет 17 + 25? Ответьте числом.",
    "code": "Напишите функцию на Python, которая возвращает сумму списка.",
}
ANSWERS = {
    ("poem", "m1"): "Весна пришла, ручьи звенят,\nИ птицы весело летят.",
    ("poem", "m2"): "Весна. Тепло. Цветы.",
    ("sum", "m1"): "42",
    ("code", "m1"): "def total(xs):\n    return sum(xs)",
}
REFERENCES = {"poem": "", "sum": "42", "code": None}
TASK_TYPES = {"poem": "Творческие задачи", "sum": "Математика", "code": "Программирование"}


def _annotations(scores):
    return [{"comment": f"оценка {s}", "score": s} for s in scores]


def _record(task, model, criterion, scale, scores, mean=None, **overrides):
    applicable = [s for s in scores if s != -1]
    record = {
        "instruction": INSTRUCTIONS[task], "reference_answer": REFERENCES[task], "answer": ANSWERS[(task, model)],
        "model_id": model, "task_type": TASK_TYPES[task], "task_subtype": "sub", "task_subsubtype": "subsub",
        "difficulty": "Простой", "domain": "Общий", "is_provocative": False, "criteria_name": criterion,
        "criteria_description": f"Описание критерия «{criterion}».", "rubrics": RUBRICS[scale],
        "rubrics_example": "", "annotations": _annotations(scores),
        "criteria_score": mean if mean is not None else (sum(applicable) / len(applicable) if applicable else -1.0),
    }
    record.update(overrides)
    return record


# (task, model, criterion, scale, annotator scores, expected score); the kept rows.
KEPT = [
    ("poem", "m1", "Грамотность", "0-2", [2, 2, 1], 2),
    ("poem", "m1", "Рифма", "0-1", [1, 0, 1], 1),
    ("poem", "m1", "Образность", "0-3", [1, 2], 1),        # even split 1.5: nearer the mean 1.5 -> tie -> lower
    ("poem", "m1", "Оригинальность", "1-3", [3, 3, 2], 3),  # a 1-3 scale is kept as it is
    ("poem", "m2", "Грамотность", "0-2", [0, 1, 2, 2], 1),  # median 1.5 between 1 and 2; the mean 1.25 is nearer 1
    ("poem", "m2", "Рифма", "0-1", [-1, -1, 0], -1),        # a strict majority said not applicable
    ("poem", "m2", "Образность", "0-3", [-1, 3], 3),        # one of two -1: not a majority; median of [3]
    ("sum", "m1", "Правильность", "0-2", [2, 2], 2),
    ("sum", "m1", "Формат", "0-1", [1, 1, 0], 1),
    ("code", "m1", "Корректность", "0-3", [3, 2, 2], 2),
    ("code", "m1", "Стиль", "0-2", [1, 2], 1),
]
# (record, drop reason)
DROPPED = [
    (_record("sum", "m1", "Подробность", "0-4", [4, 3, 4]), "scale_0_4"),
    (_record("code", "m1", "Без шкалы", "0-2", [1], rubrics="Оцените по своему усмотрению."), "unreadable_rubric"),
    (_record("code", "m1", "Пусто", "0-2", [1], answer=""), "missing_text"),
    (_record("code", "m1", "Нет оценок", "0-2", [], criteria_score=None), "no_scores"),
    (_record("sum", "m1", "Вне шкалы", "0-1", [2, 2]), "score_outside_rubric"),
    (_record("sum", "m1", "Правильность", "0-2", [0, 0]), "duplicate"),
]


def records() -> list[dict]:
    """Every fixture record: the kept ones (in KEPT order), then one per drop reason."""
    kept = [_record(t, m, c, s, scores) for t, m, c, s, scores, _ in KEPT]
    kept[4]["criteria_score"] = 1.25
    kept[6]["criteria_score"] = 1.0  # [-1, 3] averaged with the -1 as a value: human_mean must be 3.0
    return kept + [r for r, _ in DROPPED]


def write_jsonl(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for record in records():
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def write_parquet(path: Path) -> Path:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(records()).to_parquet(path, index=False)
    return path
