"""Judge head: a 5-way classifier on a middle layer of the base LM, the layers above it dropped.

    python -m trainer train --experiment demo --config trainer/configs/real_cpu_head.yaml --train-path data/ref/train.csv \
        --base-model models/smollm2 --output-dir runs

Why: fine-tuning a small LM through the label tokens of its (tied) LM head did not reach the comparison signal on
real weights, while a logistic regression on the frozen model's last-token hidden state of a middle layer did
(BENCHMARKS.md, Real weights). This recipe keeps that layer's path and trains it directly:

1. probe: one frozen forward per row; a logistic regression per layer on the last token's hidden state; the layer is
   the one with the best validation metric (``judge_head_layer: 0`` = choose; > 0 = that layer);
2. the model keeps layers 1..L (+ the final norm) and gets a linear ``score`` over LABELS (-1, 0, 1, 2, 3): a plain
   transformers ``*ForSequenceClassification`` (Llama, Qwen3, ...) with ``num_hidden_layers = L``;
3. the layers below ``L - judge_head_train_layers`` stay frozen and are computed ONCE per row (cached), the top
   ``judge_head_train_layers`` layers, the norm and the score head train on the cached states, with the score head
   initialised from a probe fitted on the head's own input (the normed layer-L state);
4. the loss is the runtime's: cross-entropy over the rubric-masked label logits; validation accuracy/QWK is measured
   every ``judge_head_eval_steps`` (the learning curve) and the best validation step is kept.

The saved folder is an ordinary Hugging Face model (safetensors, no remote code); the runtime reads its logits as the
label logits (submission/engines/engine_hf.py), so the rubric mask, -1 and the decision rule are unchanged.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("trainer.training.judge_head")

CLASSIFIER_SUFFIX = "ForSequenceClassification"
# The initial head is the probe that picked the layer (sklearn's default C); a softer one (C=0.05) started 0.1 QWK
# lower on validation (SmolLM2, layer 17: 0.80 vs 0.90).
PROBE_INIT_C = 1.0

from trainer.training.judge_features import (  # noqa: E402,F401 - the features the recipe trains on
    best_layer,
    cached_bottom_states,
    cached_last_token_states,
    fit_probe,
    last_token_states,
    model_key,
    probe_layers,
)


# -- the classifier model ---------------------------------------------------------------------------------------
def is_judge_head(config_or_dir) -> bool:
    """True for a saved judge head (its architecture is a ``*ForSequenceClassification``)."""
    if isinstance(config_or_dir, (str, Path)):
        import json

        path = Path(config_or_dir) / "config.json"
        try:
            architectures = json.loads(path.read_text(encoding="utf-8")).get("architectures") or []
        except (OSError, ValueError):
            return False
    else:
        architectures = getattr(config_or_dir, "architectures", None) or []
    return any(str(a).endswith(CLASSIFIER_SUFFIX) for a in architectures)


def build_classifier(causal_lm, layer: int, pad_token_id: int):
    """A ``*ForSequenceClassification`` holding the causal LM's embeddings, layers 1..``layer`` and final norm.

    The score head is zero (the caller initialises it); labels are LABELS in order.
    """
    import copy

    import torch
    from transformers import AutoModelForSequenceClassification

    from submission.prompts.sections import LABELS

    config = copy.deepcopy(causal_lm.config)
    total = config.num_hidden_layers
    if not 1 <= layer <= total:
        raise ValueError(f"judge head layer {layer} outside 1..{total}")
    config.num_hidden_layers = layer
    if getattr(config, "layer_types", None):
        config.layer_types = list(config.layer_types)[:layer]
    if getattr(config, "max_window_layers", None):
        config.max_window_layers = min(config.max_window_layers, layer)
    config.num_labels = len(LABELS)
    config.id2label = {i: str(label) for i, label in enumerate(LABELS)}
    config.label2id = {str(label): i for i, label in enumerate(LABELS)}
    config.pad_token_id = pad_token_id
    config.tie_word_embeddings = False
    config.architectures = None
    classifier = AutoModelForSequenceClassification.from_config(config, dtype=causal_lm.dtype)
    body = getattr(classifier, classifier.base_model_prefix)
    source = causal_lm.model
    missing, unexpected = body.load_state_dict(
        {k: v for k, v in source.state_dict().items() if not _above(k, layer)}, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"judge head body does not match the base: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        classifier.score.weight.zero_()
    classifier.config.architectures = [type(classifier).__name__]
    return classifier


def _above(key: str, layer: int) -> bool:
    parts = key.split(".")
    return len(parts) > 1 and parts[0] == "layers" and int(parts[1]) >= layer


def label_logits(classifier, input_ids) -> torch.Tensor:  # noqa: F821
    """[B, 5] logits of right-aligned (left-padded) rows: the score head on the last position."""
    return classifier(input_ids=input_ids).logits


# -- training on cached lower layers ----------------------------------------------------------------------------
class CachedTop:
    """The classifier split at ``start``: layers below it frozen (their output cached per row), the rest trained."""

    def __init__(self, classifier, start: int):
        self.classifier = classifier
        self.body = getattr(classifier, classifier.base_model_prefix)
        self.start = start
        self.device = next(classifier.parameters()).device
        for name, parameter in classifier.named_parameters():
            parameter.requires_grad = self._trained(name)

    def _trained(self, name: str) -> bool:
        parts = name.split(".")
        if "layers" in parts:
            return int(parts[parts.index("layers") + 1]) >= self.start
        return not name.startswith(f"{self.classifier.base_model_prefix}.embed_tokens")

    def trained_parameters(self):
        return [p for p in self.classifier.parameters() if p.requires_grad]

    def bottom(self, ids: Sequence[int]):
        """[1, T, H] hidden state after layer ``start`` (no grad, on the CPU): the part computed once per row."""
        import torch

        with torch.inference_mode():
            x = torch.as_tensor([list(ids)], device=self.device)
            hidden = self.body.embed_tokens(x)
            positions = torch.arange(x.shape[1], device=self.device).unsqueeze(0)
            rotary = self.body.rotary_emb(hidden, positions)
            for layer in self.body.layers[: self.start]:
                hidden = _layer_out(layer(hidden, position_ids=positions, position_embeddings=rotary))
        return hidden.cpu().clone()

    def top(self, hidden):
        """[1, 5] label logits from a cached state (grad through the trained layers, norm and score)."""
        import torch

        hidden = hidden.to(self.device)
        positions = torch.arange(hidden.shape[1], device=self.device).unsqueeze(0)
        rotary = self.body.rotary_emb(hidden, positions)
        for layer in self.body.layers[self.start:]:
            hidden = _layer_out(layer(hidden, position_ids=positions, position_embeddings=rotary))
        last = self.body.norm(hidden[:, -1])
        return self.classifier.score(last)

    def head_input(self, hidden):
        """[1, H] the score head's input (normed last state), no grad."""
        import torch

        with torch.no_grad():
            hidden = hidden.to(self.device)
            positions = torch.arange(hidden.shape[1], device=self.device).unsqueeze(0)
            rotary = self.body.rotary_emb(hidden, positions)
            for layer in self.body.layers[self.start:]:
                hidden = _layer_out(layer(hidden, position_ids=positions, position_embeddings=rotary))
            return self.body.norm(hidden[:, -1]).float().cpu()


