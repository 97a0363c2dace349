"""A "share" document: the memory file plus the view settings, as one JSON file that reopens the same view.

    {"format": "fastmem-share", "version": 1, "model": "...", "memory": "<base64 of the memory file>",
     "view": {"mode": "token_match", "alpha": null, "threshold": "default", "question": "...",
              "mark_word": "", "mark_context": ""}}

`alpha: null` means the calibrated strength, `threshold: "default"` the calibrated threshold and
`threshold: null` no threshold. Reading checks everything and raises `ShareFileError` with a plain message;
it never changes anything (the caller swaps its memory in only after `Lab.open_share` returned).
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import MemoryFileError

FORMAT = "fastmem-share"
VERSION = 1
MAX_QUESTION = 2000


class ShareFileError(MemoryFileError):
    """A share file is not valid JSON, not a fastmem share, of another version, or does not fit the model."""


class ShareView(BaseModel):
    """What the Inspect page shows: the question, how it is marked, and the read settings."""
    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: str = "token_match"
    alpha: float | None = Field(default=None, allow_inf_nan=False)  # None: the calibrated strength
    threshold: float | Literal["default"] | None = "default"  # "default": calibrated; None: off
    question: str = Field(default="", max_length=MAX_QUESTION)
    mark_word: str = Field(default="", max_length=64)
    mark_context: str = Field(default="", max_length=128)


class ShareDoc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["fastmem-share"] = FORMAT
    version: Literal[1] = VERSION
    model: str
    memory: str  # base64 of the memory file (`Lab.export_memory`)
    view: ShareView = ShareView()


def dump_share(memory: bytes, model: str, view: ShareView) -> str:
    """The share document as JSON text."""
    doc = ShareDoc(model=model, memory=base64.b64encode(memory).decode("ascii"), view=view)
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
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ShareFileError(f"This is not a share file: invalid JSON ({exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}).") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ShareFileError(f"This JSON is not a fastmem share file (it needs \"format\": \"{FORMAT}\").")
    if raw.get("version") != VERSION:
        raise ShareFileError(f"Share file version {raw.get('version')!r} is not supported; this app reads "
                             f"version {VERSION}.")
    try:
        return ShareDoc.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in exc.errors()[:5])
        raise ShareFileError(f"The share file is not valid: {problems}.") from None


def memory_bytes(doc: ShareDoc) -> bytes:
    """The memory file inside a share document."""
    try:
        return base64.b64decode(doc.memory.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ShareFileError("The share file's memory is not valid base64.") from None


__all__ = ["ShareView", "ShareDoc", "ShareFileError", "dump_share", "parse_share", "memory_bytes"]
