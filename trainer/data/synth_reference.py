"""Synthetic rows whose score needs the answer compared with the reference (``synth --task reference``).

    python -m trainer synth data/ref --task reference --rows 600 --seed 1                  # English and Russian rows
    python -m trainer synth data/ref --task reference --rows 600 --seed 1 --language en    # English only (fewer tokens)

The default synthetic data (trainer/data/synth.py) has a lexical label a random tiny model learns; this task does not:
every answer is a plausible one, and which score it earns is decided by whether its value or arguments equal the
reference's. Two families in the contest layout, a 0..3 scale, short prompts:

    arithmetic, criterion «Правильность ответа и формата» (English rows: "Correctness of the answer and format"):
      the task asks for ``a op b`` written as «Ответ: N» ("Answer: N"); the reference solves it.
      3: the right value in the required format   2: the right value, another format
      1: the required format, a wrong value        0: a wrong value, another format
      Wrong values are near misses (±1, ±2, ±10, swapped digits) and every answer shows its working the same way,
      so the format is visible from the answer alone, the value only against the reference (or the task).
    tool call, criterion «Корректность вызова инструмента» ("Correctness of the tool call"):
      the reference is the right JSON call; the answer is a call with
      3: the same function and arguments (key order may differ)   2: the same function, one argument value changed
      1: the same function, every argument value changed           0: another function with its own arguments
      Changed values come from the same pools as the right ones.

So a judge that reads only the answer's wording can find the arithmetic format bit (about half the arithmetic rows
right) and little else. Scores are assigned least-used-first per family (balanced classes). ``train_minus_one``:
as in trainer/data/synth.py, rows whose scale carries the not-applicable line get -1 with another family's criterion
(share ``train_minus_one`` in train, default 0 like the real train file; 0.4 in test). ``language``: ``ru``, ``en``
or ``mix`` (each row drawn 50/50). Everything is a function of the arguments.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass

import pandas as pd

from trainer.data.synth import contest_frames, write_frames

ID_PREFIX = "ref-"
LANGUAGES = ("ru", "en", "mix")
_NOT_APPLICABLE_SHARE = 0.2
_TEST_MINUS_ONE_SHARE = 0.4

_TEXT = {
    "ru": {
        "arith_criterion": "Правильность ответа и формата",
        "arith_scale": ["ответ неверный, формат не соблюдён", "формат соблюдён, ответ неверный",
                        "ответ верный, формат не соблюдён", "ответ верный, формат соблюдён"],
        "tool_criterion": "Корректность вызова инструмента",
        "tool_scale": ["не та функция", "функция верна, все аргументы неверны",
                       "функция верна, один аргумент неверен", "функция и аргументы верны"],
        "not_applicable": "-1: критерий неприменим",
        "arith_task": ["Вычислите {a} {op} {b}. Формат: «Ответ: число».",
                       "Найдите {a} {op} {b}, ответ в формате «Ответ: число»."],
        "working": "{a} {op} {b} = {v}.",
        "required": "Ответ: {v}",
        "other_formats": ["Получается {v}.", "Итого {v}", "Результат: {v}.", "{v}"],
        "tool_task": "Вызови инструмент ({tools}) в JSON для запроса: {request}",
    },
    "en": {
        "arith_criterion": "Correctness of the answer and format",
        "arith_scale": ["wrong value, wrong format", "right format, wrong value", "right value, wrong format",
                        "right value, right format"],
        "tool_criterion": "Correctness of the tool call",
        "tool_scale": ["wrong function", "right function, every argument wrong", "right function, one argument wrong",
                       "function and arguments right"],
        "not_applicable": "-1: the criterion does not apply",
        "arith_task": ["Compute {a} {op} {b}. Format: «Answer: number».",
                       "Find {a} {op} {b}, answer in the form «Answer: number»."],
        "working": "{a} {op} {b} = {v}.",
        "required": "Answer: {v}",
        "other_formats": ["That gives {v}.", "Total {v}", "Result: {v}.", "{v}"],
        "tool_task": "Call a tool ({tools}) as JSON for the request: {request}",
    },
}

# name -> (request template per language, argument pools per language)
_TOOLS = {
    "get_weather": ({"ru": "Какая погода {date} в городе {city}?", "en": "What is the weather {date} in {city}?"},
                    {"ru": {"city": ["Москва", "Казань", "Самара", "Омск", "Тверь"],
                            "date": ["завтра", "сегодня", "в субботу"]},
                     "en": {"city": ["London", "Paris", "Berlin", "Madrid", "Rome"],
                            "date": ["tomorrow", "today", "on Saturday"]}}),
    "book_table": ({"ru": "Забронируй столик в «{place}» на {guests} гостей, {date}.",
                    "en": "Book a table at \"{place}\" for {guests} guests, {date}."},
                   {"ru": {"place": ["Старый двор", "Белый сад", "Тёплый дом"], "guests": [2, 3, 4, 6],
                           "date": ["в пятницу", "в воскресенье", "завтра"]},
                    "en": {"place": ["Old Yard", "White Garden", "Warm House"], "guests": [2, 3, 4, 6],
                           "date": ["on Friday", "on Sunday", "tomorrow"]}}),
    "send_message": ({"ru": "Отправь {to}: «{text}»", "en": "Send {to}: \"{text}\""},
                     {"ru": {"to": ["маме", "Ивану", "учителю"],
                             "text": ["буду поздно", "встреча завтра", "спасибо за книгу"]},
                      "en": {"to": ["mom", "Ivan", "the teacher"],
                             "text": ["I will be late", "meeting tomorrow", "thanks for the book"]}}),
    "create_reminder": ({"ru": "Напомни мне {title} {when}.", "en": "Remind me to {title} {when}."},
                        {"ru": {"title": ["купить хлеб", "позвонить другу", "полить цветы"],
                                "when": ["завтра утром", "в пятницу", "через час"]},
                         "en": {"title": ["buy bread", "call a friend", "water the plants"],
                                "when": ["tomorrow morning", "on Friday", "in an hour"]}}),
}


@dataclass(frozen=True)
class _Row:
    prompt: str
    score: int
    family: str
    language: str


def _scale(lines: list[str], not_applicable: str | None) -> str:
    out = [not_applicable] if not_applicable else []
    return "\n".join(out + [f"{score}: {text}" for score, text in enumerate(lines)]) + "\n"


def _near_miss(value: int, rng: random.Random) -> int:
    candidates = {value + d for d in (-10, -2, -1, 1, 2, 10)}
    digits = str(abs(value))
    if len(digits) >= 2 and digits[-1] != digits[-2]:
        swapped = int(digits[:-2] + digits[-1] + digits[-2])
        candidates.add(-swapped if value < 0 else swapped)
    candidates.discard(value)
    return rng.choice(sorted(candidates))


def _arithmetic(score: int, text: dict, rng: random.Random) -> tuple[str, str, str]:
    """(task, reference, answer) for a score in 0..3: score = 2 * (value right) + (format right)."""
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op, value = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
    task = rng.choice(text["arith_task"]).format(a=a, op=op, b=b)
    reference = text["required"].format(v=value)
    shown = value if score >= 2 else _near_miss(value, rng)
    written = text["required"] if score in (1, 3) else rng.choice(text["other_formats"])
    answer = text["working"].format(a=a, op=op, b=b, v=shown) + " " + written.format(v=shown)
    return task, reference, answer


def _call_json(name: str, arguments: dict, rng: random.Random) -> str:
    keys = list(arguments)
    rng.shuffle(keys)
    return json.dumps({"name": name, "arguments": {k: arguments[k] for k in keys}}, ensure_ascii=False)


def _other_value(pool: list, current, rng: random.Random):
    return rng.choice([v for v in pool if v != current])


def _tool_call(score: int, text: dict, language: str, rng: random.Random) -> tuple[str, str, str]:
    """(task, reference, answer) for a score in 0..3 (see the module docstring)."""
    name = rng.choice(sorted(_TOOLS))
    requests, pools = _TOOLS[name]
    pool = pools[language]
    arguments = {key: rng.choice(values) for key, values in pool.items()}
    task = text["tool_task"].format(request=requests[language].format(**arguments), tools=", ".join(sorted(_TOOLS)))
    reference = json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False)
    if score == 3:
        return task, reference, _call_json(name, arguments, rng)
    if score in (1, 2):
        keys = list(arguments) if score == 1 else [rng.choice(list(arguments))]
        changed = {k: (_other_value(pool[k], v, rng) if k in keys else v) for k, v in arguments.items()}
        return task, reference, _call_json(name, changed, rng)
    other = rng.choice([n for n in sorted(_TOOLS) if n != name])
    other_pool = _TOOLS[other][1][language]
    return task, reference, _call_json(other, {k: rng.choice(v) for k, v in other_pool.items()}, rng)


def _make_row(index: int, rng: random.Random, counts: dict[str, Counter], language: str,
              minus_one_share: float) -> _Row:
    from submission.prompts.sections import compose_prompt

    family = ("static", "function_calling")[index % 2]
    lang = rng.choice(("ru", "en")) if language == "mix" else language
    text = _TEXT[lang]
    not_applicable = rng.random() < _NOT_APPLICABLE_SHARE
    minus_one = not_applicable and rng.random() < minus_one_share
    low = min(counts[family][s] for s in range(4))
    score = rng.choice([s for s in range(4) if counts[family][s] == low])
    counts[family][score] += 1
    if family == "static":
        task, reference, answer = _arithmetic(score, text, rng)
        criterion, lines = text["arith_criterion"], text["arith_scale"]
    else:
        task, reference, answer = _tool_call(score, text, lang, rng)
        criterion, lines = text["tool_criterion"], text["tool_scale"]
    if minus_one:  # an ordinary answer judged by the other family's criterion: not applicable
        other = "tool" if family == "static" else "arith"
        criterion, lines, score = text[f"{other}_criterion"], text[f"{other}_scale"], -1
    scale = _scale(lines, text["not_applicable"] if not_applicable else None)
    return _Row(compose_prompt(task, answer, criterion, scale, reference), score, family, lang)


def make_reference_rows(rows: int, seed: int, test_rows: int | None = None, language: str = "mix",
                        train_minus_one: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train ``id,prompt,score``, test ``id,prompt`` and gold ``id,score`` frames (ids ``ref-000001`` ... across
    the three); same arguments, same frames."""
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if language not in LANGUAGES:
        raise ValueError(f"language {language!r}: choose one of {', '.join(LANGUAGES)}")
    if not 0.0 <= train_minus_one <= 1.0:
        raise ValueError(f"train_minus_one must be within 0..1, got {train_minus_one}")
    test_rows = max(1, rows // 4) if test_rows is None else test_rows
    rng = random.Random(seed)
    train_counts: dict[str, Counter] = {"static": Counter(), "function_calling": Counter()}
    test_counts: dict[str, Counter] = {"static": Counter(), "function_calling": Counter()}
    train = [_make_row(i, rng, train_counts, language, train_minus_one) for i in range(rows)]
    test = [_make_row(i, rng, test_counts, language, _TEST_MINUS_ONE_SHARE) for i in range(test_rows)]
    return contest_frames(train, test, ID_PREFIX)


def write_reference_rows(out_dir, rows: int, seed: int, test_rows: int | None = None, language: str = "mix",
                         train_minus_one: float = 0.0) -> dict:
    """Write ``train.csv``, ``test.csv`` and ``gold.csv`` (UTF-8) into ``out_dir``; returns the paths by name."""
    return write_frames(out_dir, make_reference_rows(rows, seed, test_rows, language, train_minus_one))
