"""The one prompt renderer: training examples and inference prompts are built here and nowhere else.

A prompt is one user message (after a short system message) in the model's chat template with
``enable_thinking=False``; for Qwen3 that ends in ``<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n``. The training
target is the score text followed by ``<|im_end|>``, so the first generated token carries the score
('-' for -1, then '1').

The template is rendered once per tokenizer around a sentinel and reused as prefix + content + suffix, which is exact
for templates that insert the user content verbatim (checked when the renderer is built) and avoids a Jinja render
per row.

Over-long prompts are shortened from the middle of the task, reference and answer texts, never from the criterion
or the scale, and the result says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from submission.prompts.sections import Sections, compose_prompt, parse_prompt
from submission.runtime import settings

SYSTEM_PROMPT = (
    "Ты — строгий и беспристрастный судья. Оцени ответ строго по критерию и шкале. "
    "Выведи только одно целое число из шкалы; -1, если критерий неприменим."
)
ELLIPSIS = "\n[…]\n"
_SENTINEL = "\u2063AIJ_USER_CONTENT\u2063"
# Sections that may be shortened, in the order the canonical layout writes them.
_SHORTENABLE = ("task", "reference", "answer")


def score_text(score: int) -> str:
    """The exact text the model must generate for a score (before the end-of-turn token)."""
    return str(int(score))


def compose_sections(sections: Sections) -> str:
    """Parsed sections back in the contest layout (a shortened prompt is re-composed this way)."""
    return compose_prompt(sections.task, sections.answer, sections.criterion, sections.scale + "\n",
                          sections.reference)


@dataclass(frozen=True)
class RenderedPrompt:
    """One inference prompt: its token ids, the parsed sections (and so its allowed labels), whether it was shortened."""

    input_ids: list[int]
    sections: Sections
    truncated: bool
    text: str

    @property
    def allowed(self) -> tuple[int, ...]:
        """The labels the prompt's rubric allows."""
        return self.sections.allowed


