"""A "share" document: the memory file plus the view settings, as one JSON file that reopens the same view.

    {"format": "fastmem-share", "version": 2, "model": "...", "memory": "<base64 of the memory file>",
     "view": {"mode": "span_match", "alpha": null, "threshold": "default", "question": "...",
              "mark_word": "", "mark_context": ""}, "sha256": "<digest of model, memory and view>"}

The digest covers the model name, the memory and the view, so a damaged share is refused rather than reopened
with another question or setting (the memory file inside has its own digest too). Version 1 (no digest) still
opens.

`alpha: null` means the calibrated strength, `threshold: "default"` the calibrated threshold and
`threshold: null` no threshold. Reading checks everything and raises `ShareFileError` with a plain message;
it never changes anything (the caller swaps its memory in only after `Lab.open_share` returned).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fastmem.errors import MemoryFileError

FORMAT = "fastmem-share"
VERSION = 2
READABLE = (1, 2)
MAX_QUESTION = 2000
MAX_SHARE_CHARS = 720 * 1024 * 1024  # a 512 MiB memory file in base64, and its view


class ShareFileError(MemoryFileError):
    """A share file is not valid JSON, not a fastmem share, of another version, or does not fit the model."""


class ShareView(BaseModel):
    """What the Inspect page shows: the question, how it is marked, and the read settings."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str = "span_match"
    alpha: float | None = Field(default=None, allow_inf_nan=False)  # None: the calibrated strength
    threshold: float | Literal["default"] | None = "default"  # "default": calibrated; None: off
    question: str = Field(default="", max_length=MAX_QUESTION)
    mark_word: str = Field(default="", max_length=64)
    mark_context: str = Field(default="", max_length=128)


class ShareDoc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["fastmem-share"] = FORMAT
    version: Literal[1, 2] = VERSION
    model: str
    memory: str  # base64 of the memory file (`Lab.export_memory`)
    view: ShareView = ShareView()
    sha256: str | None = None  # version 2: `share_digest` of the rest

    @property
    def checked(self) -> bool:
        return self.sha256 is not None


def share_digest(model: str, memory: str, view: ShareView) -> str:
    body = json.dumps({"model": model, "memory": memory, "view": view.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def dump_share(memory: bytes, model: str, view: ShareView) -> str:
    """The share document as JSON text."""
    encoded = base64.b64encode(memory).decode("ascii")
    doc = ShareDoc(model=model, memory=encoded, view=view, sha256=share_digest(model, encoded, view))
    return json.dumps(doc.model_dump(mode="json"), indent=1)


def parse_share(data: bytes | str) -> ShareDoc:
    """Read a share document; any fault raises ShareFileError with a message meant for the user."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise ShareFileError("This is not a share file: it is not UTF-8 text (a memory file is uploaded "
                                 "on the Memory page).") from None
    if not isinstance(data, str):
        raise ShareFileError(f"A share file is JSON text, not {type(data).__name__}.")
    if len(data) > MAX_SHARE_CHARS:
        raise ShareFileError(f"The share file is over {MAX_SHARE_CHARS // 2**20} MiB.")
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ShareFileError(f"This is not a share file: invalid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}).") from None
    except RecursionError:
        raise ShareFileError("This is not a share file: it is nested too deeply.") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits
        raise ShareFileError(f"This is not a share file: {exc}.") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ShareFileError(f"This JSON is not a fastmem share file (it needs \"format\": \"{FORMAT}\").")
    if raw.get("version") not in READABLE:
        raise ShareFileError(f"Share file version {raw.get('version')!r} is not supported; this app reads "
                             f"versions {', '.join(map(str, READABLE))}.")
    try:
        doc = ShareDoc.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()[:5])
        raise ShareFileError(f"The share file is not valid: {problems}.") from None
    except RecursionError:
        raise ShareFileError("The share file is not valid: it is nested too deeply.") from None
    if doc.version >= 2 and doc.sha256 != share_digest(doc.model, doc.memory, doc.view):
        raise ShareFileError("The share file is damaged: its contents do not match its SHA-256 digest. Nothing "
                             "was opened.")
    return doc


def memory_bytes(doc: ShareDoc) -> bytes:
    """The memory file inside a share document."""
    try:
        return base64.b64decode(doc.memory.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ShareFileError("The share file's memory is not valid base64.") from None


__all__ = ["ShareView", "ShareDoc", "ShareFileError", "dump_share", "parse_share", "memory_bytes"]
