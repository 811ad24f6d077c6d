"""`trainer report RUNS --html OUT.html`: one self-contained page, checked statically and in a real headless browser
(Debian `chromium`; skipped with the reason where none is installed), and the terminal table's new columns."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from submission.prompts.sections import compose_prompt
from trainer.evaluation.report_html import CONTENT_SECURITY_POLICY

CHROMIUM = next((shutil.which(name) for name in ("chromium", "chromium-browser") if shutil.which(name)), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install -y chromium); the page is still "
                             "checked without a browser by the other tests here")
HOSTILE = '<script>alert("x")</script>'  # prompt text lands in the page: it must arrive as text, not markup
SCALE = "0: нет\n1: слабо\n2: частично\n3: полностью"


def _cli(args):
    from typer.testing import CliRunner

    from trainer.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _write_run(runs: Path, name: str, config: dict, report: dict) -> None:
    (runs / name / "merged").mkdir(parents=True)
    (runs / name / "training_config.json").write_text(json.dumps({"config": config}), encoding="utf-8")
    (runs / name / "merged" / "validation_report.json").write_text(json.dumps(report), encoding="utf-8")


@pytest.fixture(scope="module")
def hand_made_runs(tmp_path_factory):
    """runs/ with 'alpha' (a full report from build_report on 48 hand-made rows) and 'beta' (an old, bare report)."""
    from trainer.evaluation.evaluate import build_report

    rng = np.random.default_rng(3)
    criteria = ["Полнота", "Грамотность", f"Точность {HOSTILE}"]
    prompts = [compose_prompt("Задача", "ответ " * (1 + i % 9), criteria[i % 3], SCALE,
                              "эталон" if i % 4 else None) for i in range(48)]
    gold = [int(v) for v in rng.integers(0, 4, 48)]
    probs = np.zeros((48, 5))
    for i, g in enumerate(gold):
        label = g if i % 3 else (g + 1) % 4  # every third row wrong, the 'Полнота' criterion worst
        probs[i, 1:] = (1 - 0.4 - i / 200) / 3
        probs[i, label + 1] = 0.4 + i / 200
    report = build_report(probs, [(0, 1, 2, 3)] * 48, ["static" if i % 2 else "generative" for i in range(48)],
                          gold, "qwk", None, Path("merged"), prompts=prompts, ids=[f"row-{i:02d}" for i in range(48)])
    assert report["accuracy"] == pytest.approx(32 / 48)  # the decision keeps exactly every third row wrong
    report["scoring"] = {"engine": "hf", "prefix_sharing": True, "tokens_submitted": 52_480, "tokens_computed": 17_104,
                         "computed_share": 0.3259, "seconds": 1.5}  # as evaluate writes it (scoring_usage)
    runs = tmp_path_factory.mktemp("html") / "runs"
    _write_run(runs, "alpha", {"metric": "qwk", "learning_rate": 1e-3}, report)
    _write_run(runs, "beta", {"metric": "qwk", "learning_rate": 2e-3}, {"qwk": -0.5, "accuracy": 0.1})
    return runs, report


@pytest.fixture(scope="module")
def page(hand_made_runs):
    runs, _ = hand_made_runs
    out = runs.parent / "out" / "report.html"
    result = _cli(["report", runs, "--html", out])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(out)
    return out


def test_page_is_self_contained_and_escapes_prompt_text(page):
    text = page.read_text(encoding="utf-8")
    links = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert links and all(link.startswith("data:") for link in links), [link[:40] for link in links]
    assert "<script" not in text.lower() and "&lt;script&gt;" in text  # no script at all; the prompt's is text
    assert CONTENT_SECURITY_POLICY in text
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == 3  # confusion matrix, reliability diagram, score distribution
    assert all(base64.b64decode(image).startswith(b"\x89PNG") for image in images)


def test_page_shows_the_best_runs_tables_and_most_confident_errors(page, hand_made_runs):
    _, report = hand_made_runs
    text = page.read_text(encoding="utf-8")
    for heading in ("<h2>Runs</h2>", "<h2>Best run: alpha</h2>", "<h3>Per task family</h3>",
                    "<h3>Per criterion (worst first)</h3>", "<h3>Answer length", "<h3>Reference answer present",
                    "<h3>Score distribution", "<h3>The 16 most confident errors</h3>"):
        assert heading in text, heading
    assert f"ECE <b>{report['calibration']['ece']:.3f}</b>" in text
    assert "prompt tokens: 17,104 computed of 52,480 submitted (hf, prefix sharing on)" in text
    positions = [text.index(f">{e['id']}<") for e in report["confident_errors"]]
    assert len(positions) == 16 and positions == sorted(positions)  # every wrong row, most confident first
    criterion_table = text[text.index("Per criterion"):text.index("Answer length")]
    assert criterion_table.index("Полнота") < criterion_table.index("Грамотность")  # worst (0.0 accuracy) first
    assert report["per_criterion"][0]["criterion"] == "Полнота" and report["per_criterion"][0]["accuracy"] == 0.0


def test_terminal_report_gains_ece_and_worst_criterion_columns(hand_made_runs):
    runs, report = hand_made_runs
    result = _cli(["report", runs])
    assert result.exit_code == 0, result.output
    header, _, alpha, beta = result.output.splitlines()[:4]
    columns = [c.strip() for c in header.split("|")]
    assert "ECE" in columns and "worst criterion" in columns
    cells = dict(zip(columns, (c.strip() for c in alpha.split("|")), strict=True))
    assert cells["ECE"] == f"{report['calibration']['ece']:.3f}"
    assert cells["worst criterion"] == "Полнота (acc 0.00, n 16)"
    old = dict(zip(columns, (c.strip() for c in beta.split("|")), strict=True))
    assert old["ECE"] == "n/a" and old["worst criterion"] == "n/a"  # a report from before the checks


def _open_in_chromium(page: Path) -> tuple[str, list[str]]:
    """(the DOM after load, the console lines) of ``page`` in headless chromium (flags: no network, no profile)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


