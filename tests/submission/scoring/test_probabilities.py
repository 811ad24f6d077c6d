"""`--probabilities PATH`: the runtime writes the probabilities its decision read, in `trainer distill`'s format."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from submission import cli
from submission.data import read_test_csv
from submission.prompts.sections import LABELS, parse_prompt
from submission.scoring.probabilities import PROBABILITY_COLUMNS, write_probabilities


def _run(argv) -> int:
    return cli.run(cli.build_parser().parse_args([str(a) for a in argv]))


@pytest.fixture(scope="module")
def test_csv(synth_dir, tmp_path_factory):
    path = tmp_path_factory.mktemp("probabilities") / "test.csv"
    pd.read_csv(synth_dir / "test.csv", dtype=str, keep_default_na=False).head(10).to_csv(path, index=False)
    return path


def test_writer_is_byte_for_byte_the_format_distill_wrote_with_pandas(tmp_path):
    from trainer.recipes.distill import soft_label_frame

    probs = np.array([[0.0, 1 / 3, 1 / 3, 1 / 3, 0.0], [1e-20, 0.5, 0.5 - 1e-20, 0.0, 0.0], [0, 0, 0, 0, 1.0],
                      *np.random.default_rng(0).dirichlet(np.ones(5), size=20)])
    ids = ["a,b", 'say "x"', *(f"row-{i}" for i in range(len(probs) - 2))]
    before = tmp_path / "pandas.csv"
    soft_label_frame(ids, probs).to_csv(before, index=False)  # how `trainer distill` wrote its file until now
    after = write_probabilities(tmp_path / "stdlib.csv", ids, probs)
    assert after.read_bytes() == before.read_bytes()


def test_writer_refuses_rows_of_the_wrong_width_and_non_finite_values(tmp_path):
    with pytest.raises(ValueError, match="expected 5"):
        write_probabilities(tmp_path / "p.csv", ["a"], [[0.5, 0.5]])
    with pytest.raises(ValueError, match="not finite"):
        write_probabilities(tmp_path / "p.csv", ["a"], [[np.nan, 0, 0, 0, 1]])
    assert not (tmp_path / "p.csv").exists()


def test_runtime_writes_the_decisions_probabilities_and_leaves_predictions_unchanged(tiny_model_dir, test_csv,
                                                                                      tmp_path):
    from trainer.evaluation.evaluate import score_rows
    from trainer.recipes.distill import read_soft_labels

    plain, with_probs, probs_path = tmp_path / "plain.csv", tmp_path / "pred.csv", tmp_path / "out" / "probs.csv"
    common = ["--test_path", test_csv, "--model-dir", tiny_model_dir, "--device", "cpu", "--quiet"]
    assert _run([*common, "--pred_path", plain]) == 0
    assert _run([*common, "--pred_path", with_probs, "--probabilities", probs_path]) == 0
    assert with_probs.read_bytes() == plain.read_bytes()  # the contest file is untouched by the flag
    rows = read_test_csv(test_csv)
    soft = read_soft_labels(probs_path)  # the distill reader takes it: one file can feed the other
    assert list(soft.columns) == ["id", *PROBABILITY_COLUMNS] and list(soft.id) == list(rows.id)
    values = soft[list(PROBABILITY_COLUMNS)].to_numpy()
    expected, allowed, _ = score_rows(tiny_model_dir, rows.prompt, 4096)
    assert np.allclose(values, expected, atol=1e-6)
    predicted = pd.read_csv(with_probs)["score"].tolist()  # no report: argmax over the very same numbers
    assert predicted == [LABELS[int(np.argmax(v))] for v in values]
    for row, ok in zip(values, allowed, strict=True):
        assert all(row[i] == 0 for i, label in enumerate(LABELS) if label not in ok)


def test_rows_that_got_the_prior_carry_the_prior(tiny_model_dir, test_csv, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_model_dir, model)
    (model / "validation_report.json").write_text(json.dumps(
        {"qwk": 0.5, "class_prior": {"overall": {"0": 0.1, "2": 0.9}, "by_criterion": {}}}))
    probs_path = tmp_path / "probs.csv"
    code = _run(["--test_path", test_csv, "--pred_path", tmp_path / "pred.csv", "--model-dir", model, "--device", "cpu",
                 "--time-limit", "0", "--quiet", "--probabilities", probs_path])  # no time: every row gets the prior
    assert code == 0
    meta = json.loads((tmp_path / "pred_meta.json").read_text())
    assert meta["fallback_rows"] == 10
    with probs_path.open(encoding="utf-8", newline="") as handle:
        got = list(csv.DictReader(handle))
    for row, prompt in zip(got, read_test_csv(test_csv).prompt, strict=True):
        allowed = parse_prompt(prompt).allowed
        assert 0 in allowed and 2 in allowed  # synthetic rubrics: the prior's two labels are allowed
        assert [float(row[c]) for c in PROBABILITY_COLUMNS] == pytest.approx([0, 0.1, 0, 0.9, 0])
