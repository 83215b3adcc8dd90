"""Where and with what a run ran: package versions, the source commit, the device (for the manifest)."""
from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

#: The packages whose versions decide a run's numbers (recorded in manifest["versions"]).
PACKAGES = ("mgt-bench", "torch", "torchvision", "diffusers", "transformers", "open_clip_torch", "torchmetrics",
            "numpy", "pandas", "scipy")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(source: Path | None = None) -> str:
    """The commit of the mgt-bench source tree (with '+dirty' when it has local changes), if it is a clone.

    Read without touching the user's repository: ``git status`` normally refreshes the index, which takes
    ``.git/index.lock`` and can make the user's own git command fail at that moment;
    ``--no-optional-locks`` (git ≥ 2.15) reads the index without refreshing it.
    """
    source = source or Path(__file__).resolve().parents[2]
    git = ["git", "--no-optional-locks"]
    try:
        commit = subprocess.run([*git, "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5)
        if commit.returncode != 0:
            return "unknown"
        dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], cwd=source,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def device_description(device: str) -> str:
    """"cuda:0 (NVIDIA H100 …)" or "cpu (x86_64, 2 threads)": the device and what it is."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def now() -> str:
    """The current UTC time to the second, ISO 8601 (the manifest's created/updated)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
