"""The labelled-window loss equals plain cross-entropy over the labelled tokens of a full-logit forward."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture(scope="module")
def batch(tiny_tokenizer, synth_dir):
    from submission.prompts.prompting import PromptRenderer
    from trainer.training.train import LeftPadCollator, tokenise

    frame = pd.read_csv(synth_dir / "train.csv", dtype={"id": str})
    frame = pd.concat([frame[frame.score == -1].head(2), frame[frame.score != -1].head(4)])  # 3- and 2-token targets
    assert (frame.score == -1).any()
    renderer = PromptRenderer(tiny_tokenizer, max_tokens=512)
    dataset = tokenise(frame, renderer, 512)
    return LeftPadCollator(tiny_tokenizer.pad_token_id)([dataset[i] for i in range(len(dataset))])


def test_labelled_loss_matches_full_logit_cross_entropy(tiny_model_dir, batch):
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM

    from trainer.training.train import labelled_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss, tokens = labelled_loss(model, batch)
    full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 position_ids=batch["position_ids"]).logits
    expected = F.cross_entropy(full[:, :-1].reshape(-1, full.shape[-1]), batch["labels"][:, 1:].reshape(-1),
                               ignore_index=-100)
    assert torch.allclose(loss, expected, atol=1e-5)
    assert int(tokens) == int(batch["attention_mask"].sum())


def test_only_score_and_end_tokens_carry_labels(tiny_tokenizer, batch):
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        labelled = tiny_tokenizer.decode(ids[labels != -100])
        assert labelled in {"0<|im_end|>", "1<|im_end|>", "2<|im_end|>", "3<|im_end|>", "-1<|im_end|>"}


def test_class_weights_change_the_loss(tiny_model_dir, batch):
    import torch
    from transformers import AutoModelForCausalLM

    from trainer.training.train import labelled_loss

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    plain, _ = labelled_loss(model, batch)
    weighted = dict(batch, weight=torch.tensor([5.0, 5.0, 1.0, 1.0, 1.0, 1.0]))
    assert not torch.allclose(labelled_loss(model, weighted)[0], plain)