def _layer_out(output):
    return output[0] if isinstance(output, tuple) else output


def probe_init(classifier, features: np.ndarray, labels: Sequence[int], c: float = 1.0) -> None:
    """Set the score head to a logistic regression fitted on its own input (the normed layer-L state).

    The head has no bias (transformers' classifiers), so the probe's intercept is folded along the mean feature
    direction: w.x + b ~ (w + b mu/|mu|^2).x for x near the mean mu (RMSNorm outputs sit far from the origin). Labels
    the train rows never use (e.g. -1) get a logit far below the others.
    """
    import torch

    from submission.prompts.sections import LABELS

    probe = fit_probe(features, labels, c)
    scaler, regression = probe[0], probe[-1]
    weight = regression.coef_ / scaler.scale_
    bias = regression.intercept_ - weight @ scaler.mean_
    classes = list(regression.classes_)
    if len(classes) == 2:  # sklearn's binary case keeps one row for the second class
        weight, bias = np.stack([-weight[0] / 2, weight[0] / 2]), np.array([-bias[0] / 2, bias[0] / 2])
    mu = features.mean(axis=0)
    head = np.zeros((len(LABELS), features.shape[1]))
    absent = -20.0 * mu / float(mu @ mu)
    for i, label in enumerate(LABELS):
        if label in classes:
            j = classes.index(label)
            head[i] = weight[j] + bias[j] * mu / float(mu @ mu)
        else:
            head[i] = absent
    with torch.no_grad():
        classifier.score.weight.copy_(torch.as_tensor(head, dtype=classifier.score.weight.dtype,
                                                      device=classifier.score.weight.device))


