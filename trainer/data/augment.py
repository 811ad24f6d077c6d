"""Label-preserving augmentation and rubric-guided hard negatives for judge prompts (pure functions on rows).

- ``paraphrase_headers``: the section headers written another way (same meaning, same score).
- ``format_noise``: whitespace/line-break noise that does not touch the words (same score).
- ``hard_negative``: corrupt a top-scored answer (drop the second half, or shuffle its words) and lower the score by
  the rubric: a cut answer loses half the scale, a scrambled one the lowest allowed ordinal score. Only rows whose
  score is the scale's maximum are used, so the new label is never an upgrade.
- ``not_applicable_rows``: new rows labelled -1 ("критерий неприменим"): one row's task, reference and answer with
  the criterion and scale of a row from another task family, the ``-1: критерий неприменим`` line added to the scale
  when it lacks one. Only pairings that are certainly not applicable: the families differ (``classify_family``)
  and the criterion is never seen with the receiving row's family in the frame. Originals are never relabelled.
"""

from __future__ import annotations

import random
import re

import pandas as pd

# Ids of the rows augmentation adds: the source row's id, then one suffix per step (``ID#aug0``, ``ID#aug0#noref``).
PARAPHRASE_SUFFIX = "#aug"  # + the copy number: headers paraphrased, format noise; same score
HARD_NEGATIVE_SUFFIX = "#neg"  # a corrupted top-scored answer; lower score
NOT_APPLICABLE_SUFFIX = "#na"  # the row's task and answer under another family's criterion; score -1
NO_REFERENCE_SUFFIX = "#noref"  # the reference section dropped; same score
LABEL_PRESERVING_SUFFIXES = (PARAPHRASE_SUFFIX, NO_REFERENCE_SUFFIX)
_ID_SEPARATOR = "#"


def source_id(row_id) -> str:
    """The id of the row an augmented row was made from (an original row's own id)."""
    return str(row_id).partition(_ID_SEPARATOR)[0]


def keeps_source_label(row_id) -> bool:
    """True for an original row and for a copy whose first augmentation kept the score (paraphrase, no reference)."""
    made = str(row_id)[len(source_id(row_id)):]
    return not made or made.startswith(LABEL_PRESERVING_SUFFIXES)


HEADER_PARAPHRASES: dict[str, tuple[str, ...]] = {
    "### Задание для оценки:": ("### Задание:", "### Задача для оценки:"),
    "### Эталонный ответ:": ("### Эталон:", "### Правильный ответ:"),
    "### Ответ для оценки:": ("### Оцениваемый ответ:", "### Ответ модели:"),
    "### Критерий оценки:": ("### Критерий:",),
    "### Шкала оценивания по критерию:": ("### Шкала оценивания:",),
}


def paraphrase_headers(prompt: str, rng: random.Random) -> str:
    """Swap each header for a paraphrase only when the parser still reads the same sections (else keep it)."""
    from submission.prompts.sections import parse_prompt

    original = parse_prompt(prompt)
    out = prompt
    for header, options in HEADER_PARAPHRASES.items():
        candidate = out.replace(header, rng.choice(options))
        parsed = parse_prompt(candidate)
        if parsed.parsed and (parsed.answer, parsed.criterion, parsed.allowed) == (
                original.answer, original.criterion, original.allowed):
            out = candidate
    return out


def format_noise(prompt: str, rng: random.Random) -> str:
    """Trailing spaces and doubled blank lines inside the free text; the words and the rubric stay as they were."""
    lines = prompt.split("\n")
    noisy = []
    for line in lines:
        if line and not line.startswith("###") and not re.match(r"^-?\d+\s*:", line) and rng.random() < 0.3:
            line = line + " " * rng.randint(1, 3)
        noisy.append(line)
        if not line and rng.random() < 0.2:
            noisy.append("")
    return "\n".join(noisy)


