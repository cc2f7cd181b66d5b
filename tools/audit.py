"""`make lint`'s dependency audit: pip-audit over this environment, saying plainly when it could not audit.

pip-audit prints "No known vulnerabilities found" and exits 0 even when its vulnerability service answered for
no package at all (each one "skipped": not found, or the service unreachable). That is no clean bill, so this
runs it with JSON output and tells the three outcomes apart:

- audited, nothing found: exit 0 (the few packages it could not look up, a local ``+cpu`` build say, named);
- vulnerabilities found: each one listed, exit 1;
- the service unreachable, or answering for no package: a warning saying that nothing was audited, exit 0 —
  exit 1 with ``MATRIX_AUDIT_STRICT=1`` (set it wherever the service is reachable, so that CI cannot pass
  without an audit).

Run as ``python tools/audit.py [pip-audit options]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

STRICT = os.environ.get("MATRIX_AUDIT_STRICT", "") not in ("", "0")


def _unaudited(why: str) -> int:
    """Report that no audit took place; an error only in strict mode."""
    print(f"pip-audit: NOT AUDITED: {why}", file=sys.stderr)
    if STRICT:
        return 1
    print("pip-audit: tolerated (set MATRIX_AUDIT_STRICT=1 to fail instead)", file=sys.stderr)
    return 0


def _report(deps: list[dict[str, Any]]) -> int:
    """The verdict on pip-audit's JSON list of dependencies."""
    deps = [d for d in deps if "editable" not in d.get("skip_reason", "")]  # media-matrix itself
    skipped = [d for d in deps if "skip_reason" in d]
    audited = [d for d in deps if "skip_reason" not in d]
    if not audited:
        reasons = {d["skip_reason"].split(":")[0] for d in skipped}
        return _unaudited(f"the vulnerability service answered for none of {len(deps)} packages ({'; '.join(reasons)})")
    vulnerable = [d for d in audited if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            print(f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {fixed})")
    if skipped:
        names = ", ".join(f"{d['name']}" for d in skipped)
        print(f"pip-audit: {len(skipped)} of {len(deps)} packages could not be looked up: {names}", file=sys.stderr)
    if vulnerable:
        print(f"pip-audit: {len(vulnerable)} packages with known vulnerabilities", file=sys.stderr)
        return 1
    print(f"pip-audit: {len(audited)} packages audited, no known vulnerabilities")
    return 0


def main(argv: list[str]) -> int:
    """Run pip-audit over this interpreter's environment (our own editable install left out)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [sys.executable, "-m", "pip_audit", "--skip-editable", "--progress-spinner", "off"]
        # our own interpreter and a fixed module, arguments as a list (no shell)
        run = subprocess.run([*cmd, "-f", "json", "-o", str(out), *argv], capture_output=True, text=True)  # noqa: S603
        if not out.exists():  # pip-audit stopped before its report: the service could not be reached, mostly
            last = (run.stderr.strip().splitlines() or ["no output"])[-1]
            return _unaudited(f"pip-audit stopped (exit {run.returncode}): {last}")
        return _report(json.loads(out.read_text())["dependencies"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
