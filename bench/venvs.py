"""One virtual environment per peer under bench/.venvs/<peer>, from bench/peers/<peer>/requirements.txt.

A venv is reused while its requirements file is unchanged (a stamp holds the file's hash); otherwise it is
(re)installed, printing one line per step and pip's own Collecting/Installing lines.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
PEERS = BENCH / "peers"
_SHOWN = ("Collecting", "Downloading", "Installing", "Successfully", "ERROR", "error:")


def python(peer: str) -> Path:
    return VENVS / peer / "bin" / "python"


def _say(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def ensure(peer: str, timeout_s: float = 900) -> Path:
    """The peer's venv directory, created and installed when missing or out of date."""
    requirements = PEERS / peer / "requirements.txt"
    venv = VENVS / peer
    stamp = venv / ".requirements.sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest and python(peer).exists():
        _say(f"venv {peer}: up to date ({venv.relative_to(BENCH.parent)})")
        return venv
    started = time.monotonic()
    if not python(peer).exists():
        _say(f"venv {peer}: creating {venv.relative_to(BENCH.parent)}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pins = [ln for ln in requirements.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    _say(f"venv {peer}: installing {', '.join(pins)}")
    proc = subprocess.Popen(
        [str(python(peer)), "-m", "pip", "install", "--progress-bar", "off", "-r", str(requirements)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(_SHOWN):
            print(f"[bench]   pip {peer}: {line.rstrip()[:160]}", flush=True)
    if proc.wait(timeout=timeout_s) != 0:
        raise RuntimeError(f"pip install for {peer} failed (exit {proc.returncode}); see the lines above")
    stamp.write_text(digest)
    _say(f"venv {peer}: ready in {time.monotonic() - started:.0f} s")
    return venv


def version(peer: str, distribution: str) -> str:
    """Installed version of a distribution inside a peer's venv ('' when absent)."""
    code = f"import importlib.metadata as m; print(m.version({distribution!r}))"
    done = subprocess.run([str(python(peer)), "-c", code], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else ""
