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

from .errors import BindingError, MemoryFileError
from .fields import MAX_CONTEXT, MAX_LABEL, MAX_QUESTION, MAX_WORD, stored_field, stored_text
from .lm import MAX_LABEL_TOKENS

FORMAT = "fastmem-memory"
FORMAT_VERSION = 3  # 2 added token-level keys, 3 multi-token labels (a value per label token)
READABLE_VERSIONS = ("1", "2", "3")  # version 1 files are re-keyed by Lab.import_memory
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class MemoryEntry:
    word: str
    context: str
    label: str
    label_id: int  # the label's first token (its only one for a one-token label)
    write_text: str  # the write statement's prefix that produced key and value
    word_span: tuple[int, int]  # character span of the word in write_text (to re-key at another layer)
    context_span: tuple[int, int] | None
    key: torch.Tensor  # [d] hidden state at the word's last token, at the bank's key layer
    context_key: torch.Tensor  # [d] mean hidden state over the context phrase, at the context layer
    symbol_key: torch.Tensor  # [d] hidden state at the word's last token, at the symbol layer
    value: torch.Tensor  # [d] correction for the label's first token (the one retrieval hands out)
    word_tokens: torch.Tensor | None = None  # [tw, d] every word token's state at the bank's token layer
    context_tokens: torch.Tensor | None = None  # [tc, d] every context token's state at the token layer
    tail_ids: tuple[int, ...] = ()  # the label's later tokens (none for a one-token label)
    tail_values: torch.Tensor | None = None  # [len(tail_ids), d] their corrections, in order

    @property
    def slot(self) -> tuple[str, str]:
        return (self.word, self.context)

    @property
    def label_ids(self) -> tuple[int, ...]:
        return (self.label_id,) + tuple(self.tail_ids)

    @property
    def values(self) -> torch.Tensor:
        """[n, d]: one correction per label token."""
        return self.value.unsqueeze(0) if not self.tail_ids else torch.cat([self.value.unsqueeze(0), self.tail_values])


