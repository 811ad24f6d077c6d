"""One honest progress line per run: step, loss, lr, tokens/s, elapsed (tqdm on a TTY, a log line otherwise)."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

log = logging.getLogger(__name__)


class ProgressCallback(TrainerCallback):
    """Shows progress and appends every log event to ``metrics.jsonl`` (one JSON object per line)."""

    def __init__(self, metrics_path: Path, encoded, rows_per_step: int):
        self.metrics_path = Path(metrics_path)
        self.tokens_per_step = encoded.tokens / max(len(encoded.rows), 1) * rows_per_step
        self.bar = None
        self.start = 0.0
        self.last = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()
        if state.is_world_process_zero and sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=state.max_steps, desc="train", file=sys.stderr, dynamic_ncols=True)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        elapsed = time.perf_counter() - self.start
        tokens_per_s = self.tokens_per_step * state.global_step / max(elapsed, 1e-9)
        event = {"step": state.global_step, "epoch": round(state.epoch or 0, 3), **logs,
                 "tokens_per_s": round(tokens_per_s, 1), "elapsed_s": round(elapsed, 2)}
        with self.metrics_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")
        self.last.update({k: v for k, v in logs.items() if k in ("loss", "learning_rate")})
        line = (f"step {state.global_step}/{state.max_steps} | loss {self.last.get('loss', float('nan')):.4f} | "
                f"lr {self.last.get('learning_rate', 0):.2e} | {tokens_per_s:,.0f} tok/s | {elapsed:.0f}s")
        if self.bar is not None:
            self.bar.set_postfix_str(line.split(" | ", 1)[1], refresh=False)
        else:
            log.info(line)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
