import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from tiny import tiny_llama, tiny_neox, word_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return word_tokenizer()


@pytest.fixture(scope="session")
def neox(tokenizer):
    return tiny_neox(tokenizer)


@pytest.fixture(scope="session")
def llama(tokenizer):
    return tiny_llama(tokenizer)


@pytest.fixture(scope="session")
def smollm2_lab():
    """The real offline model with its calibration (cached under FASTMEM_CACHE), loaded once."""
    from fastmem import Lab

    return Lab.load("smollm2", device="cpu")


@pytest.fixture(scope="session")
def tiny_lab(neox):
    """A Lab on the tiny GPT-NeoX, calibrated on the built-in suite (~12 s, once per session)."""
    from fastmem.eval.calibrate import calibrate
    from fastmem.lab import Lab
    from fastmem.eval.suite import load_suite

    cal, geo = calibrate(neox, load_suite(), show_progress=False)
    return Lab(neox, cal, geo)