def hard_negative(prompt: str, score: int, rng: random.Random) -> tuple[str, int] | None:
    """(corrupted prompt, lower score) for a row with the scale's top score, else None."""
    from submission.prompts.sections import parse_prompt

    sections = parse_prompt(prompt)
    ordinal = sorted(s for s in sections.allowed if s >= 0)
    if not sections.parsed or not ordinal or score != ordinal[-1] or len(sections.answer.split()) < 4:
        return None
    words = sections.answer.split()
    if rng.random() < 0.5:
        new_answer, new_score = " ".join(words[: len(words) // 2]), ordinal[len(ordinal) // 2 - 1 if len(ordinal) > 2 else 0]
    else:
        shuffled = words[:]
        while shuffled == words:
            rng.shuffle(shuffled)
        new_answer, new_score = " ".join(shuffled), ordinal[0]
    marker = "### Ответ для оценки:\n"
    start = prompt.find(marker)
    if start < 0 or sections.answer not in prompt[start:]:
        return None
    head, tail = prompt[: start + len(marker)], prompt[start + len(marker):]
    return head + tail.replace(sections.answer, new_answer, 1), int(new_score)


def augment_frame(frame: pd.DataFrame, seed: int, copies: int = 1, hard_negatives: bool = True) -> pd.DataFrame:
    """Original rows + ``copies`` label-preserving variants per row (+ hard negatives); new ids say what they are."""
    rng = random.Random(seed)
    rows = [frame]
    extra = []
    for row in frame.itertuples(index=False):
        for k in range(copies):
            text = format_noise(paraphrase_headers(row.prompt, rng), rng)
            extra.append({"id": f"{row.id}{PARAPHRASE_SUFFIX}{k}", "prompt": text, "score": int(row.score)})
        if hard_negatives:
            negative = hard_negative(row.prompt, int(row.score), rng)
            if negative:
                extra.append({"id": f"{row.id}{HARD_NEGATIVE_SUFFIX}", "prompt": negative[0], "score": negative[1]})
    rows.append(pd.DataFrame(extra, columns=["id", "prompt", "score"]))
    return pd.concat(rows, ignore_index=True)


NOT_APPLICABLE_LINE = "-1: критерий неприменим"


def _split_rubric(prompt: str) -> tuple[str, str] | None:
    """(task + reference + answer part, criterion + scale part) at the real criterion header (as parse_prompt reads it)."""
    from submission.prompts.sections import contest_headers

    text = prompt.replace("\r\n", "\n").replace("\r", "\n")
    scales = contest_headers(text, "scale")
    if not scales:
        return None
    criteria = [start for start, _ in contest_headers(text, "criterion") if start < scales[-1][0]]
    if not criteria:
        return None
    return text[: criteria[-1]], text[criteria[-1]:]


def _with_not_applicable_line(rubric: str, allowed: tuple[int, ...]) -> str:
    from submission.prompts.sections import contest_headers

    scale_end = contest_headers(rubric, "scale")[-1][1]
    if -1 in allowed and re.search(r"^[ \t]*-1[ \t]*[:.)]", rubric[scale_end:], re.MULTILINE):
        return rubric
    return f"{rubric[:scale_end]}\n{NOT_APPLICABLE_LINE}{rubric[scale_end:]}"


def not_applicable_rows(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """About ``share * len(frame)`` new rows scored -1; the frame's own rows are only read, never returned.

    Each new row takes a distinct row's task/reference/answer (id ``<id>#na``) and a donor row's criterion and scale
    where the donor's family differs and the donor's criterion never occurs with the receiver's family in ``frame``
    (so a criterion shared across families, say grammar, is never used). Receivers with no such donor are skipped.
    Pass only one split's rows: donors and receivers both come from ``frame``.
    """
    from submission.prompts.sections import parse_prompt

    if share <= 0:
        return pd.DataFrame(columns=["id", "prompt", "score"])
    rng = random.Random(seed)
    rows = []
    for row in frame.itertuples(index=False):
        sections = parse_prompt(row.prompt)
        parts = _split_rubric(row.prompt) if sections.parsed else None
        if parts:
            rows.append((str(row.id), sections, parts))
    criteria_seen: dict[str, set[str]] = {}
    for _, sections, _ in rows:
        criteria_seen.setdefault(sections.family, set()).add(sections.criterion)
    wanted = min(len(rows), round(share * len(frame)))
    out = []
    for row_id, sections, (head, _) in rng.sample(rows, len(rows)):
        if len(out) == wanted:
            break
        donors = [(s, rubric) for _, s, (_, rubric) in rows
                  if s.family != sections.family and s.criterion not in criteria_seen[sections.family]]
        if not donors:
            continue
        donor, rubric = rng.choice(donors)
        prompt = head + _with_not_applicable_line(rubric, donor.allowed)
        check = parse_prompt(prompt)
        if (check.task, check.answer, check.criterion) != (sections.task, sections.answer, donor.criterion) \
                or -1 not in check.allowed:
            continue  # the pasted rubric would not read back as intended: skip rather than guess
        out.append({"id": f"{row_id}{NOT_APPLICABLE_SUFFIX}", "prompt": prompt, "score": -1})
    return pd.DataFrame(out, columns=["id", "prompt", "score"])


# -- reference dropout (JudgeLM: train with and without the reference answer) -------------------------------------


def drop_reference(prompt: str) -> str | None:
    """The prompt without its ``### Эталонный ответ:`` section, or None when it has none (or the cut is unsafe).

    The cut runs from the reference header to the answer header; it is kept only when the parser then reads no
    reference and the same answer, criterion and rubric.
    """
    from submission.prompts.sections import contest_headers, parse_prompt

    original = parse_prompt(prompt)
    if not original.parsed or original.reference is None:
        return None
    references = contest_headers(prompt, "reference")
    start = references[0] if references else None
    end = next((s for s, _ in contest_headers(prompt, "answer") if s >= start[1]), None) if start else None
    if start is None or end is None:
        return None
    candidate = prompt[: start[0]] + prompt[end:]
    parsed = parse_prompt(candidate)
    if not parsed.parsed or parsed.reference is not None or (parsed.answer, parsed.criterion, parsed.allowed) != (
            original.answer, original.criterion, original.allowed):
        return None
    return candidate


def reference_dropout_frame(frame: pd.DataFrame, share: float, seed: int) -> pd.DataFrame:
    """Original rows + a copy without the reference section (same gold score, id ``ID#noref``) of ``share`` of the
    rows that have one (chosen with ``seed``); other columns (soft labels, say) are copied as they are."""
    stripped = {i: drop_reference(p) for i, p in zip(frame.index, frame["prompt"], strict=True)}
    candidates = [i for i, text in stripped.items() if text is not None]
    chosen = sorted(random.Random(seed).sample(candidates, round(share * len(candidates)))) if share > 0 else []
    if not chosen:
        return frame
    copies = frame.loc[chosen].copy()
    copies["id"] = [f"{i}{NO_REFERENCE_SUFFIX}" for i in copies["id"]]
    copies["prompt"] = [stripped[i] for i in chosen]
    return pd.concat([frame, copies], ignore_index=True)
