"""Headless Chromium (Debian's ``chromium``) for tests: rendered DOM, console errors, screenshot."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=8000",
    "--enable-logging=stderr",
    "--v=0",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass(frozen=True)
class Rendered:
    dom: str
    """The DOM after scripts ran."""
    console_errors: list[str]
    """Console messages at error level and uncaught exceptions."""


def render(page: Path, screenshot: Path | None = None) -> Rendered:
    exe = chromium()
    assert exe is not None
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [exe, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if screenshot is not None:
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    exe,
                    *FLAGS,
                    f"--user-data-dir={profile}",
                    "--window-size=1200,1600",
                    f"--screenshot={screenshot}",
                    page.resolve().as_uri(),
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
    errors = [
        line
        for line in proc.stderr.splitlines()
        if "CONSOLE" in line and ("ERROR" in line.upper() or "Uncaught" in line)
    ]
    return Rendered(proc.stdout, errors)
