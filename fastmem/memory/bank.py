"""The external key/value memory of one user: its entries, the tensors derived from them, and consistent views.

An entry holds what was written (the word, context, label and the statement that made it) and the value, one
correction per label token. Its keys are hidden states read from the statement; an entry loaded from a file
carries none, and `engine.ensure_keys` reads them again from the statement when a mode needs them (the keys
of slot-free reading come from the word and context alone, `spans.py`).

Every change (add, remove, clear, a switch on or off) makes a new version under the memory's lock; the tensors
derived from the entries (stacked values, projected keys, ...) belong to one version and are rebuilt after a
change, so they cannot go stale. `snapshot()` is a read-only view of one version that asks, exports and
explanations use, so a question or a file never sees half a change.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from fastmem.errors import BindingError

DENSE_KEYS = ("key", "context_key", "symbol_key")  # [d] each, at the memory's key / context / symbol layer
TOKEN_KEYS = ("word_tokens", "context_tokens")  # [t, d] each, at the memory's token layer


@dataclass(frozen=True)
class MemoryEntry:
    word: str
    context: str
    label: str
    label_id: int  # the label's first token (its only one for a one-token label)
    write_text: str  # the write statement's prefix that produced keys and value
    word_span: tuple[int, int]  # character span of the word in write_text (keys are read again from it)
    context_span: tuple[int, int] | None
    value: torch.Tensor  # [d] correction for the label's first token (the one retrieval hands out)
    tail_ids: tuple[int, ...] = ()  # the label's later tokens (none for a one-token label)
    tail_values: torch.Tensor | None = None  # [len(tail_ids), d] their corrections, in order
    key: torch.Tensor | None = None  # [d] hidden state at the word's last token, at the key layer
    context_key: torch.Tensor | None = None  # [d] mean hidden state over the context phrase, at the context layer
    symbol_key: torch.Tensor | None = None  # [d] hidden state at the word's last token, at the symbol layer
    word_tokens: torch.Tensor | None = None  # [tw, d] every word token's state at the token layer
    context_tokens: torch.Tensor | None = None  # [tc, d] every context token's state at the token layer

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

    def has(self, fields) -> bool:
        return all(getattr(self, f) is not None for f in fields)


class MemoryBank:
    """Entries in insertion order; at most one entry per (word, context). Safe to share between threads: changes
    and reads of a version are atomic with respect to each other."""

    def __init__(self, model_name: str, hidden_size: int, key_layer: int, context_layer: int, symbol_layer: int,
                 value_steps: int, entries=(), token_layer: int = -1, disabled=()):
        self.model_name, self.hidden_size = model_name, hidden_size
        self.key_layer, self.context_layer, self.symbol_layer = key_layer, context_layer, symbol_layer
        self.value_steps, self.token_layer = value_steps, token_layer
        self._entries: tuple[MemoryEntry, ...] = ()
        self._disabled: frozenset = frozenset()
        self._slots: dict[tuple[str, str], int] = {}
        self._derived: dict | None = None
        self._lock = threading.RLock()
        self._frozen = False
        self.add_many(entries)
        self._changed(disabled=frozenset(disabled))

    # -- reading ------------------------------------------------------------------------------
    @property
    def entries(self) -> tuple[MemoryEntry, ...]:
        return self._entries

    @property
    def disabled(self) -> frozenset:
        """Slots switched off: kept in memory and in files, never retrieved."""
        return self._disabled

    def __len__(self) -> int:
        return len(self._entries)

    def find(self, word: str, context: str) -> int | None:
        return self._slots.get((word, context))

    def is_enabled(self, index: int) -> bool:
        return self._entries[index].slot not in self._disabled

    def has_keys(self, fields) -> bool:
        return all(e.has(fields) for e in self._entries)

    def snapshot(self) -> "MemoryBank":
        """A read-only view of this version, sharing its entries and derived tensors."""
        with self._lock:
            if self._frozen:
                return self
            view = MemoryBank.__new__(MemoryBank)
            view.__dict__.update(self.__dict__)
            view._frozen, view._lock = True, threading.RLock()
            if self._derived is None:
                self._derived = {}
            view._derived = self._derived  # the same dict: what one builds, the other finds
            return view

    def copy(self) -> "MemoryBank":
        """An independent, writable memory with the same entries."""
        with self._lock:
            return MemoryBank(self.model_name, self.hidden_size, self.key_layer, self.context_layer,
                              self.symbol_layer, self.value_steps, self._entries, self.token_layer, self._disabled)

    def stacked(self) -> dict[str, torch.Tensor]:
        """Tensors of every entry: `value` [M, d], `label_id`, `enabled`, and each key field that every entry has
        ([M, d], or flat [S, d] with its `<field>_owner` for token keys). Built once per version."""
        with self._lock:
            if self._derived is None:
                self._derived = {}
            if "value" not in self._derived:
                self._derived.update(self._stack())
            return self._derived

    def cached(self, key: str, build):
        """Something derived from the stacked entries (e.g. projected keys), kept for this version."""
        stacked = self.stacked()
        with self._lock:
            if key not in stacked:
                stacked[key] = build(stacked)
            return stacked[key]

    def _stack(self) -> dict[str, torch.Tensor]:
        d, entries = self.hidden_size, self._entries
        out = {"value": torch.stack([e.value for e in entries]) if entries else torch.zeros(0, d),
               "label_id": torch.tensor([e.label_id for e in entries], dtype=torch.long),
               "enabled": torch.tensor([e.slot not in self._disabled for e in entries], dtype=torch.bool)}
        for f in DENSE_KEYS:
            if all(getattr(e, f) is not None for e in entries):
                out[f] = torch.stack([getattr(e, f) for e in entries]) if entries else torch.zeros(0, d)
        for f in TOKEN_KEYS:  # flat [S, d] plus the entry each row belongs to
            parts = [getattr(e, f) for e in entries]
            if all(p is not None for p in parts):
                out[f] = torch.cat(parts) if parts else torch.zeros(0, d)
                out[f + "_owner"] = torch.repeat_interleave(torch.arange(len(parts)),
                                                            torch.tensor([len(t) for t in parts], dtype=torch.long))
        return out

    # -- changing -----------------------------------------------------------------------------
    def _writable(self) -> None:
        if self._frozen:
            raise BindingError("This is a read-only view of a memory (a snapshot): change the memory itself.")

    def _changed(self, entries: tuple | None = None, disabled: frozenset | None = None) -> None:
        if entries is not None:
            self._entries = entries
            self._slots = {e.slot: i for i, e in enumerate(entries)}
            self._derived = None
        if disabled is not None:
            self._disabled = frozenset(s for s in disabled if s in self._slots)
            if self._derived is not None and entries is None:  # a switch: derived keys stay valid
                enabled = torch.tensor([e.slot not in self._disabled for e in self._entries], dtype=torch.bool)
                self._derived = {**self._derived, "enabled": enabled}

    def set_enabled(self, index: int, enabled: bool) -> None:
        """Switch an entry off (it stays in memory and in files, but is never retrieved) or back on."""
        with self._lock:
            self._writable()
            if not 0 <= index < len(self._entries):
                raise BindingError(f"No memory entry number {index}.")
            slot = self._entries[index].slot
            self._changed(disabled=self._disabled - {slot} if enabled else self._disabled | {slot})

    def add(self, entry: MemoryEntry, on_duplicate: str = "replace") -> str:
        """Add an entry; returns 'added', 'replaced' or 'kept' (the old entry stays)."""
        return self.add_many([entry], on_duplicate)[0]

    def add_many(self, entries, on_duplicate: str = "replace") -> list[str]:
        """Add entries as one change (an export never sees some of them without the others)."""
        if on_duplicate not in ("replace", "keep", "error"):
            raise BindingError("on_duplicate must be 'replace', 'keep' or 'error'.")
        entries = list(entries)
        for entry in entries:
            self._check(entry)
        with self._lock:
            self._writable()
            rows, slots, statuses = list(self._entries), dict(self._slots), []
            for entry in entries:
                at = slots.get(entry.slot)
                if at is None:
                    slots[entry.slot] = len(rows)
                    rows.append(entry)
                    statuses.append("added")
                elif on_duplicate == "replace":
                    rows[at] = entry
                    statuses.append("replaced")
                elif on_duplicate == "keep":
                    statuses.append("kept")
                else:
                    raise BindingError(f"'{entry.word}' in '{entry.context}' is already in memory.")
            if any(s != "kept" for s in statuses):
                self._changed(tuple(rows))
            return statuses

    def with_keys(self, keys: dict[str, list[torch.Tensor]]) -> "MemoryBank":
        """A read-only view of this version whose entries carry these keys (`keys[field][i]` for entry i of this
        version, read again from its statement by `engine.ensure_keys`)."""
        from dataclasses import replace

        with self._lock:
            rows = tuple(replace(e, **{f: v[i] for f, v in keys.items()}) for i, e in enumerate(self._entries))
            view = MemoryBank(self.model_name, self.hidden_size, self.key_layer, self.context_layer,
                              self.symbol_layer, self.value_steps, rows, self.token_layer, self._disabled)
        return view.snapshot()

    def adopt(self, old: tuple[MemoryEntry, ...], new: tuple[MemoryEntry, ...]) -> None:
        """Replace each entry of `old` that is still in this memory (the same object: matched by identity, never by
        position) by its counterpart in `new`, e.g. the same entry with keys computed from a snapshot in the
        background. Entries removed or written meanwhile are left as they are; a read-only view adopts nothing."""
        with self._lock:
            if self._frozen:
                return
            counterpart = {id(o): n for o, n in zip(old, new)}  # `old` is alive here, so its ids are its own
            rows = tuple(counterpart.get(id(e), e) for e in self._entries)
            if any(a is not b for a, b in zip(rows, self._entries)):
                self._changed(rows)

    def remove(self, index: int) -> MemoryEntry:
        with self._lock:
            self._writable()
            if not 0 <= index < len(self._entries):
                raise BindingError(f"No memory entry number {index}.")
            entry = self._entries[index]
            self._changed(self._entries[:index] + self._entries[index + 1:], self._disabled - {entry.slot})
            return entry

    def clear(self) -> None:
        with self._lock:
            self._writable()
            self._changed((), frozenset())

    def _check(self, entry: MemoryEntry) -> None:
        if not isinstance(entry, MemoryEntry):
            raise BindingError(f"Only memory entries can be added, not {type(entry).__name__}.")
        if tuple(entry.value.shape) != (self.hidden_size,):
            raise BindingError(f"Entry has hidden size {tuple(entry.value.shape)}, the memory {self.hidden_size}.")
        tail_shape = None if entry.tail_values is None else tuple(entry.tail_values.shape)
        if tail_shape != ((len(entry.tail_ids), self.hidden_size) if entry.tail_ids else None):
            raise BindingError(f"Entry has {len(entry.tail_ids)} later label tokens but tail values of shape "
                               f"{tail_shape}.")
