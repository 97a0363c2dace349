"""The external key/value memory of one user: entries, duplicate policy, and exact save/load.

Files are safetensors (tensors) with a JSON manifest in the safetensors metadata: nothing is ever
unpickled. A memory remembers the model, hidden size and layers it was written with.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .errors import BindingError, MemoryFileError

FORMAT = "fastmem-memory"
FORMAT_VERSION = 1
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class MemoryEntry:
    word: str
    context: str
    label: str
    label_id: int
    write_text: str  # the write statement's prefix that produced key and value
    word_span: tuple[int, int]  # character span of the word in write_text (to re-key at another layer)
    context_span: tuple[int, int] | None
    key: torch.Tensor  # [d] hidden state at the word's last token, at the bank's key layer
    context_key: torch.Tensor  # [d] mean hidden state over the context phrase, at the context layer
    symbol_key: torch.Tensor  # [d] hidden state at the word's last token, at the symbol layer
    value: torch.Tensor  # [d] correction vector

    @property
    def slot(self) -> tuple[str, str]:
        return (self.word, self.context)


_TENSOR_FIELDS = ("key", "context_key", "symbol_key", "value")


@dataclass
class MemoryBank:
    """Entries in insertion order; at most one entry per (word, context)."""

    model_name: str
    hidden_size: int
    key_layer: int
    context_layer: int
    symbol_layer: int
    value_steps: int
    entries: list[MemoryEntry] = field(default_factory=list)
    _stacked: dict | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, word: str, context: str) -> int | None:
        for i, e in enumerate(self.entries):
            if e.slot == (word, context):
                return i
        return None

    def add(self, entry: MemoryEntry, on_duplicate: str = "replace") -> str:
        """Add an entry; returns 'added', 'replaced' or 'kept' (the old entry stays)."""
        if entry.value.shape != (self.hidden_size,):
            raise BindingError(f"Entry has hidden size {tuple(entry.value.shape)}, the memory {self.hidden_size}.")
        at = self.find(*entry.slot)
        if at is None:
            self.entries.append(entry)
            status = "added"
        elif on_duplicate == "replace":
            self.entries[at] = entry
            status = "replaced"
        elif on_duplicate == "keep":
            return "kept"
        else:
            raise BindingError(f"'{entry.word}' in '{entry.context}' is already in memory.")
        self._stacked = None
        return status

    def remove(self, index: int) -> MemoryEntry:
        if not 0 <= index < len(self.entries):
            raise BindingError(f"No memory entry number {index}.")
        self._stacked = None
        return self.entries.pop(index)

    def clear(self) -> None:
        self.entries.clear()
        self._stacked = None

    def copy(self) -> "MemoryBank":
        return replace(self, entries=list(self.entries), _stacked=None)

    def stacked(self) -> dict[str, torch.Tensor]:
        """Tensors [M, d] of every entry (cached until the next change)."""
        if self._stacked is None:
            d = self.hidden_size
            self._stacked = {
                f: torch.stack([getattr(e, f) for e in self.entries]) if self.entries else torch.zeros(0, d)
                for f in _TENSOR_FIELDS
            }
            self._stacked["label_id"] = torch.tensor([e.label_id for e in self.entries], dtype=torch.long)
        return self._stacked

    # -- files --------------------------------------------------------------------------------
    def to_bytes(self, projector_id: str | None = None) -> bytes:
        meta = {k: getattr(self, k) for k in ("model_name", "hidden_size", "key_layer", "context_layer",
                                              "symbol_layer", "value_steps")}
        meta["projector_id"] = projector_id
        meta["entries"] = [{k: v for k, v in asdict(e).items() if k not in _TENSOR_FIELDS} for e in self.entries]
        tensors = {f: t.contiguous().float() for f, t in self.stacked().items() if f != "label_id"}
        manifest = json.dumps(meta, ensure_ascii=False)
        return st_save(tensors, metadata={"format": FORMAT, "version": str(FORMAT_VERSION), "manifest": manifest})

    @classmethod
    def from_bytes(cls, data: bytes, expect_hidden_size: int | None = None) -> tuple["MemoryBank", str | None]:
        """Parse a memory file; returns (bank, projector id). Raises MemoryFileError on anything odd."""
        if len(data) > MAX_FILE_BYTES:
            raise MemoryFileError(f"The file is {len(data) / 2**20:.0f} MiB; memory files are at most "
                                  f"{MAX_FILE_BYTES // 2**20} MiB.")
        try:
            tensors = st_load(bytes(data))
            header = _read_header(data)
        except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError, OverflowError) as exc:
            raise MemoryFileError(f"This is not a fastmem memory file (not valid safetensors: {exc}).") from exc
        if header.get("format") != FORMAT:
            raise MemoryFileError("This safetensors file is not a fastmem memory file.")
        if header.get("version") != str(FORMAT_VERSION):
            raise MemoryFileError(f"Memory file format version {header.get('version')!r} is not supported "
                                  f"(this fastmem reads version {FORMAT_VERSION}).")
        try:
            meta = json.loads(header["manifest"])
            bank = cls(str(meta["model_name"]), int(meta["hidden_size"]), int(meta["key_layer"]),
                       int(meta["context_layer"]), int(meta["symbol_layer"]), int(meta["value_steps"]))
            rows = meta["entries"]
            m, d = len(rows), bank.hidden_size
            for f in _TENSOR_FIELDS:
                if tuple(tensors[f].shape) != (m, d) and not (m == 0 and tensors[f].numel() == 0):
                    raise MemoryFileError(f"Tensor '{f}' has shape {tuple(tensors[f].shape)}, expected {(m, d)}.")
                if not torch.isfinite(tensors[f]).all():
                    raise MemoryFileError(f"Tensor '{f}' holds NaN or infinite values.")
            for i, row in enumerate(rows):
                bank.entries.append(MemoryEntry(
                    str(row["word"]), str(row["context"]), str(row["label"]), int(row["label_id"]),
                    str(row["write_text"]), _span(row["word_span"]), _span(row.get("context_span")),
                    *(tensors[f][i].clone() for f in _TENSOR_FIELDS)))
        except MemoryFileError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MemoryFileError(f"The memory file's manifest is incomplete or malformed ({exc!r}).") from exc
        if len({e.slot for e in bank.entries}) != len(bank.entries):
            raise MemoryFileError("The memory file has two entries for the same word and context.")
        if expect_hidden_size is not None and bank.hidden_size != expect_hidden_size:
            raise MemoryFileError(f"This memory was written with '{bank.model_name}' (hidden size "
                                  f"{bank.hidden_size}); the loaded model has hidden size {expect_hidden_size}.")
        return bank, meta.get("projector_id")


def _span(raw) -> tuple[int, int] | None:
    if raw is None:
        return None
    start, end = (int(x) for x in raw)
    if not 0 <= start < end:
        raise ValueError(f"bad span {raw!r}")
    return (start, end)


def _read_header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("bad header length")
    return json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__", {}) or {}
