"""The runtime opens no socket: scoring works with every socket creation turned into an error."""

import socket

import pandas as pd
import pytest

from submission.runtime.runtime import RunSettings, predict


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def guard(*args, **kwargs):
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket, "socket", guard)
    monkeypatch.setattr(socket, "create_connection", guard)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    return attempts


def test_prediction_opens_no_socket(no_network, tiny_model_dir, synth_dir):
    frame = pd.read_csv(synth_dir / "test.csv", dtype=str, keep_default_na=False).head(10)
    result = predict(frame, RunSettings(model_dir=tiny_model_dir, device="cpu"))
    assert len(result.scores) == 10
    assert no_network == []