@dataclass(frozen=True)
class TrainingExample:
    """Token ids of prompt + target and labels (-100 on the prompt, so only the score and end token carry loss)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


class PromptRenderer:
    """Renders judge prompts for one tokenizer; build once, call for every row."""

    def __init__(self, tokenizer, max_tokens: int = 4096, system_prompt: str | None = SYSTEM_PROMPT):
        self.tokenizer = tokenizer
        self.max_tokens = int(max_tokens)
        self.system_prompt = system_prompt
        self.prefix, self.suffix = self._split_template()
        self._prefix_ids = self._encode(self.prefix)
        self._suffix_ids = self._encode(self.suffix)
        end = getattr(tokenizer, "eos_token", None) or "<|im_end|>"
        self.end_of_turn = "<|im_end|>" if "<|im_end|>" in self.prefix + self.suffix else end
        if self.max_tokens < len(self._prefix_ids) + len(self._suffix_ids) + 16:
            raise ValueError(f"max_tokens={self.max_tokens} leaves no room for a prompt")

    def _messages(self, content: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        return messages + [{"role": "user", "content": content}]

    def _apply_template(self, content: str) -> str:
        return self.tokenizer.apply_chat_template(
            self._messages(content), tokenize=False, add_generation_prompt=True, enable_thinking=False
        )

    def _split_template(self) -> tuple[str, str]:
        rendered = self._apply_template(_SENTINEL)
        if rendered.count(_SENTINEL) != 1:
            raise ValueError("the chat template does not insert the user message verbatim; cannot render prompts")
        prefix, suffix = rendered.split(_SENTINEL)
        probe = "### Задание для оценки:\n2+2\n"
        if self._apply_template(probe) != prefix + probe + suffix:
            raise ValueError("the chat template rewrites the user message; cannot render prompts")
        return prefix, suffix

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def render_text(self, content: str) -> str:
        """The full chat-formatted text for a user message (no length limit)."""
        return self.prefix + content + self.suffix

    def render(self, prompt: str, max_tokens: int | None = None, sections: Sections | None = None) -> RenderedPrompt:
        """Inference prompt for one raw contest prompt, shortened to ``max_tokens`` (default: the renderer's).

        ``sections``: the prompt already parsed (the runtime parses each row once); parsed here when None.
        """
        limit = int(max_tokens or self.max_tokens)
        sections = sections if sections is not None else parse_prompt(prompt)
        content = prompt if isinstance(prompt, str) else ""
        ids = self._encode(self.render_text(content))
        if len(ids) <= limit:
            return RenderedPrompt(ids, sections, False, content)
        content, ids = self._shorten(sections, content, limit)
        return RenderedPrompt(ids, sections, True, content)

    def render_many(self, prompts, max_tokens: int | None = None) -> list[RenderedPrompt]:
        """:meth:`render` for a sequence of prompts."""
        return [self.render(p, max_tokens) for p in prompts]

    def training_example(self, prompt: str, score: int, max_tokens: int | None = None) -> TrainingExample:
        """Prompt ids (from :meth:`render`) + target ids; only the target carries labels."""
        target_ids = self._encode(score_text(score) + self.end_of_turn)
        limit = int(max_tokens or self.max_tokens) - len(target_ids)
        rendered = self.render(prompt, limit)
        input_ids = rendered.input_ids + target_ids
        labels = [-100] * len(rendered.input_ids) + target_ids
        return TrainingExample(input_ids, labels, rendered.truncated)

    # -- shortening ---------------------------------------------------------------------------------------------
    def _shorten(self, sections: Sections, content: str, limit: int) -> tuple[str, list[int]]:
        if not sections.parsed:
            return self._shorten_raw(content, limit)
        pieces = {name: getattr(sections, name) for name in _SHORTENABLE}
        piece_ids = {name: self._encode(text) for name, text in pieces.items() if text}
        emptied = replace(sections, **{n: "" for n in _SHORTENABLE if pieces[n] is not None})
        overhead = len(self._encode(self.render_text(compose_sections(emptied)))) + 8 * len(piece_ids)
        target = limit
        for _ in range(6):
            if target - overhead < 0:
                break
            caps = _water_fill({n: len(i) for n, i in piece_ids.items()}, target - overhead)
            shortened = {n: self._middle_cut(i, caps[n]) for n, i in piece_ids.items() if len(i) > caps[n]}
            text = compose_sections(replace(sections, **shortened))
            ids = self._encode(self.render_text(text))
            if len(ids) <= limit:
                return text, ids
            # Re-tokenisation across a cut can add a few tokens: shrink the target by the overshoot and retry.
            target -= len(ids) - limit
        # Criterion + scale alone do not fit (hostile input): cut the whole user message from the middle.
        return self._shorten_raw(content, limit)

    def _shorten_raw(self, content: str, limit: int) -> tuple[str, list[int]]:
        budget = limit - len(self._prefix_ids) - len(self._suffix_ids) - 8
        content_ids = self._encode(content)
        for _ in range(6):
            text = self._middle_cut(content_ids, max(budget, 0))
            ids = self._encode(self.render_text(text))
            if len(ids) <= limit:
                return text, ids
            budget -= len(ids) - limit
        return "", self._prefix_ids + self._suffix_ids

    def _middle_cut(self, ids: list[int], keep: int) -> str:
        """Keep ``keep`` tokens: the head and the tail halves, joined by an ellipsis line."""
        if keep <= 0:
            return ELLIPSIS.strip()
        head, tail = ids[: (keep + 1) // 2], ids[len(ids) - keep // 2 :] if keep // 2 else []
        decode = self.tokenizer.decode
        # A cut inside a multi-byte character decodes to U+FFFD: drop those fragments.
        return (decode(head).rstrip("\ufffd") + ELLIPSIS + decode(tail).lstrip("\ufffd")).strip("\ufffd")


class RenderedRows:
    """A run's rows for one renderer: rendered (tokenised) on first use; until then their lengths are estimates.

    Each row arrives parsed (``sections``, parsed once per run) and its :class:`RenderedPrompt` carries them. A
    100k-row file is not tokenised up front (that alone can outlast the time limit): lengths come from characters
    times a tokens-per-character ratio measured on an even sample of rows, and each row is rendered when its chunk
    is scored. ``lengths[i]`` becomes exact once row ``i`` is rendered.
    """

    def __init__(self, renderer: PromptRenderer, prompts: Sequence[str], sections: Sequence[Sections],
                 limit: int | None = None):
        self.renderer = renderer
        self.prompts = prompts
        self.sections = sections
        self.limit = int(limit or renderer.max_tokens)
        self._rendered: dict[int, RenderedPrompt] = {}
        overhead = len(renderer.render("").input_ids)
        filled = [i for i, p in enumerate(prompts) if p.strip()]
        step = max(1, len(filled) // settings.LENGTH_SAMPLE_ROWS)
        sample = [self[i] for i in filled[::step][: settings.LENGTH_SAMPLE_ROWS]]
        whole = [(len(r.input_ids) - overhead, len(r.text)) for r in sample if not r.truncated]
        chars = sum(c for _, c in whole)
        ratio = sum(t for t, _ in whole) / chars if chars else 1.0
        self.lengths = [len(self._rendered[i].input_ids) if i in self._rendered
                        else min(self.limit, overhead + int(ratio * len(p)) + 1) for i, p in enumerate(prompts)]

    def __getitem__(self, i: int) -> RenderedPrompt:
        if i not in self._rendered:
            rendered = self.renderer.render(self.prompts[i], self.limit, self.sections[i])
            self._rendered[i] = rendered
            if hasattr(self, "lengths"):
                self.lengths[i] = len(rendered.input_ids)
        return self._rendered[i]

    def ids(self, rows: list[int]) -> list[list[int]]:
        return [self[i].input_ids for i in rows]

    def shorten_to(self, limit: int) -> None:
        """Lower the length limit (vLLM started with a shorter context): longer rendered rows are redone lazily."""
        self.limit = min(self.limit, int(limit))
        for i in [i for i, r in self._rendered.items() if len(r.input_ids) > self.limit]:
            del self._rendered[i]
        self.lengths = [min(n, self.limit) for n in self.lengths]

    @property
    def truncated(self) -> int:
        return sum(r.truncated for r in self._rendered.values())


def _water_fill(lengths: dict[str, int], budget: int) -> dict[str, int]:
    """Largest common cap c with sum(min(len, c)) <= budget: short pieces stay whole, long ones share the rest."""
    caps = dict(lengths)
    if sum(lengths.values()) <= budget:
        return caps
    remaining, open_names = budget, sorted(lengths, key=lengths.get)
    while open_names:
        share = remaining // len(open_names)
        name = open_names[0]
        if lengths[name] <= share:
            remaining -= lengths[name]
            open_names.pop(0)
            continue
        for n in open_names:
            caps[n] = share
        break
    return caps
