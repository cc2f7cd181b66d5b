"""The `matrix screen` command: one text, and JSONL in/out with broken lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moderation.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("rules_only")  # tests/conftest.py: lexicon and PII rules, no classifier


def test_single_text_prints_decision_and_hits() -> None:
    result = runner.invoke(app, ["你个傻.逼，电话 138 0013 8000"])
    assert result.exit_code == 0, result.output
    assert "REJECT" in result.output
    assert "傻.逼" in result.output and "138 0013 8000" in result.output and "mobile" in result.output


def test_single_text_json() -> None:
    result = runner.invoke(app, ["今天工会开会", "--json"])
    assert result.exit_code == 0
    assert json.loads(result.output)["decision"] == "pass"


def test_jsonl_good_input(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    rows = [{"id": i, "text": t} for i, t in enumerate(["工会开会", "草泥马", "加微信 abc123456"] * 30)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["--input", str(src), "--output", str(out), "--batch-size", "7"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == list(range(90))
    assert [r["decision"] for r in lines[:3]] == ["pass", "reject", "review"]
    assert set(lines[1]) == {"id", "decision", "categories", "hits"}
    assert lines[1]["hits"][0]["text"] == "草泥马"


def test_jsonl_broken_lines_reported_and_rest_screened(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(
        b'{"id": "a", "text": "\xe5\xb7\xa5\xe4\xbc\x9a"}\n'  # 工会
        b"not json at all\n"
        b'{"id": "c"}\n'
        b"\xff\xfe broken utf8\n"
        b"\n"
        b'["a list"]\n'
        b'{"id": "f", "text": "\xe5\x82\xbb\xe9\x80\xbc"}\n'  # 傻逼
    )
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["--input", str(src), "--output", str(out)])
    assert result.exit_code == 1
    for n in (2, 3, 4, 6):
        assert f"in.jsonl:{n}:" in result.output
    assert "in.jsonl:1:" not in result.output and "in.jsonl:7:" not in result.output
    decisions = [json.loads(line)["decision"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert decisions == ["pass", "reject"]


def test_usage_errors(tmp_path: Path) -> None:
    assert runner.invoke(app, []).exit_code == 2
    assert runner.invoke(app, ["--input", str(tmp_path / "missing.jsonl"), "--output", "-"]).exit_code == 2
    assert runner.invoke(app, ["x", "--policy", "{bad json"]).exit_code == 2


def test_matrix_screen_needs_no_sign_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`matrix screen` reads no stored data: it works without `matrix login` (and without a database)."""
    from core.settings import reset_settings
    from publisher.interfaces.cli import app as matrix

    monkeypatch.setenv("MATRIX_CLI_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.setenv("MATRIX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("MATRIX_MODERATION_CLASSIFIER", "0")
    monkeypatch.delenv("MATRIX_TOKEN", raising=False)
    reset_settings()
    try:
        result = runner.invoke(matrix, ["screen", "今天工会开会", "--json"])
    finally:
        reset_settings()
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["decision"] == "pass"
