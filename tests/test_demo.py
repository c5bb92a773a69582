"""`gateway demo` as a new user runs it: safe with their files, and it leads on."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def demo(out: Path, duration: str = "2") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            *("--duration", duration, "--rate", "150"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    out = demo(mine)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert "not empty and not made by `gateway demo`" in out.stderr
    assert (mine / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"]


def test_demo_writes_a_snapshot_and_a_report_and_leads_on(tmp_path: Path) -> None:
    out_dir = tmp_path / "demo"
    out = demo(out_dir)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    live = [ln for ln in lines if ln.startswith("[live]")]
    assert live, out.stdout
    assert all(len(ln) <= 100 for ln in live), live
    # Held records are the demo's design (one device in five is in an unnamed region).
    assert "WARNING" not in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    metrics = (out_dir / "metrics.prom").read_text()
    assert "gateway_messages_total" in metrics
    report = (out_dir / "report.html").read_text()
    assert report.startswith("<!doctype html>") or "<html" in report
    assert any(ln.startswith("next: gateway ") for ln in lines)
    # Its own directory is emptied and refilled on the next run; a user's file in it stays.
    (out_dir / "notes.txt").write_text("mine")
    again = demo(out_dir, duration="1")
    assert again.returncode == 0, again.stderr
    assert (out_dir / "notes.txt").read_text() == "mine"
    assert (out_dir / "report.html").exists()
