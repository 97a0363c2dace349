"""The memory file: safetensors tensors with a JSON manifest in the safetensors metadata, nothing pickled.

Version 4 (written): what the memory needs to read and nothing it can derive. Per entry the manifest holds
what was written (word, context, label and its token ids, the statement and the spans of the word and the
context in it), and the tensors hold the values (one correction per label token, float32). Keys are not
stored: slot-free reading makes its own from the word and the context, and the other modes' keys are read
again from the statement when first needed (`engine.ensure_keys`). A SHA-256 digest of the manifest and of
every tensor (name, dtype, shape, bytes) is in the metadata: a file whose digest does not match is refused.

Versions 1-3 (read): keys stored beside the values and no digest (loaded with a note that they could not be
checked); their keys are kept where their layers are this calibration's.

Everything read is held to the checks of the same thing typed: texts as typed fields (NFC, no control
characters, the app's length limits), label ids in the vocabulary and matching the label's text, value steps
and layers in range, finite tensors of bounded magnitude. Any fault is a MemoryFileError.
"""
from __future__ import annotations

import hashlib
import json
import re

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load

from fastmem.errors import BindingError, FastmemError, MemoryFileError
from fastmem.fields import MAX_CONTEXT, MAX_LABEL, MAX_QUESTION, MAX_WORD, check_steps, stored_field, stored_text
from fastmem.memory.bank import DENSE_KEYS, TOKEN_KEYS, MemoryBank, MemoryEntry
from fastmem.model.lm import MAX_LABEL_TOKENS

FORMAT = "fastmem-memory"
FORMAT_VERSION = 4  # 2 added token keys, 3 multi-token labels, 4 values only (keys derived) and a digest
READABLE_VERSIONS = ("1", "2", "3", "4")
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_ENTRIES = 200_000
MAX_MAGNITUDE = 1e6  # hidden states reach O(1e3) in a few dimensions; near float32's range cosines break (NaN)
MAX_LAYER = 1024
VALUE, TAIL = "value", "tail_values"


def to_bytes(bank: MemoryBank) -> bytes:
    """The memory (one version of it) as a file. Deterministic: the same memory always gives the same bytes."""
    bank = bank.snapshot()
    meta = {k: getattr(bank, k) for k in ("model_name", "hidden_size", "key_layer", "context_layer",
                                          "symbol_layer", "value_steps", "token_layer")}
    meta["entries"] = [{"word": e.word, "context": e.context, "label": e.label, "label_id": e.label_id,
                        "tail_ids": list(e.tail_ids), "write_text": e.write_text, "word_span": list(e.word_span),
                        "context_span": list(e.context_span) if e.context_span else None} for e in bank.entries]
    meta["disabled"] = sorted([list(slot) for slot in bank.disabled])
    tails = [e.tail_values for e in bank.entries if e.tail_ids]
    tensors = {VALUE: bank.stacked()[VALUE], TAIL: torch.cat(tails) if tails else torch.zeros(0, bank.hidden_size)}
    return sealed(tensors, json.dumps(meta, ensure_ascii=False))


def sealed(tensors: dict[str, torch.Tensor], manifest: str) -> bytes:
    """A version-4 file of these tensors and this manifest, with its digest."""
    metadata = {"format": FORMAT, "version": str(FORMAT_VERSION), "manifest": manifest}
    tensors = {k: v.detach().to(torch.float32).contiguous().cpu() for k, v in tensors.items()}
    metadata["sha256"] = digest(metadata, tensors)
    return save_tensors(tensors, metadata)


