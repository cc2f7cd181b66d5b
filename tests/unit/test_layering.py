"""The layering is checked, not hoped for: the import contracts in pyproject.toml hold (also run by `make lint`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_import_contracts_are_kept() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_the_contracts_can_fail(tmp_path: Path) -> None:
    """A contract that today's code breaks is reported as broken (so a green run means something)."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["publisher", "core"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "publisher may not use the kernel (false on purpose)"\n'
        'type = "forbidden"\nsource_modules = ["publisher"]\nforbidden_modules = ["core"]\n'
    )
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "1 broken" in done.stdout


def test_no_production_module_imports_the_sandboxes_or_the_worker_app() -> None:
    """Belt and braces beside the contracts: a plain text search, which no configuration can switch off."""
    offenders = []
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("publisher/**/*.py"), *ROOT.glob("moderation/**/*.py"),
                 *(p for p in ROOT.glob("channels/**/*.py") if "sandbox" not in p.parts)]:  # fmt: skip
        text = path.read_text(encoding="utf-8")
        if "channels.sandbox" in text.replace('"channels.sandbox"', "") or "workers.app import" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