_TENSOR_FIELDS = ("key", "context_key", "symbol_key", "value")
_TOKEN_FIELDS = ("word_tokens", "context_tokens")  # variable length: stored flat, with a count per entry
_TAIL = "tail_values"  # variable length too; its count per entry is len(tail_ids)


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
    token_layer: int = -1  # layer of the entries' token keys; -1: none (a version-1 file before re-keying)
    disabled: set[tuple[str, str]] = field(default_factory=set)  # slots switched off (kept, never retrieved)
    _stacked: dict | None = field(default=None, repr=False, compare=False)
    _slots: dict | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.entries)

    def find(self, word: str, context: str) -> int | None:
        """Index of the entry for (word, context): O(1) through a slot index rebuilt after removals."""
        if self._slots is None or len(self._slots) != len(self.entries):
            self._slots = {e.slot: i for i, e in enumerate(self.entries)}
        return self._slots.get((word, context))

    def is_enabled(self, index: int) -> bool:
        return self.entries[index].slot not in self.disabled

    def set_enabled(self, index: int, enabled: bool) -> None:
        """Switch an entry off (it stays in memory and in files, but is never retrieved) or back on."""
        if not 0 <= index < len(self.entries):
            raise BindingError(f"No memory entry number {index}.")
        slot = self.entries[index].slot
        (self.disabled.discard if enabled else self.disabled.add)(slot)
        if self._stacked is not None:  # in place: derived key tensors stay valid
            self._stacked["enabled"][index] = bool(enabled)

    def add(self, entry: MemoryEntry, on_duplicate: str = "replace") -> str:
        """Add an entry; returns 'added', 'replaced' or 'kept' (the old entry stays)."""
        if entry.value.shape != (self.hidden_size,):
            raise BindingError(f"Entry has hidden size {tuple(entry.value.shape)}, the memory {self.hidden_size}.")
        tail_shape = None if entry.tail_values is None else tuple(entry.tail_values.shape)
        if tail_shape != ((len(entry.tail_ids), self.hidden_size) if entry.tail_ids else None):
            raise BindingError(f"Entry has {len(entry.tail_ids)} later label tokens but tail values of shape "
                               f"{tail_shape}.")
        if self.token_layer >= 0 and (entry.word_tokens is None or entry.context_tokens is None):
            raise BindingError("This memory keys entries token by token; the entry has no token keys.")
        at = self.find(*entry.slot)
        if at is None:
            self.entries.append(entry)
            if self._slots is not None:
                self._slots[entry.slot] = len(self.entries) - 1
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
        self._stacked = self._slots = None
        entry = self.entries.pop(index)
        self.disabled.discard(entry.slot)
        return entry

    def clear(self) -> None:
        self.entries.clear()
        self.disabled.clear()
        self._stacked = self._slots = None

    def copy(self) -> "MemoryBank":
        return replace(self, entries=list(self.entries), disabled=set(self.disabled), _stacked=None, _slots=None)

    def stacked(self) -> dict[str, torch.Tensor]:
        """Tensors [M, d] of every entry (cached until the next change)."""
        if self._stacked is None:
            d = self.hidden_size
            self._stacked = {
                f: torch.stack([getattr(e, f) for e in self.entries]) if self.entries else torch.zeros(0, d)
                for f in _TENSOR_FIELDS
            }
            self._stacked["label_id"] = torch.tensor([e.label_id for e in self.entries], dtype=torch.long)
            self._stacked["enabled"] = torch.tensor([e.slot not in self.disabled for e in self.entries],
                                                    dtype=torch.bool)
            if self.token_layer >= 0:
                for f in _TOKEN_FIELDS:  # flat [S, d] plus the entry each row belongs to
                    parts = [getattr(e, f) for e in self.entries]
                    self._stacked[f] = torch.cat(parts) if parts else torch.zeros(0, d)
                    self._stacked[f + "_owner"] = torch.repeat_interleave(
                        torch.arange(len(parts)), torch.tensor([len(t) for t in parts], dtype=torch.long))
        return self._stacked

    def cached(self, key: str, build):
        """Something derived from the stacked entries (e.g. projected keys), kept until the next change."""
        stacked = self.stacked()
        if key not in stacked:
            stacked[key] = build(stacked)
        return stacked[key]

    # -- files --------------------------------------------------------------------------------
    def to_bytes(self, projector_id: str | None = None) -> bytes:
        """The memory as a safetensors file. Deterministic: the same memory always gives the same bytes."""
        meta = {k: getattr(self, k) for k in ("model_name", "hidden_size", "key_layer", "context_layer",
                                              "symbol_layer", "value_steps", "token_layer")}
        meta["projector_id"] = projector_id
        meta["entries"] = [{k: v for k, v in asdict(e).items() if k not in _TENSOR_FIELDS + _TOKEN_FIELDS + (_TAIL,)}
                           | ({f"{f}_count": len(getattr(e, f)) for f in _TOKEN_FIELDS} if self.token_layer >= 0 else {})
                           for e in self.entries]
        meta["disabled"] = sorted([list(slot) for slot in self.disabled if self.find(*slot) is not None])
        fields = _TENSOR_FIELDS + (_TOKEN_FIELDS if self.token_layer >= 0 else ())
        tensors = {f: self.stacked()[f].contiguous().float() for f in fields}
        tails = [e.tail_values for e in self.entries if e.tail_ids]
        tensors[_TAIL] = torch.cat(tails) if tails else torch.zeros(0, self.hidden_size)
        manifest = json.dumps(meta, ensure_ascii=False)
        return _st_save(tensors, {"format": FORMAT, "version": str(FORMAT_VERSION), "manifest": manifest})

    @classmethod
    def from_bytes(cls, data: bytes, expect_hidden_size: int | None = None) -> tuple["MemoryBank", str | None]:
        """Parse a memory file; returns (bank, projector id). Raises MemoryFileError on anything odd.

        Only safetensors and JSON are parsed: nothing is unpickled, unzipped or executed.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise MemoryFileError(f"A memory file must be given as bytes, not {type(data).__name__}.")
        if len(data) > MAX_FILE_BYTES:
            raise MemoryFileError(f"The file is {len(data) / 2**20:.0f} MiB; memory files are at most "
                                  f"{MAX_FILE_BYTES // 2**20} MiB.")
        data = bytes(data)
        try:
            tensors = st_load(data)
            header = _read_header(data)
        except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError, TypeError, AttributeError,
                RecursionError) as exc:
            kind = _sniff(data)  # only named once safetensors has failed: a valid header may start alike
            if kind:
                raise MemoryFileError(f"This is not a fastmem memory file: it looks like {kind}. Memory files "
                                      "are the .safetensors files fastmem exports.") from exc
            raise MemoryFileError(f"This is not a fastmem memory file (not valid safetensors: {exc}).") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise MemoryFileError("This safetensors file is not a fastmem memory file.")
        if header.get("version") not in READABLE_VERSIONS:
            raise MemoryFileError(f"Memory file format version {header.get('version')!r} is not supported "
                                  f"(this fastmem reads versions {', '.join(READABLE_VERSIONS)}).")
        try:
            meta = json.loads(header["manifest"])
            bank = cls(_text(meta["model_name"]), *(_int(meta[k]) for k in (
                "hidden_size", "key_layer", "context_layer", "symbol_layer", "value_steps")))
            if bank.hidden_size < 1 or min(bank.key_layer, bank.context_layer, bank.symbol_layer) < 0 \
                    or bank.value_steps < 1:
                raise ValueError("hidden size, layers or value steps out of range")
            bank.token_layer = _int(meta.get("token_layer", -1)) if header["version"] != "1" else -1
            if bank.token_layer < -1:
                raise ValueError("token layer out of range")
            projector_id = meta.get("projector_id")
            if projector_id is not None and not isinstance(projector_id, str):
                raise ValueError("projector_id is not text")
            rows = meta["entries"]
            if not isinstance(rows, list):
                raise ValueError("entries is not a list")
            m, d = len(rows), bank.hidden_size
            for f in _TENSOR_FIELDS:
                if tensors[f].dtype != torch.float32:
                    raise MemoryFileError(f"Tensor '{f}' is {tensors[f].dtype}; memory files store float32.")
                if tuple(tensors[f].shape) != (m, d) and not (m == 0 and tensors[f].numel() == 0):
                    raise MemoryFileError(f"Tensor '{f}' has shape {tuple(tensors[f].shape)}, expected {(m, d)}.")
                if not torch.isfinite(tensors[f]).all():
                    raise MemoryFileError(f"Tensor '{f}' holds NaN or infinite values.")
            token_fields = _TOKEN_FIELDS if bank.token_layer >= 0 else ()
            tails = [_tail_ids(row.get("tail_ids", [])) if header["version"] == "3" else () for row in rows]
            total_tail = sum(len(t) for t in tails)
            tail_values = tensors.get(_TAIL, torch.zeros(0, d))
            if tail_values.dtype != torch.float32 or tuple(tail_values.shape) != (total_tail, d) \
                    and not (total_tail == 0 and tail_values.numel() == 0) or not torch.isfinite(tail_values).all():
                raise MemoryFileError(f"Tensor '{_TAIL}' does not hold {total_tail} finite float32 rows of size {d}.")
            tail_start = 0
            starts = dict.fromkeys(token_fields, 0)
            for f in token_fields:
                total = sum(_int(row[f"{f}_count"]) for row in rows)
                if tensors[f].dtype != torch.float32 or tuple(tensors[f].shape) != (total, d) \
                        and not (total == 0 and tensors[f].numel() == 0) or not torch.isfinite(tensors[f]).all():
                    raise MemoryFileError(f"Tensor '{f}' does not hold {total} finite float32 rows of size {d}.")
            for i, row in enumerate(rows):
                spans = {}
                for f in token_fields:
                    count = _int(row[f"{f}_count"])
                    if count < 1:
                        raise ValueError(f"entry {i} has no {f}")
                    spans[f] = tensors[f][starts[f]:starts[f] + count].clone()
                    starts[f] += count
                entry = MemoryEntry(
                    stored_field("word", row["word"], MAX_WORD), stored_field("context", row["context"], MAX_CONTEXT),
                    stored_field("label", row["label"], MAX_LABEL), _int(row["label_id"]),
                    stored_text("write text", row["write_text"], MAX_QUESTION), _span(row["word_span"]), _span(row.get("context_span")),
                    *(tensors[f][i].clone() for f in _TENSOR_FIELDS), **spans, tail_ids=tails[i],
                    tail_values=tail_values[tail_start:tail_start + len(tails[i])].clone() if tails[i] else None)
                tail_start += len(tails[i])
                if min(entry.label_ids) < 0 or not entry.word or not entry.context or not entry.label:
                    raise ValueError(f"entry {i} has an empty field or a negative label id")
                for span in (entry.word_span, entry.context_span):
                    if span is not None and span[1] > len(entry.write_text):
                        raise ValueError(f"entry {i} has a span outside its write text")
                bank.entries.append(entry)
        except MemoryFileError:
            raise
        except BindingError as exc:
            raise MemoryFileError(f"The memory file holds a text that would be refused if typed: {exc}") from exc
        except (KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
            raise MemoryFileError(f"The memory file's manifest is incomplete or malformed ({exc!r}).") from exc
        if len({e.slot for e in bank.entries}) != len(bank.entries):
            raise MemoryFileError("The memory file has two entries for the same word and context.")
        disabled = meta.get("disabled", [])
        if not isinstance(disabled, list) or any(
                not isinstance(s, list) or len(s) != 2 or not all(isinstance(x, str) for x in s) for s in disabled):
            raise MemoryFileError("The memory file's list of switched-off entries is malformed.")
        bank.disabled = {tuple(s) for s in disabled if bank.find(*s) is not None}
        if expect_hidden_size is not None and bank.hidden_size != expect_hidden_size:
            raise MemoryFileError(f"This memory was written with '{bank.model_name}' (hidden size "
                                  f"{bank.hidden_size}); the loaded model has hidden size {expect_hidden_size}.")
        return bank, projector_id


def _sniff(data: bytes) -> str | None:
    """Name a few well-known file kinds a user may upload by mistake (never opened further)."""
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "a zip archive (e.g. a torch .pt/.pth checkpoint)"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (pickles are never loaded)"
    if data[:2] == b"\x1f\x8b":
        return "a gzip file"
    if data[:1] in (b"{", b"["):
        return "a JSON file"
    return None


def _text(raw) -> str:
    if not isinstance(raw, str):
        raise TypeError(f"expected text, got {type(raw).__name__}")
    return raw


def _int(raw) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise TypeError(f"expected an integer, got {raw!r}"[:80])
    return raw


def _tail_ids(raw) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) >= MAX_LABEL_TOKENS:
        raise ValueError(f"bad tail_ids {raw!r}"[:80])
    return tuple(_int(x) for x in raw)


def _span(raw) -> tuple[int, int] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"bad span {raw!r}"[:80])
    start, end = (_int(x) for x in raw)
    if not 0 <= start < end:
        raise ValueError(f"bad span {raw!r}")
    return (start, end)


def _st_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes with a sorted, hence reproducible, header (safetensors' own writer orders the
    metadata at random). Every tensor is float32 and contiguous."""
    header: dict = {"__metadata__": dict(sorted(metadata.items()))}
    blobs, offset = [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to(torch.float32).contiguous().cpu()
        blob = t.numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    return len(head).to_bytes(8, "little") + head + b"".join(blobs)


def _read_header(data: bytes) -> dict:
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("bad header length")
    return json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__", {}) or {}
