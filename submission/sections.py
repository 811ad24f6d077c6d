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

Unknown layouts never raise: they come back with ``parsed=False``, the whole prompt as the task and every label
allowed, so the caller can still score them and count them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

# The contest's labels, the one definition: 0..3 and -1 ("the criterion does not apply"). Every array of class
# probabilities in the project has one column per label in this order.
LABELS: tuple[int, ...] = (-1, 0, 1, 2, 3)

# Header text -> field name. Matching is on the normalised header (lower case, no trailing colon).
_HEADERS = {
    "задание для оценки": "task",
    "эталонный ответ": "reference",
    "ответ для оценки": "answer",
    "критерий оценки": "criterion",
    "шкала оценивания по критерию": "scale",
}
_HEADER_RE = re.compile(r"^[ \t]*#{2,4}[ \t]*(?P<name>[^\n#:]+?)[ \t]*:?[ \t]*$", re.MULTILINE)
_SCALE_LINE_RE = re.compile(r"^[ \t]*(?:[-*•][ \t]+)?(?P<score>-?\d+)[ \t]*(?:[:.)\-–—]|балл\w*)", re.MULTILINE)
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


def parse_scale(scale: str) -> tuple[int, ...]:
    """Scores named by the rubric lines (``N: text``), restricted to -1..3 and sorted; all labels when none parse."""
    found = {int(m.group("score")) for m in _SCALE_LINE_RE.finditer(_normalise_newlines(scale))}
    allowed = tuple(sorted(s for s in found if s in LABELS))
    return allowed or LABELS


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


def parse_prompt(prompt: str) -> Sections:
    """Split a prompt into sections; never raises (see the module docstring for the fallback).

    The answer may quote the template's own headers (a hostile or copied answer), so the real criterion and scale
    are taken as the last ones, the task as the first, and everything between the answer header and the real
    criterion belongs to the answer.
    """
    text = _normalise_newlines(prompt if isinstance(prompt, str) else "")
    heads = [(_HEADERS[m.group("name").strip().lower()], m) for m in _HEADER_RE.finditer(text)
             if m.group("name").strip().lower() in _HEADERS]

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
        return Sections(task=text, answer="", criterion="", scale="", parsed=False, family="generative")
    ref_h = first("reference", task_h.end(), answer_h.start())
    task = text[task_h.end() : (ref_h or answer_h).start()].strip()
    reference = text[ref_h.end() : answer_h.start()].strip() if ref_h else None
    answer = text[answer_h.end() : crit_h.start()].strip()
    criterion = text[crit_h.end() : scale_h.start()].strip()
    scale = text[scale_h.end() :].strip()
    counts = {n: sum(1 for k, _ in heads if k == n) for n in _HEADERS.values()}
    return Sections(
        task=task,
        reference=reference,
        answer=answer,
        criterion=criterion,
        scale=scale,
        allowed=parse_scale(scale),
        family=classify_family(task, reference, answer),
        parsed=True,
        repeated_headers=tuple(n for n, c in counts.items() if c > 1),
    )
