"""POLLUX-shaped contest prompts: several answers, each judged on several criteria, the rows shuffled.

Rows about one answer share everything up to ``### Критерий оценки:`` (task, answer), as in the contest's test
files, which are not ordered by answer. Used by the prefix-sharing tests (tests/submission/).
"""

from __future__ import annotations

import random

from submission.prompts.sections import compose_prompt

SCALE = "0: плохо\n1: так себе\n2: хорошо\n3: отлично\n"
WORDS = ("лес", "река", "город", "ответ", "задача", "число", "текст", "письмо", "друг", "время", "дорога", "море",
         "поле", "книга", "школа", "работа", "вопрос", "решение", "пример", "история")
CRITERIA = ("Грамотность", "Связность текста", "Правильность ответа", "Полнота", "Стиль", "Логичность",
            "Точность формулировок", "Соответствие заданию")


def _words(rng: random.Random, count: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(count))


def pollux_prompts(answers: int, criteria: int, answer_words: int = 60, singletons: int = 0,
                   seed: int = 0) -> list[str]:
    """``answers`` x ``criteria`` prompts plus ``singletons`` answers judged once, in a shuffled order."""
    rng = random.Random(seed)
    prompts = []
    for a in range(answers + singletons):
        task, answer = f"Задание {a}: {_words(rng, 8)}", _words(rng, answer_words + rng.randrange(10))
        for c in range(criteria if a < answers else 1):
            criterion = f"{CRITERIA[c % len(CRITERIA)]} {c}: {_words(rng, 3 + rng.randrange(6))}"
            prompts.append(compose_prompt(task, answer, criterion, SCALE))
    rng.shuffle(prompts)
    return prompts
