"""The merged model folder and the runtime work on the oldest transformers vLLM 0.26 accepts (5.5.3), not only on
the pinned 5.17: vLLM's image brings its own transformers (README "Contest entry").

`make install` downloads transformers 5.5.3 and a tokenizers it allows into ``contract-wheels/floor``; the test
unpacks them in front of this venv's site-packages and compares what the runtime computes there with what it
computes here: the rendered prompt ids (tokenizer + chat template) and the label logits of the tiny model.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from submission.selfcheck import MINIMUM_VERSIONS, release

ROOT = Path(__file__).resolve().parents[2]
FLOOR = Path(os.environ.get("AIJ_CONTRACT_WHEELS", Path(sys.prefix) / "contract-wheels")) / "floor"

def render_and_score(model_dir: str, test_csv: str) -> dict:
    """transformers' version, the rendered ids of 8 test prompts and the tiny model's label logits for them."""
    import transformers

    from submission.data import read_test_rows
    from submission.engines.engine_hf import TransformersEngine
    from submission.prompts.prompting import PromptRenderer

    engine = TransformersEngine(model_dir, device="cpu", token_budget=4096)
    renderer = PromptRenderer(engine.tokenizer, max_tokens=1024)
    ids = [r.input_ids for r in renderer.render_many(read_test_rows(test_csv).prompts[:8])]
    return {"version": transformers.__version__, "ids": ids, "logits": engine.label_logits(ids).tolist()}


SCRIPT = ("import json, sys; from tests.submission.test_transformers_floor import render_and_score; "
          "print(json.dumps(render_and_score(sys.argv[1], sys.argv[2])))")


@pytest.fixture(scope="module")
def floor_path(tmp_path_factory) -> Path:
    wheels = sorted(FLOOR.glob("*.whl"))
    if not any(w.name.startswith("transformers-") for w in wheels):
        message = f"{FLOOR}/transformers-*.whl missing: `make install` downloads the runtime's floor"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    out = tmp_path_factory.mktemp("floor")
    for wheel in wheels:
        zipfile.ZipFile(wheel).extractall(out)
    return out


def _on_the_floor(floor_path, tiny_model_dir, synth_dir) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(floor_path), str(ROOT)))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tiny_model_dir), str(synth_dir / "test.csv")], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_floor_wheel_is_the_floor_the_runtime_states():
    floor = re.search(r"transformers==([\d.]+)", (ROOT / "Makefile").read_text()).group(1)
    assert release(floor) == MINIMUM_VERSIONS["transformers"]


def test_merged_model_renders_and_scores_the_same_on_transformers_5_5_3(floor_path, tiny_model_dir, synth_dir):
    old = _on_the_floor(floor_path, tiny_model_dir, synth_dir)
    new = render_and_score(str(tiny_model_dir), str(synth_dir / "test.csv"))
    assert release(old["version"]) == MINIMUM_VERSIONS["transformers"] and old["version"] != new["version"]
    assert old["ids"] == new["ids"]
    np.testing.assert_allclose(old["logits"], new["logits"], rtol=1e-4, atol=1e-4)
