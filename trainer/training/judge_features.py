"""The judge head's features: last-token hidden states of every layer (cached per row and model) and the
logistic-regression probe that picks the layer (trainer/training/judge_head.py uses both)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("trainer.training.judge_features")

# -- features ---------------------------------------------------------------------------------------------------
def last_token_states(model, rows: Sequence[Sequence[int]], progress_every: int = 50) -> np.ndarray:
    """[N, layers + 1, hidden] float32: each row's last-token hidden state after the embeddings and every layer.

    One row per forward (no padding, so no mask can leak); index i is the output of decoder layer i (0 = embeddings,
    the last = after the final norm, as transformers reports ``hidden_states``).
    """
    import torch

    out = None
    started = time.perf_counter()
    body = getattr(model, model.base_model_prefix, model)  # no LM head: its 49k-150k logits per position are unused
    device = next(body.parameters()).device
    with torch.inference_mode():
        for i, ids in enumerate(rows):
            states = body(input_ids=torch.as_tensor([list(ids)], device=device), output_hidden_states=True,
                          use_cache=False).hidden_states
            stacked = torch.stack([s[0, -1] for s in states]).float().cpu().numpy()
            if out is None:
                out = np.zeros((len(rows), *stacked.shape), dtype=np.float32)
            out[i] = stacked
            if progress_every and (i + 1) % progress_every == 0:
                log.info("features: %d/%d rows (%.0f s)", i + 1, len(rows), time.perf_counter() - started)
    return out


def model_key(model_dir: str | Path) -> str:
    """Identity of a base model's weights for the feature cache (sha256 of its config and safetensors)."""
    import hashlib

    from submission.hashing import file_sha256

    files = sorted([Path(model_dir) / "config.json", *Path(model_dir).glob("*.safetensors")])
    return hashlib.sha256("".join(file_sha256(f) for f in files).encode()).hexdigest()[:16]


def cached_last_token_states(model, rows: Sequence[Sequence[int]], cache_dir: str | Path | None, key: str) -> np.ndarray:
    """:func:`last_token_states`, reading and writing one ``.npy`` per row under ``cache_dir`` (None: no cache).

    A row's file is named by the model key and its token ids, so runs with other seeds/splits, and the probe
    benchmark, reuse each other's forwards on the same rows.
    """
    import hashlib

    if cache_dir is None:
        return last_token_states(model, rows)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    names = [cache / f"{key}-{hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:24]}.npy"
             for ids in rows]
    missing = [i for i, name in enumerate(names) if not name.is_file()]
    if missing:
        log.info("features: %d of %d rows not in %s", len(missing), len(rows), cache)
        fresh = last_token_states(model, [rows[i] for i in missing])
        for i, states in zip(missing, fresh, strict=True):
            np.save(names[i], states.astype(np.float16))
    return np.stack([np.load(name).astype(np.float32) for name in names])


def cached_bottom_states(top, rows: Sequence[Sequence[int]], cache_dir: str | Path | None, key: str) -> list:
    """``top.bottom(ids)`` per row, read from / written to ``cache_dir`` (fp32 ``.npy`` per row; None: no cache)."""
    import hashlib

    import torch

    if cache_dir is None:
        return [top.bottom(ids) for ids in rows]
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for ids in rows:
        name = cache / f"{key}-{hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:24]}.npy"
        if name.is_file():
            out.append(torch.from_numpy(np.load(name)))
        else:
            states = top.bottom(ids)
            np.save(name, states.numpy())
            out.append(states)
    return out


def fit_probe(features: np.ndarray, labels: Sequence[int], c: float = 1.0):
    """Standardised multinomial logistic regression; returns the fitted sklearn pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(features, list(labels))


def probe_layers(train_states: np.ndarray, y_train, val_states: np.ndarray, y_val, metric: str = "qwk",
                 layers: Sequence[int] | None = None) -> list[dict]:
    """Validation accuracy/QWK of a probe per layer (index into the states' layer axis)."""
    from trainer.evaluation.evaluate import metric_objective
    from trainer.evaluation.metrics import compute_metrics

    objective = metric_objective(metric)

    rows = []
    for layer in layers if layers is not None else range(1, train_states.shape[1]):
        probe = fit_probe(train_states[:, layer], y_train)
        predicted = probe.predict(val_states[:, layer])
        scores = compute_metrics(list(y_val), list(predicted))
        rows.append({"layer": int(layer), "accuracy": scores["accuracy"], "qwk": scores["qwk"],
                     "metric": float(objective(list(y_val), list(predicted)))})
    return rows


def best_layer(table: list[dict]) -> int:
    """The probe table's layer with the best validation metric (ties: the lower layer, which is cheaper)."""
    return max(table, key=lambda r: (round(r["metric"], 6), -r["layer"]))["layer"]
