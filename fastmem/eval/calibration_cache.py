"""The calibration cache: a key derived from everything calibration reads, and the folder it is kept in.

A calibration is reused only when its key matches: the model, every prompt calibration runs as keyed, the
training labels, the settings and the calibration format version (bumped on purpose when calibration's behaviour
changes). Anything else is recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
from importlib import resources
from pathlib import Path

from safetensors.torch import load_file, save_file

from fastmem.eval.calibrate import CALIBRATION_VERSION, Calibration, calibrate, training_plan
from fastmem.eval.suite import Suite
from fastmem.memory.projector import KeyProjector
from fastmem.memory.retrieval import KeyGeometry
from fastmem.model.lm import FrozenLM
from fastmem.model.loading import cache_dir


def cache_key(lm: FrozenLM, suite: Suite, value_steps: int, seed: int) -> str:
    """What determines a calibration: the model's identity, every prompt it runs as keyed (`training_plan`: text,
    slots and targets, so a change to a template, a question form or a keying rule changes it, while suites that
    differ only in their test side share a calibration), the training labels, the settings, and
    `CALIBRATION_VERSION`, which a change of calibration behaviour bumps on purpose. Source bytes are not in it:
    a comment or a refactor needs no new calibration, and `tests/test_unit_calibration_reference.py` (the tiny
    model recalibrated against a stored reference) and the shipped calibration's recorded verdicts catch a change
    of behaviour that forgot the bump."""
    plan = training_plan(lm, suite, seed)
    prompts = {name: [[p.text, p.word_span, p.context_span, p.context, p.marked] for p in group]
               for name, group in plan.groups.items()}
    targets = {name: list(p.targets) for name, p in plan.probes.items()}
    train = json.dumps([lm.name, lm.n_layers, lm.hidden_size, str(lm.dtype), prompts, targets,
                        [w.model_dump() for w in suite.split("train")], value_steps, seed, CALIBRATION_VERSION])
    return hashlib.sha256(train.encode()).hexdigest()[:12]


# Calibrations shipped with the package (the default model's), used when their key is this code's key.
SHIPPED = resources.files("fastmem") / "data" / "calibration"


def _folder_name(lm: FrozenLM, key: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in lm.name)[-60:]
    return f"{slug}-{key}"


def _read(folder, key: str) -> tuple[Calibration, KeyGeometry] | None:
    """The calibration kept in `folder` if it is whole and made for `key`, else None."""
    try:
        if (folder / "key").read_text().strip() != key:
            return None
        cal = Calibration.from_json((folder / "calibration.json").read_text())
        projector = KeyProjector.load(folder / "projector.safetensors")
        base = load_file(folder / "baselines.safetensors")
        return cal, KeyGeometry(projector, base["symbol"], base["context"], base["token_mean"],
                                base["token_scale"], base["embed_mean"], base["embed_scale"])
    except Exception:  # noqa: BLE001 - missing, damaged or another key's: rebuilt
        return None


def stale_shipped(lm: FrozenLM, key: str, shipped=None) -> list[str]:
    """Names of the calibrations shipped for this model that another version of the code made (never used)."""
    root = SHIPPED if shipped is None else shipped
    slug = _folder_name(lm, "")
    if not root.is_dir():
        return []
    return sorted(f.name for f in root.iterdir() if f.name.startswith(slug) and f.name != _folder_name(lm, key))


def save_calibration(folder: Path, key: str, cal: Calibration, geometry: KeyGeometry) -> None:
    """Write beside, then rename: a concurrent reader never sees half a calibration."""
    part = folder.with_name(f"{folder.name}.{os.getpid()}.{threading.get_ident()}.partial")
    part.mkdir(parents=True, exist_ok=True)
    geometry.projector.save(part / "projector.safetensors")
    save_file({"symbol": geometry.symbol_baseline.contiguous(), "context": geometry.context_baseline.contiguous(),
               "token_mean": geometry.token_mean.contiguous(), "token_scale": geometry.token_scale.contiguous(),
               "embed_mean": geometry.embed_mean.contiguous(), "embed_scale": geometry.embed_scale.contiguous()},
              part / "baselines.safetensors")
    (part / "calibration.json").write_text(cal.to_json())
    (part / "key").write_text(key)
    try:
        part.rename(folder)
    except OSError:  # another process finished first: keep theirs
        shutil.rmtree(part, ignore_errors=True)


def load_or_calibrate(lm: FrozenLM, suite: Suite, value_steps: int = 8, seed: int = 0, progress=None,
                      use_cache: bool = True, show_progress: bool = True,
                      shipped=None) -> tuple[Calibration, KeyGeometry]:
    """The cached calibration for this key, else the shipped one for this key, else a new one (then cached).
    A shipped calibration of another key (older code) is never used."""
    key = cache_key(lm, suite, value_steps, seed)
    name = _folder_name(lm, key)
    folder = cache_dir() / "calibration" / name
    if use_cache:
        for place in (folder, (SHIPPED if shipped is None else shipped) / name):
            got = _read(place, key)
            if got is not None:
                return got
    stale = stale_shipped(lm, key, shipped)
    if stale and show_progress:
        print(f"The shipped calibration {', '.join(stale)} was made by other code (key {key} now): calibrating anew.",
              file=sys.stderr)
    cal, geometry = calibrate(lm, suite, value_steps, seed, progress, show_progress)
    if use_cache:
        save_calibration(folder, key, cal, geometry)
    return cal, geometry