def digest(metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the format, version and manifest, and of every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    for key in ("format", "version", "manifest"):
        h.update(key.encode() + b"\0" + metadata.get(key, "").encode("utf-8") + b"\0")
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(t.numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def from_bytes(data, expect_hidden_size: int | None = None) -> tuple[MemoryBank, list[str]]:
    """Parse a memory file: (memory, notes for the user). Raises MemoryFileError on anything odd, before any
    forward pass and without changing anything."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MemoryFileError(f"A memory file must be given as bytes, not {type(data).__name__}.")
    if len(data) > MAX_FILE_BYTES:
        raise MemoryFileError(f"The file is {len(data) / 2**20:.0f} MiB; memory files are at most "
                              f"{MAX_FILE_BYTES // 2**20} MiB.")
    data = bytes(data)
    tensors, header = _parse(data)
    version = header.get("version")
    notes = []
    if version == str(FORMAT_VERSION):
        if header.get("sha256") != digest(header, tensors):
            raise MemoryFileError("The memory file is damaged: its contents do not match its SHA-256 digest "
                                  "(a byte changed in a download or a copy). Nothing was loaded.")
    else:
        notes.append(f"A version-{version} memory file has no digest: it could not be checked for damage.")
    try:
        _check_manifest_size(header["manifest"], tensors)
        meta = json.loads(header["manifest"])
        if not isinstance(meta, dict):
            raise ValueError("the manifest is not an object")
        bank = _bank(meta, tensors, version)
    except MemoryFileError:
        raise
    except (FastmemError, KeyError, TypeError, ValueError, AttributeError, OverflowError, RecursionError) as exc:
        raise MemoryFileError(f"The memory file's manifest is incomplete or malformed: {exc}") from exc
    if expect_hidden_size is not None and bank.hidden_size != expect_hidden_size:
        raise MemoryFileError(f"This memory was written with '{bank.model_name}' (hidden size "
                              f"{bank.hidden_size}); the loaded model has hidden size {expect_hidden_size}.")
    return bank, notes


def _parse(data: bytes) -> tuple[dict[str, torch.Tensor], dict]:
    try:
        tensors = st_load(data)
        header = read_header(data)
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
    for name, t in tensors.items():
        if t.dtype != torch.float32:
            raise MemoryFileError(f"Tensor '{name}' is {t.dtype}; memory files store float32.")
        if t.numel() and not (torch.isfinite(t).all() and t.abs().max() <= MAX_MAGNITUDE):
            raise MemoryFileError(f"Tensor '{name}' holds NaN, infinite or out-of-range values (|x| > "
                                  f"{MAX_MAGNITUDE:g}).")
    return tensors, header


_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string literal


def _check_manifest_size(manifest, tensors: dict[str, torch.Tensor]) -> None:
    """Refuse a manifest that could not describe its M value rows, before parsing it (json.loads of 30 million
    empty lists, 86 MB, is 2.7 GB). A genuine one has per entry at most 4 containers (the entry, tail_ids, two
    spans) and one switched-off pair, 10 keys, 7 tail ids; and at most 2,312 characters of text, each at most
    12 characters once escaped (an astral character as two \\u escapes in versions 1-3)."""
    if not isinstance(manifest, str):
        return  # json.loads refuses it
    m = tensors[VALUE].shape[0] if VALUE in tensors and tensors[VALUE].dim() == 2 else 0
    if len(manifest) > 32_768 * m + 65_536:
        raise MemoryFileError(f"The memory file's manifest is {len(manifest):,} characters for {m:,} entries; "
                              "it cannot be a memory's. Nothing was loaded.")
    bare = _STRING.sub('""', manifest)  # brackets and commas inside texts are text
    containers, items = bare.count("[") + bare.count("{"), bare.count(",") + bare.count(":")
    if containers > 8 * m + 16 or items > 64 * m + 64:
        raise MemoryFileError(f"The memory file's manifest holds {containers:,} lists and objects and {items:,} "
                              f"items for {m:,} entries; it cannot be a memory's. Nothing was loaded.")


MANIFEST_KEYS = {"model_name", "hidden_size", "key_layer", "context_layer", "symbol_layer", "value_steps",
                 "token_layer", "entries", "disabled"}
ENTRY_KEYS = {"word", "context", "label", "label_id", "tail_ids", "write_text", "word_span", "context_span"}


def _bank(meta: dict, tensors: dict[str, torch.Tensor], version: str) -> MemoryBank:
    """The memory a manifest and its tensors describe, every field checked as if typed. A version-4 manifest
    holds exactly the fields this fastmem writes: any other is refused, never dropped unread."""
    if version == "4":
        extra = set(meta) - MANIFEST_KEYS | {k for row in meta.get("entries", []) if isinstance(row, dict)
                                            for k in set(row) - ENTRY_KEYS}
        if extra:
            raise MemoryFileError(f"The memory file has fields this fastmem does not know: {sorted(extra)[:5]}.")
        if set(tensors) != {VALUE, TAIL}:
            raise MemoryFileError(f"The memory file holds tensors {sorted(tensors)}; version 4 holds "
                                  f"{VALUE!r} and {TAIL!r} only.")
    layers = {k: _int(meta[k], 0, MAX_LAYER) for k in ("key_layer", "context_layer", "symbol_layer")}
    token_layer = _int(meta.get("token_layer", -1), -1, MAX_LAYER) if version in ("2", "3", "4") else -1
    d = _int(meta["hidden_size"], 1, 65_536)
    steps = check_steps(meta["value_steps"])
    rows = meta["entries"]
    if not isinstance(rows, list):
        raise ValueError("entries is not a list")
    if len(rows) > MAX_ENTRIES:
        raise MemoryFileError(f"The memory file has {len(rows):,} entries; at most {MAX_ENTRIES:,} are read.")
    m = len(rows)
    tails = [_tail_ids(row.get("tail_ids", [])) if version in ("3", "4") else () for row in rows]
    values = _rows(tensors, VALUE if version == "4" else "value", m, d)
    tail_values = _rows(tensors, TAIL, sum(len(t) for t in tails), d, required=version in ("3", "4"))
    keys = {f: _rows(tensors, f, m, d) for f in DENSE_KEYS if version != "4"}
    token_rows = {f: _token_rows(tensors, f, rows, d) for f in TOKEN_KEYS if version in ("2", "3")
                  and token_layer >= 0}
    entries, at = [], 0
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"entry {i} is not an object")
        entry = MemoryEntry(
            word=stored_field("word", row["word"], MAX_WORD), context=stored_field("context", row["context"], MAX_CONTEXT),
            label=stored_field("label", row["label"], MAX_LABEL), label_id=_int(row["label_id"], 0, 10 ** 7),
            write_text=stored_text("write text", row["write_text"], MAX_QUESTION),
            word_span=_span(row["word_span"], required=True), context_span=_span(row.get("context_span")),
            value=values[i], tail_ids=tails[i], tail_values=tail_values[at:at + len(tails[i])] if tails[i] else None,
            **{f: v[i] for f, v in keys.items()}, **{f: v[i] for f, v in token_rows.items()})
        at += len(tails[i])
        for span in (entry.word_span, entry.context_span):
            if span is not None and span[1] > len(entry.write_text):
                raise ValueError(f"entry {i} has a span outside its write text")
        entries.append(entry)
    if len({e.slot for e in entries}) != len(entries):
        raise MemoryFileError("The memory file has two entries for the same word and context.")
    disabled = meta.get("disabled", [])
    if not isinstance(disabled, list) or any(
            not isinstance(s, list) or len(s) != 2 or not all(isinstance(x, str) for x in s) for s in disabled):
        raise MemoryFileError("The memory file's list of switched-off entries is malformed.")
    name = stored_text("model name", meta["model_name"], 1000)
    try:
        return MemoryBank(name, d, layers["key_layer"], layers["context_layer"], layers["symbol_layer"], steps,
                          entries, token_layer, {tuple(s) for s in disabled})
    except BindingError as exc:
        raise MemoryFileError(f"The memory file's entries do not fit its hidden size: {exc}") from exc


def _rows(tensors, name: str, n: int, d: int, required: bool = True) -> torch.Tensor:
    t = tensors.get(name)
    if t is None:
        if required and n:
            raise MemoryFileError(f"The memory file has no tensor '{name}'.")
        return torch.zeros(0, d)
    if tuple(t.shape) != (n, d) and not (n == 0 and t.numel() == 0):
        raise MemoryFileError(f"Tensor '{name}' has shape {tuple(t.shape)}, expected {(n, d)}.")
    return t


def _token_rows(tensors, name: str, rows: list, d: int) -> list[torch.Tensor]:
    counts = [_int(row[f"{name}_count"], 1, 4096) for row in rows]
    flat = _rows(tensors, name, sum(counts), d)
    out, at = [], 0
    for c in counts:
        out.append(flat[at:at + c])
        at += c
    return out


def _int(raw, low: int, high: int) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or not low <= raw <= high:
        raise ValueError(f"expected a whole number from {low} to {high}, got {str(raw)[:40]}")
    return raw


def _tail_ids(raw) -> tuple[int, ...]:
    if not isinstance(raw, list) or len(raw) >= MAX_LABEL_TOKENS:
        raise ValueError(f"bad tail_ids {str(raw)[:80]}")
    return tuple(_int(x, 0, 10 ** 7) for x in raw)


def _span(raw, required: bool = False) -> tuple[int, int] | None:
    if raw is None and not required:
        return None
    if not isinstance(raw, list) or len(raw) != 2:
        raise ValueError(f"bad span {str(raw)[:80]}")
    start, end = (_int(x, 0, MAX_QUESTION + 8) for x in raw)
    if not start < end:
        raise ValueError(f"bad span {raw}")
    return (start, end)


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


def save_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
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


def read_header(data: bytes) -> dict:
    """The safetensors metadata of a file (format, version, manifest, digest)."""
    n = int.from_bytes(data[:8], "little")
    if n <= 0 or 8 + n > len(data):
        raise ValueError("bad header length")
    return json.loads(data[8:8 + n].decode("utf-8")).get("__metadata__", {}) or {}


def write_legacy(bank: MemoryBank, version: str, keys: dict[str, torch.Tensor]) -> bytes:
    """A file in an earlier version's layout (tests of the readers of old files): `keys` the stored key tensors."""
    meta = json.loads(read_header(to_bytes(bank))["manifest"])
    tensors = {"value": bank.stacked()["value"], **keys}
    if version == "3":
        tails = [e.tail_values for e in bank.entries if e.tail_ids]
        tensors[TAIL] = torch.cat(tails) if tails else torch.zeros(0, bank.hidden_size)
    else:
        for row in meta["entries"]:
            row.pop("tail_ids")
    if version in ("2", "3"):
        meta["token_layer"] = bank.token_layer
        for f in TOKEN_KEYS:
            for row, e in zip(meta["entries"], bank.entries):
                row[f"{f}_count"] = len(getattr(e, f))
    else:
        meta.pop("token_layer", None)
    return save_tensors(tensors, {"format": FORMAT, "version": version, "manifest": json.dumps(meta)})
