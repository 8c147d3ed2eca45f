"""With CI=true a skip that is not about optional hardware or a cluster launcher fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import pytest

def test_missing_package():
    pytest.skip("needs espeak-ng")

def test_no_gpu():
    pytest.skip("needs a CUDA GPU")
"""


def _run(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text((ROOT / "tests" / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {"PATH": "/usr/bin:/bin", "CI": ci, "HOME": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_ci_turns_set_up_skips_into_failures(tmp_path):
    proc = _run(tmp_path, "true")
    assert proc.returncode == 1, proc.stdout
    assert "1 failed, 1 skipped" in proc.stdout
    assert "skipped in CI (needs espeak-ng)" in proc.stdout


def test_outside_ci_skips_stay_skips(tmp_path):
    proc = _run(tmp_path, "")
    assert proc.returncode == 0, proc.stdout
    assert "2 skipped" in proc.stdout
