"""What a benchmark ran on (CPU model, cores, threads, GPU, library versions, the date), and writing its
record."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch


def package_version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def hardware(device: torch.device | None = None, packages: tuple[str, ...] = ()) -> dict:
    """CPU model (from /proc/cpuinfo), cores, torch threads, GPU, and the versions of `packages`.

    A model name can hide generations twice apart in speed ("AMD EPYC" on a Zen 3 or a Zen 5), so the CPU's
    family and model numbers and the vector instructions torch uses (AVX2, AVX512) come with it."""
    cpu = platform.processor() or platform.machine()
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "cpu family", "model"):
                fields.setdefault(key.strip(), value.strip())
            if not line.strip():  # the first processor's block is enough
                break
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    family = f"{fields['cpu family']}/{fields['model']}" if {"cpu family", "model"} <= fields.keys() else None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    device = device or torch.device("cpu")
    return {
        "cpu": cpu,
        "cpu_family_model": family,
        "cpu_isa": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none",
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{package.replace("-", "_"): package_version(package) for package in packages},
        "platform": platform.platform(),
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def write_json(path: Path, record: dict) -> Path:
    """Write a benchmark's record as indented JSON (its folder made if missing); returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