# After load: how many images there are and how many did not decode (an <img> that fails logs nothing by itself).
PROBE = ('<script>addEventListener("load", () => { const broken = [...document.images].filter(i => !i.naturalWidth);'
         ' document.body.dataset.probe = `images=${document.images.length} broken=${broken.length}`; });</script>')


def _with_probe(page: Path, out: Path) -> Path:
    """A copy of ``page`` with :data:`PROBE` allowed and appended (the page itself carries no script)."""
    text = page.read_text(encoding="utf-8")
    out.write_text(text.replace(CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY + "; script-src 'unsafe-inline'")
                   .replace("</body>", PROBE + "</body>"), encoding="utf-8")
    return out


@needs_chromium
def test_page_renders_in_headless_chromium_without_console_errors(page, tmp_path):
    dom, console = _open_in_chromium(page)
    assert console == [], console
    assert "Best run: alpha" in dom and "most confident errors" in dom
    dom, console = _open_in_chromium(_with_probe(page, tmp_path / "probed.html"))
    assert console == [], console
    assert 'data-probe="images=3 broken=0"' in dom


@needs_chromium
def test_the_browser_check_catches_a_script_error_an_external_load_and_a_broken_image(tmp_path):
    broken = tmp_path / "broken.html"
    broken.write_text(f'<!doctype html><html><head><meta http-equiv="Content-Security-Policy" '
                      f'content="{CONTENT_SECURITY_POLICY}"></head><body><img src="data:image/png;base64,AAAA">'
                      '<link rel="stylesheet" href="https://example.invalid/x.css"></body></html>', encoding="utf-8")
    dom, console = _open_in_chromium(broken)
    assert any("Content Security Policy" in line for line in console), console  # the external stylesheet
    dom, console = _open_in_chromium(_with_probe(broken, tmp_path / "probed.html"))
    assert 'data-probe="images=1 broken=1"' in dom
    failing = tmp_path / "failing.html"
    failing.write_text("<!doctype html><html><body><script>undefined_function()</script></body></html>")
    assert any("undefined_function is not defined" in line for line in _open_in_chromium(failing)[1])


def test_control_and_bidi_characters_from_the_data_reach_neither_terminal_nor_page(tmp_path):
    """An ESC sequence (clears the screen, recolours) or U+202E (shows the text after it reversed) in a criterion, an
    answer excerpt or a setting is printed without them; the visible text stays."""
    runs = tmp_path / "runs"
    hostile = "Точность\x1b[2J\x1b[31m\u202eevil\u2066 ok\x07"
    report = {"qwk": 0.5, "accuracy": 0.5, "metric": "qwk", "decision": {"rule": "argmax"},
              "per_criterion": [{"criterion": hostile, "n": 3, "accuracy": 0.2, "qwk": 0.1, "spearman": 0.1}],
              "confident_errors": [{"id": "row\u202e-1", "gold": 3, "predicted": 0, "p": 0.9, "p_gold": 0.01,
                                    "criterion": hostile, "answer": f"answer {hostile}"}]}
    _write_run(runs, "alpha", {"metric": "qwk", "wandb_project": "p\x1b]0;title\x07"}, report)
    _write_run(runs, "beta", {"metric": "qwk", "wandb_project": "q"}, {"qwk": 0.1, "accuracy": 0.1})
    out = tmp_path / "report.html"
    result = _cli(["report", runs, "--html", out])
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    for shown in (result.output, page):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", shown)
    assert "Точность" in result.output and "evil" in page and "answer Точность" in page
