"""Synthetic judge data in the contest format, with a label a tiny random model can learn.

    python -m trainer synth data/synth --rows 1000 --seed 1          # train.csv, test.csv, gold.csv

Prompts use the real layout (task, optional reference, answer, criterion, scale) and cover the three task
families: static (Russian arithmetic with a reference solution), function calling (JSON tool calls) and
generative (open Russian tasks, usually without a reference).

The label rule is lexical on purpose (docs/ARCHITECTURE.md §8: a tiny model cannot learn "answer equals reference", it can
learn word statistics). The answer is Russian text (the reference's words, or the task's words when there is no
reference) with a fixed share of its Russian words swapped for English filler words:

    0-3 scale: no English -> 3, a quarter -> 2, half -> 1, all -> 0
    0-2 scale: no English -> 2,                half -> 1, all -> 0
    -1:        empty answer, only when the scale has a ``-1: критерий неприменим`` line

Scores are assigned least-used-first, so the classes stay balanced (majority share about 1/4). Train rows get -1
only rarely (the real train data has none); test rows get it more often. Everything is a function of the seed.

``--train-minus-one SHARE`` (``train_minus_one``) switches -1 to what the rubric line says, "критерий неприменим",
and sets how often train rows get it (0: none, like the real train file):

    -1:        the criterion and its scale belong to another task family than the task (a tool-call criterion on
               an arithmetic task, an arithmetic one on a story), always with the ``-1: …`` line in the scale;
               the answer is an ordinary one of the task's family (any share of English), so only the mismatch
               between task and criterion tells -1 apart. Only a family's own criteria are used (arithmetic answer
               and format, tool call): the generative family's text criteria (coherence, task compliance, grammar)
               apply to any written answer, an arithmetic explanation too, so they never make a row -1

Of the rows whose scale has the -1 line, a share of SHARE in train and 0.4 in test are scored -1 this way; every
other row is built exactly as above (its own family's criterion, the English-share label). Without the option the
files are the legacy ones, byte for byte.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from submission.prompts.sections import compose_prompt
from trainer.data.augment import NOT_APPLICABLE_LINE

ID_PREFIX = "synth-"

# Share of Russian words replaced by English filler, per (scale top, score).
ENGLISH_SHARE: dict[tuple[int, int], float] = {
    (3, 3): 0.0, (3, 2): 0.25, (3, 1): 0.5, (3, 0): 1.0,
    (2, 2): 0.0, (2, 1): 0.5, (2, 0): 1.0,
}

# Real train data has no -1, so train sees it rarely; test/gold exercise the -1 path.
_MINUS_ONE_SHARE = {"train": 0.04, "test": 0.4}
_TWO_POINT_SCALE_SHARE = 0.15
_NOT_APPLICABLE_SHARE = 0.15
_GENERATIVE_WITH_REFERENCE_SHARE = 0.2

ENGLISH_FILLER = (
    "the report system value really data simple result always people maybe important because process update "
    "market support between quickly however several example general problem service question project every "
    "thing during without another number team create within provide"
).split()

RUSSIAN_WORDS = (
    "город река солнце дорога книга письмо дом утро вечер работа семья друг школа учитель ученик решение задача "
    "вопрос ответ пример число время история природа лес поле море погода ветер дождь снег зима весна лето осень "
    "праздник подарок встреча путешествие поезд самолёт билет гостиница музей театр концерт библиотека магазин "
    "покупка рынок хлеб молоко чай кофе обед ужин завтрак рецепт кухня сад цветок дерево птица собака кошка "
    "важный новый старый большой маленький добрый интересный простой сложный быстрый спокойный яркий тёплый "
    "холодный весёлый грустный полезный точный понятный короткий длинный главный нужный "
    "рассказывать объяснять помогать читать писать думать решать считать готовить гулять смотреть слушать "
    "всегда часто иногда сегодня завтра вчера вместе поэтому однако также очень немного быстро медленно"
).split()

_RUSSIAN_TOKEN_RE = re.compile(r"^(?P<word>[А-Яа-яЁё]+)(?P<tail>[^А-Яа-яЁё]*)$")


@dataclass(frozen=True)
class _Row:
    prompt: str
    score: int


# --- the answer transform: the whole label rule lives here ------------------------------------------------------


def _swap_words(words: list[str], share: float, rng: random.Random) -> list[str]:
    """Replace round(share * n) of the Russian words by English filler; other tokens (numbers) stay."""
    russian = [i for i, w in enumerate(words) if _RUSSIAN_TOKEN_RE.match(w)]
    chosen = set(rng.sample(russian, round(share * len(russian))))
    out = []
    for i, word in enumerate(words):
        if i in chosen:
            tail = _RUSSIAN_TOKEN_RE.match(word).group("tail")
            out.append(rng.choice(ENGLISH_FILLER) + tail)
        else:
            out.append(word)
    return out


def _swap_text(text: str, share: float, rng: random.Random) -> str:
    return " ".join(_swap_words(text.split(" "), share, rng))


# --- scales and criteria ----------------------------------------------------------------------------------------

_SCALES = {
    "Правильность ответа и формата": [
        "Ответ неверный, формат не соблюдён.",
        "Ответ неверный, но формат соблюдён, либо ответ верный, но формат грубо нарушен.",
        "Ответ верный, есть небольшие отклонения от требуемого формата.",
        "Ответ верный и полностью соответствует требуемому формату.",
    ],
    "Корректность вызова инструмента": [
        "Вызвана не та функция или вызов не распознаётся.",
        "Функция выбрана верно, но большинство аргументов неверны.",
        "Функция и почти все аргументы верны, есть мелкая неточность.",
        "Функция и все аргументы полностью соответствуют запросу.",
    ],
    "Связность текста": [
        "Текст бессвязен, мысли не связаны между собой.",
        "Связность заметно нарушена, логика прослеживается с трудом.",
        "Текст в целом связный, встречаются отдельные логические разрывы.",
        "Текст полностью связный, переходы между мыслями логичны.",
    ],
    "Соответствие заданию": [
        "Ответ не относится к заданию.",
        "Ответ лишь частично выполняет задание.",
        "Задание выполнено, но с небольшими упущениями.",
        "Задание выполнено полностью и точно.",
    ],
    "Грамотность": [
        "Текст содержит множество грубых ошибок.",
        "Ошибок много, но смысл понятен.",
        "Встречаются единичные ошибки.",
        "Ошибок нет, язык естественный.",
    ],
}
_GENERATIVE_CRITERIA = ("Связность текста", "Соответствие заданию", "Грамотность")
# Criteria of each family. Under the --train-minus-one rule a -1 row takes a criterion specific to another family;
# the generative ones are generic text criteria (they fit an arithmetic explanation as well) and never mark -1.
FAMILY_CRITERIA: dict[str, tuple[str, ...]] = {
    "static": ("Правильность ответа и формата",),
    "function_calling": ("Корректность вызова инструмента",),
    "generative": _GENERATIVE_CRITERIA,
}
NOT_APPLICABLE_CRITERIA: dict[str, tuple[str, ...]] = {
    family: tuple(c for other in ("static", "function_calling") if other != family for c in FAMILY_CRITERIA[other])
    for family in FAMILY_CRITERIA
}


def _scale_text(criterion: str, top: int, not_applicable: bool) -> str:
    lines = [NOT_APPLICABLE_LINE] if not_applicable else []
    descriptions = _SCALES[criterion]
    if top == 2:  # a three-point rubric keeps the worst, a middle and the best description
        descriptions = [descriptions[0], descriptions[2], descriptions[3]]
    lines += [f"{score}: {text}" for score, text in enumerate(descriptions)]
    return "\n".join(lines) + "\n"


# --- the three families: (task, reference, answer words source) -------------------------------------------------


def _static_item(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(2, 99), rng.randint(2, 99)
    op, verb, value = rng.choice([("+", "складываем", a + b), ("-", "вычитаем", a - b), ("*", "умножаем", a * b)])
    task = rng.choice([
        f"Вычислите значение выражения {a} {op} {b}. Запишите ответ в формате «Ответ: число».",
        f"Найдите результат: {a} {op} {b}. Кратко поясните решение и приведите ответ.",
        f"Решите пример {a} {op} {b} и объясните ход решения одним предложением.",
    ])
    filler = " ".join(rng.sample(RUSSIAN_WORDS, 3))
    reference = f"Сначала {verb} числа {a} и {b}, получаем {value}. Решение простое, {filler}. Ответ: {value}"
    return task, reference, reference


_TOOLS = [
    ("get_weather", "Какая погода будет {date} в городе {city}?",
     lambda r: {"city": r.choice(["Москва", "Казань", "Самара", "Омск", "Тверь"]),
                "date": r.choice(["завтра утром", "сегодня вечером", "в субботу днём"]),
                "details": "температура ветер и осадки"}),
    ("book_table", "Забронируй столик в ресторане «{restaurant}» на {date}, нас будет {guests}.",
     lambda r: {"restaurant": r.choice(["Старый двор", "Тёплый дом", "Белый сад"]),
                "date": r.choice(["пятницу вечером", "воскресенье днём"]), "guests": r.randint(2, 8),
                "wishes": "столик у окна подальше от кухни"}),
    ("send_message", "Отправь сообщение {recipient}: {text}",
     lambda r: {"recipient": r.choice(["маме", "коллеге Ивану", "учителю"]),
                "text": r.choice(["буду дома поздно вечером", "встреча переносится на завтра утром",
                                  "спасибо за интересную книгу"])}),
    ("search_flights", "Найди билеты на самолёт из города {origin} в город {destination} на {date}.",
     lambda r: {"origin": r.choice(["Москва", "Пермь", "Сочи"]), "destination": r.choice(["Новосибирск", "Калининград"]),
                "date": r.choice(["следующий понедельник", "конец месяца"]), "cabin": "эконом без багажа"}),
    ("create_reminder", "Создай напоминание «{title}» на {when}.",
     lambda r: {"title": r.choice(["купить хлеб и молоко", "позвонить старому другу", "полить цветы в саду"]),
                "when": r.choice(["завтра утром", "вечер пятницы"]), "note": "очень важно не забыть"}),
]


def _function_call_item(rng: random.Random) -> tuple[str, str, dict]:
    name, request, make_args = rng.choice(_TOOLS)
    args = make_args(rng)
    listed = ", ".join(f"{tool}({', '.join(make_args(random.Random(0)))})" for tool, _, make_args in _TOOLS)
    task = (f"Пользователь пишет: «{request.format(**args)}»\nДоступные инструменты: {listed}.\n"
            "Выбери подходящий инструмент и верни его вызов в формате JSON с полями name и arguments.")
    call = {"name": name, "arguments": args}
    return task, json.dumps(call, ensure_ascii=False), call


def _function_call_answer(call: dict, share: float, rng: random.Random) -> str:
    # Swap across all argument words together so the share holds for the whole call, not per field.
    keys = [k for k, v in call["arguments"].items() if isinstance(v, str)]
    words = [(k, w) for k in keys for w in call["arguments"][k].split(" ")]
    swapped = _swap_words([w for _, w in words], share, rng)
    args = dict(call["arguments"])
    for key in keys:
        args[key] = " ".join(w for (k, _), w in zip(words, swapped, strict=True) if k == key)
    return json.dumps({"name": call["name"], "arguments": args}, ensure_ascii=False)


_GENERATIVE_TASKS = [
    "Напишите короткий рассказ о том, как {a} и {b} встретились {c}.",
    "Составьте письмо другу, в котором вы рассказываете про {a}, {b} и {c}.",
    "Объясните простыми словами ребёнку, что такое {a} и почему {b} связан с {c}.",
    "Опишите в нескольких предложениях {a}, {b} и {c} так, чтобы читателю было интересно.",
    "Придумайте рекламный текст для магазина, где продают {a}, {b} и {c}.",
]


def _generative_item(rng: random.Random) -> tuple[str, str | None, str]:
    a, b, c = rng.sample(RUSSIAN_WORDS[:80], 3)
    task = rng.choice(_GENERATIVE_TASKS).format(a=a, b=b, c=c)
    task_words = re.findall(r"[А-Яа-яЁё]+", task.lower())
    words = [rng.choice(task_words if rng.random() < 0.6 else RUSSIAN_WORDS) for _ in range(rng.randint(14, 24))]
    text = " ".join(words)
    text = text[0].upper() + text[1:] + "."
    if rng.random() < _GENERATIVE_WITH_REFERENCE_SHARE:
        return task, text, text
    return task, None, text


# --- rows -------------------------------------------------------------------------------------------------------


def _pick_score(allowed: list[int], counts: Counter, rng: random.Random) -> int:
    """Least-used allowed score so far (random tie-break): keeps classes balanced for any row count."""
    low = min(counts[s] for s in allowed)
    return rng.choice([s for s in allowed if counts[s] == low])


def _make_row(rng: random.Random, family: str, counts: Counter, split: str,
              foreign_share: float | None = None) -> _Row:
    """One row; ``foreign_share`` None is the legacy empty-answer -1, else the share of -1 by a foreign criterion."""
    top = 2 if rng.random() < _TWO_POINT_SCALE_SHARE else 3
    not_applicable = rng.random() < _NOT_APPLICABLE_SHARE
    minus_one_share = _MINUS_ONE_SHARE[split] if foreign_share is None else foreign_share
    if not_applicable and rng.random() < minus_one_share:
        score = -1
    else:
        score = _pick_score(list(range(top + 1)), counts, rng)
    counts[score] += 1
    share = ENGLISH_SHARE.get((top, score), 0.0)
    if score == -1 and foreign_share is not None:
        share = ENGLISH_SHARE[(top, rng.randint(0, top))]

    if family == "static":
        task, reference, source = _static_item(rng)
        criterion = "Правильность ответа и формата"
        answer = _swap_text(source, share, rng)
    elif family == "function_calling":
        task, reference, call = _function_call_item(rng)
        criterion = "Корректность вызова инструмента"
        answer = _function_call_answer(call, share, rng)
    else:
        task, reference, source = _generative_item(rng)
        criterion = rng.choice(_GENERATIVE_CRITERIA)
        answer = _swap_text(source, share, rng)
    if score == -1 and foreign_share is None:
        answer = ""
    elif score == -1:
        criterion = rng.choice(NOT_APPLICABLE_CRITERIA[family])
    prompt = compose_prompt(task, answer, criterion, _scale_text(criterion, top, not_applicable), reference)
    return _Row(prompt=prompt, score=score)


def _make_rows(n: int, rng: random.Random, split: str, foreign_share: float | None = None) -> list[_Row]:
    families = ["static", "function_calling", "generative"]
    counts: Counter = Counter()
    return [_make_row(rng, families[i % 3], counts, split, foreign_share) for i in range(n)]


def make_synthetic(
    rows: int, seed: int, test_rows: int | None = None, train_minus_one: float | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train ``id,prompt,score``, test ``id,prompt`` and gold ``id,score`` frames; same arguments, same frames.

    ``rows`` is the train size; ``test_rows`` defaults to a quarter of it (at least 1). Ids run on from train into
    test (``synth-000001`` ...), so they are unique across the three frames' union. ``train_minus_one`` (0..1)
    selects the not-applicable -1 rule of the module docstring and its train share; None keeps the legacy files.
    """
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    if train_minus_one is not None and not 0.0 <= train_minus_one <= 1.0:
        raise ValueError(f"train_minus_one must be within 0..1, got {train_minus_one}")
    test_rows = max(1, rows // 4) if test_rows is None else test_rows
    rng = random.Random(seed)
    test_minus_one = None if train_minus_one is None else _MINUS_ONE_SHARE["test"]
    train = _make_rows(rows, rng, "train", train_minus_one)
    test = _make_rows(test_rows, rng, "test", test_minus_one)
    return contest_frames(train, test, ID_PREFIX)


def contest_frames(train, test, id_prefix: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Train ``id,prompt,score``, test ``id,prompt`` and gold ``id,score`` frames from rows with ``.prompt`` and
    ``.score``; ids ``{id_prefix}000001`` ... run on from train into test."""
    train_ids = [f"{id_prefix}{i:06d}" for i in range(1, len(train) + 1)]
    test_ids = [f"{id_prefix}{i:06d}" for i in range(len(train) + 1, len(train) + len(test) + 1)]
    train_df = pd.DataFrame({"id": train_ids, "prompt": [r.prompt for r in train], "score": [r.score for r in train]})
    test_df = pd.DataFrame({"id": test_ids, "prompt": [r.prompt for r in test]})
    gold_df = pd.DataFrame({"id": test_ids, "score": [r.score for r in test]})
    return train_df, test_df, gold_df


def write_frames(out_dir: str | Path, frames) -> dict[str, Path]:
    """Write the (train, test, gold) frames as ``train.csv``, ``test.csv``, ``gold.csv`` (UTF-8); the paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in zip(("train", "test", "gold"), frames, strict=True):
        paths[name] = out / f"{name}.csv"
        frame.to_csv(paths[name], index=False, encoding="utf-8")
    return paths


def write_synthetic(out_dir: str | Path, rows: int, seed: int, test_rows: int | None = None,
                    train_minus_one: float | None = None) -> dict[str, Path]:
    """Write ``train.csv``, ``test.csv`` and ``gold.csv`` (UTF-8) into ``out_dir``; returns the paths by name."""
    return write_frames(out_dir, make_synthetic(rows, seed, test_rows, train_minus_one))


def tokenizer_corpus(seed: int = 0, rows: int = 300) -> list[str]:
    """Texts that cover the synthetic vocabulary (prompts, words, JSON, digits) for training a tiny tokenizer."""
    train, test, _ = make_synthetic(rows, seed)
    return [*train["prompt"], *test["prompt"], " ".join(RUSSIAN_WORDS), " ".join(ENGLISH_FILLER),
            " ".join(str(i) for i in range(-1, 100)), '{"name": "x", "arguments": {}} [] () <> :;.,!?-+*/=']
