"""fastmem: forward-derived fast memory on a frozen causal LM (no Streamlit imports here)."""
from .errors import (BindingError, FastmemError, LabelError, MemoryFileError, ModelLoadError, SettingsError,
                     SuiteError)
from .lab import AskResult, Lab, WriteResult
from .lm import FrozenLM
from .memory import MemoryBank, MemoryEntry
from .retrieval import DEFAULT_MODE, MODES
from .suite import Suite, load_suite

__all__ = ["Lab", "AskResult", "WriteResult", "FrozenLM", "MemoryBank", "MemoryEntry", "MODES", "DEFAULT_MODE", "Suite",
           "load_suite", "FastmemError", "ModelLoadError", "BindingError", "LabelError", "SettingsError",
           "MemoryFileError", "SuiteError"]