def masked_cross_entropy(logits, allowed, gold, weight=None):
    """Mean cross-entropy over the rubric-allowed labels (the runtime's renormalisation)."""

    from trainer.training.losses import student_log_probs

    log_probs = student_log_probs(logits, allowed)
    picked = log_probs.gather(1, gold.unsqueeze(1)).squeeze(1)
    losses = -picked
    if weight is not None:
        losses = losses * weight
    return losses.mean() if weight is None else losses.sum() / weight.sum().clamp(min=1e-12)


def learning_rate_at(step: int, total: int, base: float, warmup: int, schedule: str) -> float:
    """The learning rate of ``step`` (0-based) under linear warm-up then linear/cosine/constant decay."""
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if schedule.startswith("constant"):
        return base
    progress = (step - warmup) / max(1, total - warmup)
    if schedule.startswith("cosine"):
        return base * 0.5 * (1 + math.cos(math.pi * progress))
    return base * max(0.0, 1 - progress)


# -- the recipe -------------------------------------------------------------------------------------------------
def train_judge_head(config, run, train_frame, val_frame, tokenizer, fit_frame=None) -> dict:
    """Train a judge head into ``run.merged``; returns what the run record keeps (layer, probe table, steps).

    ``fit_frame``: the rows trained on (augmented/oversampled train split; default ``train_frame``). The learning
    curve goes into the run's metrics log (``kind: curve`` records, trainer/evaluation/learning_curve.py).
    """
    import torch
    from transformers import AutoModelForCausalLM, set_seed

    from submission.prompts.prompting import PromptRenderer
    from submission.prompts.sections import LABELS, parse_prompt
    from submission.scoring.decoding import allowed_mask
    from trainer.data import split
    from trainer.evaluation import learning_curve
    from trainer.training.merge import save_merged_model

    set_seed(config.seed)
    fit_frame = train_frame if fit_frame is None else fit_frame
    renderer = PromptRenderer(tokenizer, max_tokens=config.max_tokens)

    def ids_of(frame):
        return [renderer.render(p, config.max_tokens).input_ids for p in frame["prompt"]]

    def masks_of(frame):
        return torch.tensor(np.stack([allowed_mask(parse_prompt(p).allowed) for p in frame["prompt"]]))

    fit_ids, val_ids = ids_of(fit_frame), ids_of(val_frame)
    fit_gold = [int(s) for s in fit_frame["score"]]
    val_gold = [int(s) for s in val_frame["score"]]
    device = "cuda" if torch.cuda.is_available() else "cpu"  # fp32 either way: the trained part is a few layers
    lm = AutoModelForCausalLM.from_pretrained(config.base_model, dtype=torch.float32, trust_remote_code=False)
    lm = lm.to(device).eval()
    total_layers = lm.config.num_hidden_layers
    started = time.perf_counter()
    table = None
    layer = config.judge_head_layer
    if layer == 0:
        log.info("judge head: probing %d layers on %d train + %d validation rows", total_layers, len(fit_ids),
                 len(val_ids))
        key = model_key(config.base_model) if config.feature_cache else ""
        table = probe_layers(cached_last_token_states(lm, fit_ids, config.feature_cache, key), fit_gold,
                             cached_last_token_states(lm, val_ids, config.feature_cache, key), val_gold,
                             config.metric, layers=range(1, total_layers))
        layer = best_layer(table)
        log.info("judge head: layer %d (validation %s %.3f)", layer, config.metric,
                 next(r["metric"] for r in table if r["layer"] == layer))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    classifier = build_classifier(lm, layer, pad_id)
    del lm
    start = max(0, layer - config.judge_head_train_layers)
    top = CachedTop(classifier, start)
    classifier.train()
    log.info("judge head: caching layers 1..%d for %d rows", start, len(fit_ids) + len(val_ids))
    key = model_key(config.base_model) if config.feature_cache else ""
    fit_cache = cached_bottom_states(top, fit_ids, config.feature_cache, f"{key}-below{start}")
    val_cache = cached_bottom_states(top, val_ids, config.feature_cache, f"{key}-below{start}")
    cache_seconds = time.perf_counter() - started
    head_features = np.concatenate([top.head_input(h).numpy() for h in fit_cache])
    if config.judge_head_init == "probe":
        probe_init(classifier, head_features, fit_gold, c=PROBE_INIT_C)
    fit_masks, val_masks = masks_of(fit_frame), masks_of(val_frame)
    label_index = {label: i for i, label in enumerate(LABELS)}
    fit_targets = torch.tensor([label_index[g] for g in fit_gold], device=device)
    fit_mask_device = fit_masks.to(device)
    weights = split.class_weights(train_frame["score"]) if config.balance == "class_weights" else None
    row_weights = torch.tensor([float(weights.get(g, 1.0)) if weights else 1.0 for g in fit_gold], device=device)

    def predict(cache, masks) -> np.ndarray:
        from submission.scoring.decoding import probabilities_from_label_logits

        with torch.no_grad():
            logits = torch.cat([top.top(h) for h in cache]).float().cpu().numpy()
        return probabilities_from_label_logits(logits, [tuple(np.array(LABELS)[m.numpy()]) for m in masks])

    rows_per_step = config.batch_size * config.grad_accum
    steps = config.max_steps if config.max_steps > 0 else math.ceil(config.epochs * len(fit_ids) / rows_per_step)
    score_params = list(classifier.score.parameters())
    body_params = [p for p in top.trained_parameters() if all(p is not q for q in score_params)]
    score_lr = config.judge_head_score_lr or config.learning_rate
    optimizer = torch.optim.AdamW([{"params": body_params, "lr": config.learning_rate, "base": config.learning_rate},
                                   {"params": score_params, "lr": score_lr, "base": score_lr}],
                                  weight_decay=config.weight_decay)
    warmup = int(round(config.warmup_ratio * steps))
    generator = np.random.default_rng(config.seed)
    order: list[int] = []
    sample = learning_curve.train_sample(len(fit_ids), config.seed)
    curve = learning_curve.CurveRecorder(run, every=config.curve_steps or max(1, steps // 10), metric=config.metric)

    def evaluate(step: int, loss: float | None) -> float:
        val_probs = predict(val_cache, val_masks)
        train_probs = predict([fit_cache[i] for i in sample], fit_masks[sample])
        return curve.record(step, loss, [fit_gold[i] for i in sample], train_probs, val_gold, val_probs,
                            learning_rate=optimizer.param_groups[0]["lr"])

    best = (evaluate(0, None), 0, {k: v.detach().clone() for k, v in classifier.state_dict().items()})
    losses: list[float] = []
    loop_started = time.perf_counter()
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(step, steps, group["base"], warmup, config.scheduler)
        batch = []
        while len(batch) < rows_per_step:
            if not order:
                order = generator.permutation(len(fit_ids)).tolist()
            batch.append(order.pop())
        optimizer.zero_grad(set_to_none=True)
        step_loss = 0.0
        for i in batch:
            logits = top.top(fit_cache[i])
            loss = masked_cross_entropy(logits, fit_mask_device[i : i + 1], fit_targets[i : i + 1],
                                        row_weights[i : i + 1]) * (row_weights[i] / row_weights[batch].sum())
            loss.backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(top.trained_parameters(), config.max_grad_norm)
        optimizer.step()
        losses.append(step_loss)
        done = step + 1
        if done % config.logging_steps == 0 or done == steps:
            elapsed = time.perf_counter() - loop_started
            log.info("step %d/%d | loss %.4f | lr %.2e | %.1f s/step | %.0fs", done, steps,
                     float(np.mean(losses[-config.logging_steps:])), optimizer.param_groups[0]["lr"],
                     elapsed / done, elapsed)
            run.append_metrics({"step": done, "epoch": done * rows_per_step / len(fit_ids),
                                "loss": float(np.mean(losses[-config.logging_steps:])),
                                "learning_rate": optimizer.param_groups[0]["lr"], "elapsed_s": round(elapsed, 3)})
        if curve.due(done) or done == steps:
            value = evaluate(done, float(np.mean(losses[-curve.every:])))
            if value > best[0]:
                best = (value, done, {k: v.detach().clone() for k, v in classifier.state_dict().items()})
    classifier.load_state_dict(best[2])
    classifier.eval()
    save_merged_model(classifier, tokenizer, run.merged, dtype=torch.float32 if config.precision == "fp32" else None)
    log.info("judge head: kept step %d (validation %s %.3f)", best[1], config.metric, best[0])
    return {"judge_head": {"layer": layer, "of_layers": total_layers, "trained_from_layer": start,
                           "kept_step": best[1], "best_validation_metric": best[0], "probe": table,
                           "cache_seconds": round(cache_seconds, 1)},
            "global_steps": steps}
