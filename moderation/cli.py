"""``matrix screen``: screen one text (decision + highlighted hits) or a JSONL file, streaming.

The lead mounts it with ``app.command("screen")(screen_command)``; ``python -m moderation.cli`` runs it alone.
It screens with the process default configuration: whatever the application passed to
:func:`moderation.configure` before invoking it, else the defaults of :class:`moderation.ModerationConfig`.

JSONL mode reads lines ``{"id": ..., "text": "..."}`` and writes ``{"id", "decision", "categories", "hits"}``
in input order. Memory stays constant whatever the file size: lines are read one at a time and screened in
batches of ``--batch-size``. A malformed line (bad JSON, bad UTF-8, no string ``text``) is reported on stderr
with its line number and skipped; the rest is still screened and the exit code is 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from moderation.engine import SCREEN_BATCH
from moderation.types import ModerationError, Verdict

__all__ = ["app", "screen_command"]

app = typer.Typer(help="Screen text with the moderation engine.", add_completion=False)

_STYLE = {"lexicon": "bold white on red", "pii": "bold black on yellow"}
_DECISION_STYLE = {"pass": "bold green", "review": "bold yellow", "reject": "bold red"}


def _highlight(text: str, verdict: Verdict) -> Text:
    out = Text(text)
    for h in verdict.hits:
        if h.source in _STYLE and h.end > h.start:
            out.stylize(_STYLE[h.source], h.start, h.end)
    return out


def _print_verdict(console: Console, text: str, verdict: Verdict) -> None:
    console.print(Text(verdict.decision.upper(), style=_DECISION_STYLE[verdict.decision]))
    console.print(_highlight(text, verdict))
    if verdict.hits:
        table = Table("category", "source", "term", "list", "span", "text", "severity")
        for h in verdict.hits:
            shown = h.text if len(h.text) <= 40 else h.text[:37] + "…"
            table.add_row(h.category, h.source, h.term, h.list, f"{h.start}-{h.end}", shown, h.severity)
        console.print(table)
    if verdict.categories:
        console.print(", ".join(f"{c}={s:.2f}" for c, s in sorted(verdict.categories.items())))
    console.print(f"model {verdict.model_version} · lexicon {verdict.lexicon_version}", style="dim")


def _parse_line(raw: bytes, lineno: int) -> tuple[Any, str]:
    """``(id, text)`` of one JSONL line, or raise ``ValueError`` with a readable reason."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from exc
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
    if not isinstance(obj.get("text"), str):
        raise ValueError('missing "text" string')
    return obj.get("id", lineno), obj["text"]


def _flush(batch: list[tuple[Any, str]], out: IO[str], policy: Any) -> None:
    from moderation import screen_batch
    from moderation.engine import verdict_summary

    verdicts = screen_batch([t for _, t in batch], policy=policy)
    for (item_id, _), v in zip(batch, verdicts, strict=True):
        out.write(json.dumps({"id": item_id, **verdict_summary(v)}, ensure_ascii=False) + "\n")
    batch.clear()


def _screen_file(input_path: Path, output_path: Path, batch_size: int, policy: Any, err: Console) -> int:
    """Screen a JSONL file; returns the number of malformed lines."""
    bad = 0
    total = input_path.stat().st_size
    batch: list[tuple[Any, str]] = []
    to_stdout = str(output_path) == "-"
    out: IO[str] = sys.stdout if to_stdout else output_path.open("w", encoding="utf-8")
    progress = Progress(
        TextColumn("[bold]screening"),
        BarColumn(),
        TextColumn("{task.fields[lines]} lines"),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=to_stdout,
    )
    try:
        with input_path.open("rb") as fh, progress:
            task = progress.add_task("screen", total=total, lines=0)
            for lineno, raw in enumerate(fh, 1):
                progress.update(task, advance=len(raw), lines=lineno)
                if not raw.strip():
                    continue
                try:
                    batch.append(_parse_line(raw, lineno))
                except ValueError as exc:
                    bad += 1
                    err.print(f"[red]error:[/] {input_path}:{lineno}: {exc}; line skipped")
                    continue
                if len(batch) >= batch_size:
                    _flush(batch, out, policy)
            if batch:
                _flush(batch, out, policy)
    finally:
        if not to_stdout:
            out.close()
    return bad


def screen_command(
    text: str | None = typer.Argument(None, help="Text to screen (omit when using --input)."),
    input: Path | None = typer.Option(None, "--input", "-i", help='JSONL file of {"id", "text"} lines.'),
    output: Path | None = typer.Option(None, "--output", "-o", help="JSONL output file ('-' for stdout)."),
    batch_size: int = typer.Option(SCREEN_BATCH, "--batch-size", min=1, help="Texts per screening batch."),
    policy_json: str | None = typer.Option(
        None, "--policy", help='Policy overrides as JSON, e.g. \'{"thresholds": {"abuse": {"review": 0.4}}}\'.'
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON instead of highlighting."),
) -> None:
    """Screen TEXT and print the decision with hits highlighted, or screen --input JSONL into --output."""
    from moderation import Policy, screen

    console = Console()
    err = Console(stderr=True)
    try:
        policy = Policy.default().with_overrides(json.loads(policy_json)) if policy_json else None
    except (ValueError, ModerationError) as exc:
        err.print(f"[red]error:[/] --policy: {exc}")
        raise typer.Exit(2) from exc
    if input is not None:
        if text is not None:
            err.print("[red]error:[/] give either TEXT or --input, not both")
            raise typer.Exit(2)
        if output is None:
            err.print("[red]error:[/] --input needs --output (use '-' for stdout)")
            raise typer.Exit(2)
        if not input.is_file():
            err.print(f"[red]error:[/] input file not found: {input}")
            raise typer.Exit(2)
        if str(output) != "-" and (output.is_dir() or not output.parent.is_dir()):
            # checked before screening starts, not after a long file has been screened for nothing
            err.print(f"[red]error:[/] cannot write {output}: not a file in an existing folder")
            raise typer.Exit(2)
        try:
            bad = _screen_file(input, output, batch_size, policy, err)
        except OSError as exc:
            err.print(f"[red]error:[/] {exc.filename or output}: {exc.strerror}")
            raise typer.Exit(2) from exc
        if bad:
            err.print(f"[red]{bad} malformed line(s) skipped[/]")
            raise typer.Exit(1)
        return
    if text is None:
        err.print("[red]error:[/] give TEXT to screen or --input FILE --output FILE")
        raise typer.Exit(2)
    verdict = screen(text, policy=policy)
    if as_json:
        console.print_json(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        _print_verdict(console, text, verdict)


app.command("screen")(screen_command)

if __name__ == "__main__":
    app()
