"""Shared fixtures: real data from ../shared and Debian, one Ray cluster and one MLflow store per session."""
from __future__ import annotations

import os

# One thread each: on a 2-core box OpenMP spin-waits turn milliseconds into hundreds of them.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cifar_root() -> Path:
    from nsh.data.sources import find_cifar10_folder

    return find_cifar10_folder(None)
