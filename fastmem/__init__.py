"""fastmem: forward-derived fast memory on a frozen causal LM (no Streamlit imports here).

The package in four parts: `model/` (loading a frozen LM, its states, decoding), `memory/` (prompts and keying,
values, modes, the memory and its file), `eval/` (suites, probes, metrics and the runs that measure), `demo/`
(presets, share documents, explanations and charts for the app); `Lab` (`lab.py`) is the facade over them.
"""
from fastmem.errors import (BindingError, FastmemError, LabelError, MemoryFileError, ModelLoadError, SettingsError,
                            SuiteError)
from fastmem.demo.share import ShareFileError, ShareView
from fastmem.eval.suite import Suite, load_suite
from fastmem.lab import Lab
from fastmem.memory.bank import MemoryBank, MemoryEntry
from fastmem.memory.keying import KeyedQuestion
from fastmem.memory.modes import DEFAULT_MODE, MODES
from fastmem.model.lm import FrozenLM
from fastmem.model.loading import DEFAULT_MODEL, OFFLINE_ALIAS
from fastmem.records import AskResult, WriteResult

__all__ = ["Lab", "AskResult", "WriteResult", "FrozenLM", "MemoryBank", "MemoryEntry", "KeyedQuestion", "ShareView",
           "MODES", "DEFAULT_MODE", "DEFAULT_MODEL", "OFFLINE_ALIAS", "Suite", "load_suite", "FastmemError",
           "ModelLoadError", "BindingError", "LabelError", "SettingsError", "MemoryFileError", "ShareFileError",
           "SuiteError"]
