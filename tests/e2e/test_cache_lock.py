"""Corpus caches under concurrency and crashes: two processes building the same corpus do not
corrupt it (one builds, the other waits and reuses it), and a build killed half-way leaves
nothing that is later taken as a finished corpus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BUILDER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    from toolkit.data.cache import locked_build

    final, log, delay = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    with locked_build(final) as tmp:
        if tmp is not None:
            with open(log, "a") as fh:
                fh.write(f"build {os.getpid()}\\n")
            for i in range(5):
                (tmp / f"part{i}.txt").write_text(str(i) * 1000)
                time.sleep(delay)
            (tmp / "manifest.json").write_text(json.dumps({"parts": 5, "pid": os.getpid()}))
    print(json.loads((final / "manifest.json").read_text())["pid"])
    """
)


def spawn(final: Path, log: Path, delay: float) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", BUILDER, str(final), str(log), str(delay)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_two_processes_build_once(tmp_path):
    final, log = tmp_path / "corpus", tmp_path / "builds.log"
    procs = [spawn(final, log, 0.2), spawn(final, log, 0.2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    assert len(log.read_text().splitlines()) == 1  # the second waited, then reused it
    assert outs[0][0] == outs[1][0]  # both read the same finished corpus
    assert sorted(p.name for p in final.iterdir()) == [
        "manifest.json", *[f"part{i}.txt" for i in range(5)]
    ]  # fmt: skip
    assert not list(tmp_path.glob(".corpus.tmp-*"))


def test_killed_build_leaves_no_complete_cache(tmp_path):
    final, log = tmp_path / "corpus", tmp_path / "builds.log"
    proc = spawn(final, log, 1.0)
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".corpus.tmp-*/part0.txt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not final.exists()  # half-built data stays in a temp folder, never in place
    assert list(tmp_path.glob(".corpus.tmp-*"))
    again = spawn(final, log, 0.0)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert len(log.read_text().splitlines()) == 2  # rebuilt, not taken as complete
    assert json.loads((final / "manifest.json").read_text())["parts"] == 5
    assert not list(tmp_path.glob(".corpus.tmp-*"))  # the stale temp folder was removed


def test_concurrent_embedded_corpus_builds(tmp_path):
    """The real builder (atomic_dir under the lock): two processes, one consistent corpus."""
    code = (
        "from recipes.sentiment.corpus import build_sentiment_corpus as b;"
        "print(b('movie', limit=40, seed=0))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ATTN_TOOLKIT_CACHE": str(tmp_path / "cache")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-2000:] for _, e in outs]
    folder = Path(outs[0][0].strip().splitlines()[-1])
    assert folder == Path(outs[1][0].strip().splitlines()[-1])
    manifest = json.loads((folder / "manifest.json").read_text())
    for split in ("train", "valid", "test"):
        lines = (folder / f"{split}.jsonl").read_text().splitlines()
        assert all(json.loads(line)["text"] for line in lines)
    assert manifest
    assert not list(folder.parent.glob(f".{folder.name}.tmp-*"))
