"""The engine's configuration: defaults, ``configure``, per-config screeners, and that the package stands alone
(a bare interpreter imports none of our other packages and screens without any environment variable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import moderation
from moderation import ModerationConfig, ModerationError

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = "加微信 一三八零零一三八零零零"
OUR_OTHER_PACKAGES = {"publisher", "core", "workers", "channels", "monitor"}

# Run in a fresh interpreter: imports the package from this checkout, optionally configures it, screens the
# sample and reports the verdict plus the top-level modules that were imported along the way.
_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import moderation
untouched = moderation.current_config() == moderation.ModerationConfig()
if sys.argv[2] == "rules":
    moderation.configure(moderation.ModerationConfig(classifier=False))
v = moderation.screen(sys.argv[3])
modules = sorted({m.split(".")[0] for m in sys.modules})
print(json.dumps({"untouched": untouched, "verdict": v.to_dict(), "modules": modules}))
"""


pytestmark = pytest.mark.usefixtures("screener_config")  # tests/conftest.py: the default is put back after each


def _probe(tmp_path: Path, mode: str, env: dict[str, str]) -> dict:
    # cwd outside the repository, so nothing is importable by accident from the working directory
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(ROOT), mode, SAMPLE],
        env={"PATH": os.environ.get("PATH", ""), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_defaults_are_the_shipped_setup() -> None:
    config = ModerationConfig()
    assert config.classifier is True
    assert config.model_dir is None and config.base_model is None  # shipped model, bundled e5-small
    assert config.cache_dir == Path("~/.cache/media-matrix")


def test_paths_are_coerced_and_bad_values_refused() -> None:
    config = ModerationConfig(model_dir="/m", base_model="", cache_dir="/c")
    assert config == ModerationConfig(model_dir=Path("/m"), base_model=None, cache_dir=Path("/c"))
    assert hash(config) == hash(ModerationConfig(model_dir=Path("/m"), cache_dir=Path("/c")))
    assert ModerationConfig(cache_dir="").cache_dir == Path("~/.cache/media-matrix")
    with pytest.raises(ModerationError, match="bool"):
        ModerationConfig(classifier="0")  # type: ignore[arg-type]
    with pytest.raises(ModerationError, match="model_dir"):
        ModerationConfig(model_dir=3)  # type: ignore[arg-type]
    with pytest.raises(ModerationError, match="ModerationConfig"):
        moderation.configure({"classifier": False})  # type: ignore[arg-type]


def test_configure_sets_the_default_and_drops_the_old_screener() -> None:
    rules = ModerationConfig(classifier=False)
    moderation.configure(rules)
    first = moderation.get_screener()
    assert first.config == rules and moderation.get_screener() is first
    assert moderation.screen("今天开会").model_version == "none"
    moderation.configure(ModerationConfig(classifier=False, cache_dir="/elsewhere"))
    second = moderation.get_screener()
    assert second is not first and second.config.cache_dir == Path("/elsewhere")


def test_get_screener_for_another_config_leaves_the_default_alone() -> None:
    moderation.configure(ModerationConfig(classifier=False))
    default = moderation.get_screener()
    other = ModerationConfig(classifier=False, model_dir="/not/used/while/off")
    screener = moderation.get_screener(other)
    assert screener is not default and screener.config == other
    assert moderation.get_screener(ModerationConfig(classifier=False, model_dir="/not/used/while/off")) is screener
    assert moderation.get_screener(ModerationConfig(classifier=False)) is default  # equal configs share one
    assert screener.lexicon is default.lexicon  # the compiled lexicon is shared, not rebuilt
    moderation.reset_screener()
    assert moderation.get_screener() is not default


def test_bare_interpreter_imports_none_of_our_packages(tmp_path: Path) -> None:
    out = _probe(tmp_path, "rules", {})
    assert out["untouched"]  # until someone calls configure(), the process default is ModerationConfig()
    assert not OUR_OTHER_PACKAGES & set(out["modules"]), out["modules"]
    assert "torch" not in out["modules"]  # rules only never pays for the model's imports
    verdict = moderation.Verdict.from_dict(out["verdict"])
    assert verdict.decision == "review" and verdict.model_version == "none"
    assert {h.category for h in verdict.hits} == {"ads", "privacy"}


@pytest.mark.slow
def test_bare_interpreter_defaults_load_the_model_and_ignore_the_environment(tmp_path: Path) -> None:
    # The variables that used to reach the engine through the application's settings now mean nothing to it:
    # the defaults apply (classifier on) whatever they say.
    env = {"MATRIX_MODERATION_CLASSIFIER": "0", "MATRIX_MODERATION_MODEL_DIR": str(tmp_path / "missing")}
    out = _probe(tmp_path, "defaults", env)
    assert out["untouched"]
    assert not OUR_OTHER_PACKAGES & set(out["modules"]), out["modules"]
    verdict = moderation.Verdict.from_dict(out["verdict"])
    assert verdict.model_version not in ("none", "") and verdict.decision in ("review", "reject")
    assert {"ads", "privacy"} <= {h.category for h in verdict.hits}
