"""Parse a POLLUX-style judge prompt into its sections, its rubric and its task family.

A prompt looks like::

    ### Задание для оценки:
    {task}
    ### Эталонный ответ:          (may be absent)
    {reference}
    ### Ответ для оценки:
    {answer}
    ### Критерий оценки:
    {criterion}
    ### Шкала оценивания по критерию:
    0: ...
    1: ...

Also understood (README "Data" lists them): the sections in any order, English or shorter Russian header names
(``### Task``, ``### Reference answer``, ``### Answer to evaluate``, ``### Evaluation criterion``, ``### Scale``,
``### Критерий``, ...), ``#``..``######`` or ``**bold**`` header lines, and scale lines written ``0: text``,
``0 - text``, ``0 — text``, ``0) text``, ``0. text``, ``**0** — text``, ``Оценка 0 — text``, ``3 балла: text`` or
all on one line (``0 — нет, 1 — да``); numbered sub-items indented deeper than the scale's own lines are not scores.

Two readings of the rubric, on purpose: :func:`parse_scale` reads the scale section line by line (indentation,
one-line scales), and :func:`stated_labels` is a deliberately simpler and different scan of the whole prompt for any
clause that begins like a score line. ``Sections.allowed`` never holds a label the second reading does not find, and
the runtime checks every written score against the second reading (``data.validate_predictions``), so no layout, not
even an unrecognised one, can make the runtime write a label that the prompt's text does not list.

Unknown layouts never raise: they come back with ``parsed=False``, the whole prompt as the task and as allowed labels
the ones the prompt states (every label when it states none), so the caller can still score them and count them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache

# The contest's labels, the one definition: 0..3 and -1 ("the criterion does not apply"). Every array of class
# probabilities in the project has one column per label in this order.
LABELS: tuple[int, ...] = (-1, 0, 1, 2, 3)
# A judge trained on POLLUX's own 0-4 range (``trainer import-pollux --keep-0-4``) declares ``"max_score": 4`` in its
# judge.json; its runs read, score and check with these labels instead (4 only on rows whose rubric states 4). Every
# function below takes ``labels`` (default LABELS); nothing mutates LABELS.
LABELS_0_4: tuple[int, ...] = (-1, 0, 1, 2, 3, 4)
MAX_SCORES: tuple[int, ...] = (3, 4)  # the label ranges a judge may declare: -1..3 (the contest's) or -1..4


def labels_for(max_score: int) -> tuple[int, ...]:
    """The label set of a judge whose highest score is ``max_score`` (3: LABELS; 4: LABELS_0_4); ValueError else."""
    if max_score not in MAX_SCORES:
        raise ValueError(f"max_score {max_score!r} is not one of {', '.join(map(str, MAX_SCORES))}")
    return LABELS if max_score == 3 else LABELS_0_4

# Header names per field, matched on the normalised header (lower case, ё -> е, no markup, no trailing colon, no
# trailing parenthesis). The contest's own names come first.
_HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "task": ("задание для оценки", "задание", "задача", "вопрос", "инструкция", "task", "task to evaluate",
             "the task", "instruction", "question", "prompt"),
    "reference": ("эталонный ответ", "эталон", "эталонное решение", "правильный ответ", "reference answer",
                  "reference", "reference solution", "gold answer", "correct answer", "expected answer"),
    "answer": ("ответ для оценки", "оцениваемый ответ", "ответ модели", "ответ", "answer to evaluate",
               "answer to be evaluated", "response to evaluate", "answer", "response", "model answer",
               "model response", "candidate answer"),
    "criterion": ("критерий оценки", "критерий оценивания", "критерий", "evaluation criterion",
                  "evaluation criteria", "criterion", "criteria", "scoring criterion"),
    "scale": ("шкала оценивания по критерию", "шкала оценивания", "шкала оценки", "шкала", "scale",
              "scoring scale", "rating scale", "grading scale", "evaluation scale", "score scale", "rubric",
              "scoring rubric"),
}
_HEADERS = {name: section for section, names in _HEADER_NAMES.items() for name in names}
_CONTEST_HEADERS = {names[0] for names in _HEADER_NAMES.values()}
_FIELDS = ("task", "reference", "answer", "criterion", "scale")
# A header line: '#'s then a name, or a whole line in bold. The name is checked against _HEADERS afterwards.
_HEADER_RE = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*(?P<hash>[^\n#]+?)|\*\*(?P<bold>[^\n*]+?)\*\*[ \t]*:?)[ \t]*$",
                        re.MULTILINE)

# Scale lines (the first reading). Optional bullet, bracket, bold and a word such as "Оценка"; the score; then a
# separator (':', '-', '—', ')', '.', '=', or a word such as "балла"). "2.5" is not "2." (the '.' needs a space after).
_MARK = r"(?:\*\*|__)?"
_SCORE_WORD = r"(?:оценка|балл\w*|score|grade|rating|points?)"
_SEPARATOR = r"(?:[:)\]\-–—=]|\.(?=\s|$)|балл\w*|очк\w*|points?\b|pts\b)"
_SCORE_LINE_RE = re.compile(
    rf"^(?P<indent>[ \t]*)(?:[-*•–][ \t]+)?[(\[]?{_MARK}(?:{_SCORE_WORD}[ \t]*)?{_MARK}(?P<score>[-−]?\d+)"
    rf"{_MARK}[ \t]*{_MARK}{_SEPARATOR}", re.MULTILINE | re.IGNORECASE)
# More "N — text" items on the same line as a score line, after ',', ';', '|' or '. ' (one-line scales).
_INLINE_SCORE_RE = re.compile(
    rf"(?:[,;|]|\.(?=[ \t]))[ \t]*[(\[]?{_MARK}(?:{_SCORE_WORD}[ \t]*)?{_MARK}(?P<score>[-−]?\d+){_MARK}[ \t]*"
    rf"{_MARK}{_SEPARATOR}", re.IGNORECASE)
_TOOL_CALL_RE = re.compile(
    r"(<tool_call>|\"function\"\s*:|\"name\"\s*:\s*\"[^\"]+\"\s*,\s*\"(arguments|parameters)\"|\btool_calls?\b|"
    r"вызов\w* (функци|инструмент)|function[_ ]call)",
    re.IGNORECASE,
)
_MATH_RE = re.compile(r"\d+\s*[-+*/×÷^]\s*\d+")

FAMILIES: tuple[str, ...] = ("static", "function_calling", "generative")


@dataclass(frozen=True)
class Sections:
    """The parts of one judge prompt. ``parsed`` is False when the layout was not recognised."""

    task: str
    answer: str
    criterion: str
    scale: str
    reference: str | None = None
    allowed: tuple[int, ...] = LABELS
    family: str = "generative"
    parsed: bool = True
    repeated_headers: tuple[str, ...] = field(default_factory=tuple)
    stated: tuple[int, ...] = LABELS  # the independent reading (stated_labels of the whole prompt): the output check


def compose_prompt(task: str, answer: str, criterion: str, scale: str, reference: str | None = None) -> str:
    """The contest's prompt layout, the one place it is written: sections joined by a blank line, the reference
    section left out when ``reference`` is None, every text exactly as given (``scale`` keeps its own ending)."""
    parts = [f"### Задание для оценки:\n{task}"]
    if reference is not None:
        parts.append(f"### Эталонный ответ:\n{reference}")
    parts += [f"### Ответ для оценки:\n{answer}", f"### Критерий оценки:\n{criterion}",
              f"### Шкала оценивания по критерию:\n{scale}"]
    return "\n\n".join(parts)


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _label(text: str) -> int:
    return int(text.replace("−", "-"))


def _indent_width(indent: str) -> int:
    return len(indent.expandtabs(4))


def parse_scale(scale: str, labels: tuple[int, ...] = LABELS) -> tuple[int, ...]:
    """Scores named by the rubric's lines, restricted to ``labels`` (-1..3) and sorted; all labels when none parse.

    Only lines at the scale's own (smallest) indentation count, so numbered sub-items indented under a score line
    do not add scores; a score line may carry more items after ',', ';' or '|' (``0 — нет, 1 — да``).
    """
    lines = list(_SCORE_LINE_RE.finditer(_normalise_newlines(scale)))
    if not lines:
        return labels
    top = min(_indent_width(m.group("indent")) for m in lines)
    found: set[int] = set()
    for match in lines:
        if _indent_width(match.group("indent")) != top:
            continue
        found.add(_label(match.group("score")))
        line_end = scale.find("\n", match.end())
        rest = scale[match.end(): len(scale) if line_end < 0 else line_end]
        found.update(_label(m.group("score")) for m in _INLINE_SCORE_RE.finditer(rest))
    allowed = tuple(sorted(s for s in found if s in labels))
    return allowed or labels


# -- the second, independent reading ------------------------------------------------------------------------------
_CLAUSE_BREAKS = (",", ";", "|", ".", ":")
_BULLETS = ("- ", "* ", "• ", "– ", "> ", "-\t", "*\t", "•\t", "–\t")
_LEADING_WORDS = ("оценка", "балл", "score", "grade", "rating", "points", "point")
_AFTER_LABEL = (":", ".", ")", "]", "-", "–", "—", "=", "балл", "очк", "point", "pt")


@cache
def _label_texts(labels: tuple[int, ...]) -> tuple[str, ...]:
    return tuple(sorted({str(label) for label in labels} | {"−1"}, key=len, reverse=True))  # "-1" before "1"


def stated_labels(prompt: str, labels: tuple[int, ...] = LABELS) -> tuple[int, ...]:
    """The labels (of ``labels``) the prompt's text states as score lines anywhere, sorted; every label when it
    states none.

    Deliberately not :func:`parse_scale`: no sections, no indentation, no regular expressions. The text is cut into
    clauses at line ends and at ',', ';', '|', '.', ':'; a clause that (after markup, a bullet, a bracket and a word like
    "Оценка") starts with a label followed by a separator or a word like "балла" states that label. It is a
    superset of what :func:`parse_scale` reads, so it serves as the check that no written score is outside the text.
    """
    text = _normalise_newlines(prompt if isinstance(prompt, str) else "")
    text = text.replace("**", "").replace("__", "")
    for mark in _CLAUSE_BREAKS:
        text = text.replace(mark, "\n")
    four = 4 in labels
    texts = _label_texts(tuple(labels))
    found: set[int] = set()
    for clause in text.split("\n"):
        if "0" not in clause and "1" not in clause and "2" not in clause and "3" not in clause and not (
                four and "4" in clause):
            continue  # most clauses of a long prompt: no label digit at all
        clause = clause.strip()
        if clause.startswith(_BULLETS):
            clause = clause[2:].strip()
        clause = clause.lstrip("([").strip()
        lowered = clause.lower()
        for word in _LEADING_WORDS:
            if lowered.startswith(word):
                clause = clause[len(word):].lstrip()
                break
        for label in texts:
            if not clause.startswith(label):
                continue
            rest = clause[len(label):]
            if rest[:1].isdigit():
                break
            rest = rest.lstrip().lower()
            if not rest or rest.startswith(_AFTER_LABEL):  # a clause cut at '.' or ':' leaves nothing after "2"
                found.add(_label(label))
            break
    return tuple(sorted(s for s in found if s in labels)) or labels


def classify_family(task: str, reference: str | None, answer: str) -> str:
    """static (a reference answer or arithmetic), function_calling (tool-call structure) or generative."""
    blob = f"{task}\n{reference or ''}\n{answer}"
    if _TOOL_CALL_RE.search(blob) or _looks_like_json_call(answer) or _looks_like_json_call(reference or ""):
        return "function_calling"
    if reference is not None and reference.strip():
        return "static"
    if _MATH_RE.search(task) and len(task) < 400:
        return "static"
    return "generative"


def _looks_like_json_call(text: str) -> bool:
    text = text.strip()
    if not text.startswith(("{", "[")):
        return False
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return False
    items = obj if isinstance(obj, list) else [obj]
    return any(isinstance(i, dict) and ("name" in i or "function" in i) and ("arguments" in i or "parameters" in i or "function" in i) for i in items)


def _header_name(match: re.Match) -> str:
    name = (match.group("hash") or match.group("bold") or "").lower().replace("ё", "е")
    name = re.sub(r"\s*\([^)]*\)\s*$", "", name.replace("*", "").replace("_", " ").strip().rstrip(":").strip())
    return " ".join(name.split())


def _headers(text: str) -> list[tuple[str, bool, re.Match]]:
    """(section, written with the contest's own name, match) for every header line the parser recognises."""
    named = [(_header_name(m), m) for m in _HEADER_RE.finditer(text)]
    return [(_HEADERS[name], name in _CONTEST_HEADERS, m) for name, m in named if name in _HEADERS]


def contest_headers(text: str, section: str) -> list[tuple[int, int]]:
    """(start, end) of each header line of ``section`` ("task", ..., "scale") written with the contest's own name
    (``### Критерий оценки:``), in order: where augmentations cut a prompt. Positions are in ``text`` as given."""
    return [(m.start(), m.end()) for name, own, m in _headers(text) if own and name == section]


def _canonical_bounds(heads: list[tuple[str, re.Match]]):
    """Header matches in the contest's order, or None. The answer may quote the template's own headers (a hostile
    or copied answer), so the real criterion and scale are the last ones, the task the first, and everything between
    the answer header and the real criterion belongs to the answer."""

    def last(name: str, before: int | None = None):
        hits = [m for n, m in heads if n == name and (before is None or m.start() < before)]
        return hits[-1] if hits else None

    def first(name: str, after: int, before: int):
        hits = [m for n, m in heads if n == name and after <= m.start() < before]
        return hits[0] if hits else None

    scale_h = last("scale")
    crit_h = last("criterion", before=scale_h.start()) if scale_h else None
    task_h = first("task", 0, crit_h.start()) if crit_h else None
    answer_h = first("answer", task_h.end(), crit_h.start()) if task_h and crit_h else None
    if not (scale_h and crit_h and task_h and answer_h):
        return None
    ref_h = first("reference", task_h.end(), answer_h.start())
    if ref_h is None and any(n == "reference" and not answer_h.start() < m.start() < crit_h.start() for n, m in heads):
        return None  # a reference section elsewhere (after the criterion, say): another order
    return {"task": task_h, "reference": ref_h, "answer": answer_h, "criterion": crit_h, "scale": scale_h}


def _any_order_bounds(heads: list[tuple[str, re.Match]]):
    """The first header of each section, in whatever order they come; None unless task, answer, criterion and scale
    are all there."""
    chosen: dict[str, re.Match] = {}
    for name, match in heads:
        chosen.setdefault(name, match)
    if not all(name in chosen for name in ("task", "answer", "criterion", "scale")):
        return None
    return {name: chosen.get(name) for name in _FIELDS}


def parse_prompt(prompt: str, labels: tuple[int, ...] = LABELS) -> Sections:
    """Split a prompt into sections; never raises (see the module docstring for the layouts and the fallback).
    ``labels``: the judge's label set (LABELS, or LABELS_0_4 for a 0-4 judge: a rubric stating 4 then allows 4)."""
    text = _normalise_newlines(prompt if isinstance(prompt, str) else "")
    stated = stated_labels(text, labels)
    found = _headers(text)
    heads = [(name, m) for name, _, m in found]
    # The contest's own header names in the contest's order first: a task that quotes "### Ответ:" is not split there.
    contest = [(name, m) for name, own, m in found if own]
    bounds = _canonical_bounds(contest) or _canonical_bounds(heads) or _any_order_bounds(heads)
    if bounds is None:
        return Sections(task=text, answer="", criterion="", scale="", allowed=stated, parsed=False,
                        family="generative", stated=stated)
    starts = sorted(m.start() for m in bounds.values() if m is not None)

    def body(name: str) -> str | None:
        match = bounds[name]
        if match is None:
            return None
        end = next((s for s in starts if s > match.start()), len(text))
        return text[match.end():end]

    task, answer, criterion = body("task").strip(), body("answer").strip(), body("criterion").strip()
    reference = body("reference")
    reference = None if reference is None else reference.strip()
    raw_scale = body("scale")
    counts = {n: sum(1 for k, _ in heads if k == n) for n in _FIELDS}
    return Sections(
        task=task,
        reference=reference,
        answer=answer,
        criterion=criterion,
        scale=raw_scale.strip(),
        allowed=_within(parse_scale(raw_scale, labels), stated),
        family=classify_family(task, reference, answer),
        parsed=True,
        repeated_headers=tuple(n for n, c in counts.items() if c > 1),
        stated=stated,
    )


def _within(allowed: tuple[int, ...], stated: tuple[int, ...]) -> tuple[int, ...]:
    """The scale's labels that the prompt also states (the stated ones when the two readings share none)."""
    both = tuple(label for label in allowed if label in stated)
    return both or stated
