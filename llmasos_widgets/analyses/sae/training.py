"""Training a TopK SAE the way EleutherAI's sparsify does, from texts or from an activation cache; resumable."""

from __future__ import annotations

import json
import math
import os
import random
import time
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ...core import checks, files
from ...core.corpus import text_corpus
from ...core.progress import tqdm
from ..corpus_index import fingerprint
from .cache import ActivationCache
from .model import MASSIVE_RATIO, SAE, decode_sparse
from .quality import layer_activations, measure

if TYPE_CHECKING:
    from ...core.models import LanguageModel

CHECKPOINT_FORMAT = "llmasos_widgets.SAECheckpoint"
CHECKPOINT_VERSION = 1
MIN_TRAIN_TOKENS = 1024  # below this a dictionary of any useful width is mostly dead latents
AUXK_ALPHA = 1 / 32  # weight of the AuxK loss (Gao et al. 2024, appendix B.1)


# -- training ----------------------------------------------------------------------------------
def geometric_median(points: Tensor, iters: int = 100, eps: float = 1e-6) -> Tensor:
    """The point minimising the summed distance to ``points`` [n, d] (Weiszfeld's iteration).

    Examples
    --------
    >>> geometric_median(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [100.0, 100.0]])).round(decimals=2)
    tensor([0.5000, 0.5000])

    """
    points = points.double()
    guess = points.mean(0)
    for _ in range(iters):
        weights = 1 / (points - guess).norm(dim=1).clamp_min(eps)
        new = (weights[:, None] * points).sum(0) / weights.sum()
        if (new - guess).norm() < eps * (1 + guess.norm()):
            guess = new
            break
        guess = new
    return guess.float()


@dataclass
class _Settings:
    """Everything that decides a training run; a checkpoint resumes only the run it was written for."""

    layer: int
    n_latents: int
    k: int
    seed: int
    epochs: int
    lr: float
    warmup_steps: int
    batch_tokens: int
    buffer_tokens: int
    dead_tokens: int
    b_dec_init: str
    skip_first: int
    massive_ratio: float | None
    corpus: dict[str, Any] = field(default_factory=dict)


class _Trainer:
    """The optimisation of a TopK SAE over a fixed plan of activation buffers (sparsify's recipe)."""

    def __init__(self, s: _Settings, d_model: int, device: torch.device, total_steps: int) -> None:
        self.s, self.total_steps = s, total_steps
        init = SAE.random(d_model, s.n_latents, s.k, s.layer, seed=s.seed)
        self.params = {
            name: getattr(init, name).to(device).requires_grad_(True) for name in ("W_enc", "b_enc", "W_dec", "b_dec")
        }
        self.opt = torch.optim.Adam(list(self.params.values()), lr=s.lr)
        self.since_fired = torch.zeros(s.n_latents, dtype=torch.long, device=device)
        self.step = 0

    def lr_at(self, step: int) -> float:
        # Linear warm-up, then linear decay to 0 at the last step (transformers' linear schedule).
        if step < self.s.warmup_steps:
            return self.s.lr * (step + 1) / self.s.warmup_steps
        left = max(1, self.total_steps - self.s.warmup_steps)
        return self.s.lr * max(0.0, (self.total_steps - step) / left)

    def init_b_dec(self, acts: Tensor) -> None:
        with torch.no_grad():
            sample = acts[:16384].float()
            center = sample.mean(0) if self.s.b_dec_init == "mean" else geometric_median(sample.cpu())
            self.params["b_dec"].copy_(center.to(self.params["b_dec"].device))

    def train_step(self, x: Tensor) -> tuple[float, float]:
        """One Adam step on a minibatch ``x`` [tokens, d_model]; returns (FVU, AuxK loss)."""
        p = self.params
        W_enc, b_enc, W_dec, b_dec = p["W_enc"], p["b_enc"], p["W_dec"], p["b_dec"]  # noqa: N806
        pre = (x - b_dec) @ W_enc + b_enc
        top = torch.topk(pre, self.s.k, dim=-1)
        values = top.values.clamp_min(0)
        recon = decode_sparse(values, top.indices, W_dec) + b_dec
        err = x - recon
        total_var = (x - x.mean(0)).pow(2).sum().clamp_min(1e-12)
        fvu = err.pow(2).sum() / total_var
        dead = self.since_fired > self.s.dead_tokens
        n_dead = int(dead.sum())
        auxk = x.new_zeros(())
        if n_dead:
            # The dead latents' best k_aux pre-activations predict what the live ones missed
            # (Gao et al. 2024, B.1; pre-ReLU values as in SAELens, so negative ones still learn).
            k_aux = min(x.shape[1] // 2, n_dead)
            scale = min(n_dead / (x.shape[1] // 2), 1.0)
            aux = torch.topk(pre.masked_fill(~dead, -math.inf), k_aux, dim=-1)
            e_hat = decode_sparse(aux.values, aux.indices, W_dec)
            auxk = scale * (e_hat - err.detach()).pow(2).sum() / total_var
        loss = fvu + AUXK_ALPHA * auxk
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            # Keep decoder rows unit-norm: drop the gradient along each row, step, renormalise.
            g = W_dec.grad
            assert g is not None
            g -= (g * W_dec).sum(1, keepdim=True) * W_dec
            for group in self.opt.param_groups:
                group["lr"] = self.lr_at(self.step)
            self.opt.step()
            W_dec /= W_dec.norm(dim=1, keepdim=True).clamp_min(torch.finfo(W_dec.dtype).eps)
            fired = torch.zeros_like(dead)
            fired[top.indices[values > 0]] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
        self.step += 1
        return float(fvu.detach()), float(auxk.detach())

    def sae(self, meta: dict[str, Any], max_norm: float | None) -> SAE:
        p = {k: v.detach().cpu().clone() for k, v in self.params.items()}
        return SAE(
            p["W_enc"],
            p["b_enc"],
            p["W_dec"],
            p["b_dec"],
            self.s.layer,
            self.s.k,
            skip_first=self.s.skip_first,
            max_norm=max_norm,
            meta=meta,
        )

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, path: Path, position: dict[str, Any], log: dict[str, Any]) -> None:
        tensors = {f"param.{k}": v.detach() for k, v in self.params.items()}
        tensors["since_fired"] = self.since_fired
        state = self.opt.state_dict()["state"]
        for i, name in enumerate(self.params):
            if i in state:
                tensors[f"adam.{name}.exp_avg"] = state[i]["exp_avg"]
                tensors[f"adam.{name}.exp_avg_sq"] = state[i]["exp_avg_sq"]
                tensors[f"adam.{name}.step"] = torch.as_tensor(state[i]["step"], dtype=torch.float64).reshape(1)
        meta = {"settings": asdict(self.s), "step": self.step, "position": position, "log": log}
        files.save(path, {k: v.cpu() for k, v in tensors.items()}, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, meta)

    def restore(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        meta, t = files.load(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "SAE training checkpoint")
        if meta["settings"] != json.loads(json.dumps(asdict(self.s))):
            theirs, mine = meta["settings"], json.loads(json.dumps(asdict(self.s)))
            diff = ", ".join(
                f"{k}: checkpoint {theirs.get(k)!r} vs now {mine[k]!r}" for k in mine if theirs.get(k) != mine[k]
            )
            raise ValueError(
                f"the checkpoint {path} was written by another training run ({diff}); "
                "give another checkpoint path or delete it to start over"
            )
        device = self.since_fired.device
        with torch.no_grad():
            for k, v in self.params.items():
                v.copy_(t[f"param.{k}"].to(device))
        self.since_fired.copy_(t["since_fired"].to(device))
        state = {}
        for i, name in enumerate(self.params):
            if f"adam.{name}.step" in t:
                state[i] = {
                    "step": t[f"adam.{name}.step"].reshape(()).float(),
                    "exp_avg": t[f"adam.{name}.exp_avg"].to(device),
                    "exp_avg_sq": t[f"adam.{name}.exp_avg_sq"].to(device),
                }
        sd = self.opt.state_dict()
        sd["state"] = state
        self.opt.load_state_dict(sd)
        self.step = int(meta["step"])
        return meta["position"], meta["log"]


def _plan(n_tokens: list[int], buffer_tokens: int, epochs: int, seed: int) -> list[list[int]]:
    """Buffers of piece indices: each epoch shuffles the pieces (seeded) and fills buffers greedily."""
    plan = []
    for epoch in range(epochs):
        order = list(range(len(n_tokens)))
        random.Random(f"{seed}/{epoch}").shuffle(order)
        buf: list[int] = []
        size = 0
        for i in order:
            buf.append(i)
            size += n_tokens[i]
            if size >= buffer_tokens:
                plan.append(buf)
                buf, size = [], 0
        if buf:
            plan.append(buf)
    return plan


def train_sae(
    model: LanguageModel,
    texts: Sequence[str] | ActivationCache,
    layer: int,
    n_latents: int | None = None,
    k: int = 32,
    *,
    seed: int = 0,
    epochs: int = 1,
    lr: float | None = None,
    warmup_steps: int | None = None,
    batch_tokens: int = 2048,
    buffer_tokens: int = 65536,
    dead_tokens: int | None = None,
    b_dec_init: str = "mean",
    skip_first: int | None = None,
    massive_ratio: float | None = MASSIVE_RATIO,
    max_tokens: int = 256,
    batch_size: int = 32,
    eval_texts: Sequence[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    checkpoint_every: int = 200,
    max_steps: int | None = None,
    progress: bool = True,
) -> SAE:
    """Train a TopK sparse autoencoder on the residual stream after block ``layer`` over ``texts``.

    Activations are gathered ``buffer_tokens`` at a time (memory: buffer × d_model floats), shuffled
    within the buffer and fed in minibatches of ``batch_tokens``. The run is seeded (weights, text
    order, buffer shuffles) and, with ``checkpoint``, resumable: the checkpoint is rewritten
    atomically every ``checkpoint_every`` steps, on Ctrl-C and at the end, and a later call with the
    same arguments continues where it stopped (a finished run returns at once).

    Parameters
    ----------
    model : LanguageModel
        From :func:`~llmasos_widgets.load_model`.
    texts : sequence of str or ActivationCache
        The training corpus; pieces longer than ``max_tokens`` are split. Or a complete
        :class:`ActivationCache` of this model holding ``layer`` (:func:`cache_activations`): the
        activations are read from disk instead of running the model (its pieces and ``max_tokens``
        are used; the same seed gives the same SAE up to the cache's float16 rounding).
    layer : int
        The site is ``blocks.{layer}.hook_resid_post`` (negative counts from the end).
    n_latents : int, optional
        Dictionary size; default ``8 × d_model``.
    k : int
        Active latents per token.
    seed, epochs, lr, warmup_steps : optional
        ``lr`` defaults to sparsify's ``2e-4 / sqrt(n_latents / 2**14)``; ``warmup_steps`` to
        ``min(1000, total_steps // 10)``.
    batch_tokens, buffer_tokens : int
        Tokens per optimiser step, tokens gathered per buffer.
    dead_tokens : int, optional
        A latent that has not fired for this many training tokens is dead and gets the AuxK loss;
        default ``min(10_000_000, training tokens // 10)`` (sparsify uses 10M on far larger corpora).
    b_dec_init : str
        ``"mean"`` (sparsify) or ``"geometric_median"`` (Bricken et al. 2023) of the first buffer.
    skip_first : int, optional
        Leading positions of every piece left out (default 1 for models whose first position carries
        a massive activation, as SmolLM2's does; 0 otherwise: see :func:`massive_first_position`).
    massive_ratio : float, optional
        Tokens whose norm is above this many times the median norm of the first buffer are left out
        (the SAE's ``max_norm``; see :class:`SAE`); None keeps every token.
    max_tokens, batch_size : int
        Longest piece, and pieces per forward pass.
    eval_texts : sequence of str, optional
        Texts for :attr:`SAE.quality`; by default about 5 % of the pieces (up to ~16k tokens) are
        held out of training for it.
    checkpoint : path, optional
        A file to resume from and write to.
    checkpoint_every : int
        Steps between checkpoints.
    max_steps : int, optional
        Stop after this many steps in total (the checkpoint lets a later call continue).
    progress : bool
        Show a tqdm bar (FVU, dead share).

    Examples
    --------
    >>> import llmasos_widgets as lw
    >>> model = lw.load_model("tiny-llama")
    >>> texts = lw.sample_texts()[:300]
    >>> sae = train_sae(model, texts, layer=1, n_latents=128, k=8, batch_tokens=256, epochs=3, progress=False)
    >>> sae.n_latents, sae.quality.variance_explained > 0.5
    (128, True)

    """
    layer = checks.layer(layer, model.n_layers, model.name)
    d_model = model.d_model
    n_latents = 8 * d_model if n_latents is None else n_latents
    checks.int_in("n_latents", n_latents, 2, 2**22)
    checks.int_in("k", k, 1, n_latents)
    checks.int_in("epochs", epochs, 1, 10_000)
    checks.int_in("batch_tokens", batch_tokens, 1, 2**24)
    checks.int_in("buffer_tokens", buffer_tokens, 1, 2**30)
    checks.int_in("checkpoint_every", checkpoint_every, 1, 2**31)
    if b_dec_init not in ("mean", "geometric_median"):
        raise ValueError(f"b_dec_init must be 'mean' or 'geometric_median', got {b_dec_init!r}")
    cache = texts if isinstance(texts, ActivationCache) else None
    if cache is not None:
        cache.check_model(model)
        if layer not in cache.layers:
            raise ValueError(f"the activation cache {cache.path} holds layers {cache.layers}, not layer {layer}")
        if not cache.complete:
            raise ValueError(
                f"the activation cache {cache.path} is incomplete ({cache.done_batches} of {cache.meta['n_batches']} "
                "batches): call cache_activations again with the same arguments to finish it"
            )
        pieces, counts, max_tokens = list(cache.pieces), cache.meta["counts"], int(cache.meta["max_tokens"])
        checks.int_in("batch_size", batch_size, 1, 2**31)
    else:
        pieces, counts, max_tokens = text_corpus(model, texts, batch_size, max_tokens, "train on")  # type: ignore[arg-type]
    if skip_first is None:
        skip_first = 1 if massive_first_position(model) else 0
    checks.int_in("skip_first", skip_first, 0, max_tokens - 1)
    if massive_ratio is not None and not (isinstance(massive_ratio, (int, float)) and massive_ratio > 1):
        raise ValueError(f"massive_ratio must be a number above 1 (× the median norm) or None, got {massive_ratio!r}")
    source = list(range(len(pieces)))  # training piece -> the corpus's piece (a cache's row block)
    if eval_texts is None:
        # Hold out a fixed, seeded share for the quality report (the training plan never sees it).
        order = list(range(len(pieces)))
        random.Random(f"{seed}/held-out").shuffle(order)
        held, size = [], 0
        for i in order[: max(1, len(pieces) // 20)]:
            if size >= 16384:
                break
            held.append(i)
            size += len(pieces[i][1])
        held_set = set(held)
        eval_pieces = [pieces[i] for i in held]
        source = [i for i in source if i not in held_set]
        pieces = [pieces[i] for i in source]
    else:
        eval_pieces, _, _ = text_corpus(model, eval_texts, batch_size, max_tokens, "measure")
    n_tokens = [max(0, len(p) - skip_first) for _, p in pieces]
    total = sum(n_tokens) * epochs
    if sum(n_tokens) < MIN_TRAIN_TOKENS:
        raise ValueError(
            f"the corpus is too small to train an SAE: {sum(n_tokens)} training tokens at positions ≥ {skip_first} "
            f"({len(pieces)} pieces after holding out {len(eval_pieces)} for evaluation); give at least "
            f"{MIN_TRAIN_TOKENS} (lw.sample_texts() has about 40,000)"
        )
    plan = _plan(n_tokens, buffer_tokens, epochs, seed)
    # A buffer's last minibatch takes the remainder (a tiny batch would have ~no variance to explain).
    buffer_sizes = [sum(n_tokens[i] for i in buf) for buf in plan]
    steps_per_buffer = [max(1, size // batch_tokens) if size > 1 else 0 for size in buffer_sizes]
    total_steps = sum(steps_per_buffer)
    lr = 2e-4 / math.sqrt(n_latents / 2**14) if lr is None else float(lr)
    warmup_steps = min(1000, max(1, total_steps // 10)) if warmup_steps is None else warmup_steps
    dead_tokens = min(10_000_000, max(1, total // 10)) if dead_tokens is None else dead_tokens
    corpus_id = {
        "model": fingerprint(model),
        "texts": counts["texts"],
        "pieces": len(pieces),
        "tokens": sum(n_tokens),
        "max_tokens": max_tokens,
    }
    settings = _Settings(
        layer, n_latents, k, seed, epochs, lr, warmup_steps, batch_tokens, buffer_tokens, dead_tokens,
        b_dec_init, skip_first, massive_ratio, corpus_id,
    )  # fmt: skip
    trainer = _Trainer(settings, d_model, model.device, total_steps)
    position = {"buffer": 0, "batch": 0}
    log: dict[str, Any] = {"seconds_forward": 0.0, "seconds_sae": 0.0, "tokens": 0, "fvu": None, "massive": 0}
    log["max_norm"] = None  # set from the first buffer's median norm
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and path.exists():
        position, log = trainer.restore(path)

    def save() -> None:
        if path is not None:
            trainer.save(path, position, log)

    bar = tqdm(
        total=total_steps, initial=trainer.step, unit="step", desc=f"training SAE L{layer}", disable=not progress
    )
    stopped = False
    try:
        for b in range(position["buffer"], len(plan)):
            if max_steps is not None and trainer.step >= max_steps:
                stopped = True
                break
            started = time.perf_counter()
            if cache is not None:  # the rows in the order _gather gives them: pieces sorted by length
                order = sorted(plan[b], key=lambda i: len(pieces[i][1]))
                acts = cache._rows(layer, [source[i] for i in order], skip_first).to(model.device)
            else:
                acts = _gather(model, layer, [pieces[i] for i in plan[b]], batch_size, skip_first)
            log["seconds_forward"] += time.perf_counter() - started
            if massive_ratio is not None:
                norms = acts.float().norm(dim=-1)
                if log["max_norm"] is None:
                    log["max_norm"] = massive_ratio * float(norms.median())
                ordinary = norms <= log["max_norm"]
                log["massive"] += int((~ordinary).sum()) if position["batch"] == 0 else 0
                acts = acts[ordinary]
            if trainer.step == 0:
                trainer.init_b_dec(acts)
            perm = torch.randperm(acts.shape[0], generator=torch.Generator().manual_seed(seed * 1_000_003 + b))
            started = time.perf_counter()
            for m in range(position["batch"], steps_per_buffer[b]):
                if max_steps is not None and trainer.step >= max_steps:
                    stopped = True
                    break
                end = (m + 1) * batch_tokens if m < steps_per_buffer[b] - 1 else acts.shape[0]
                rows = perm[m * batch_tokens : end].to(acts.device)
                fvu, _ = trainer.train_step(acts[rows].float())
                log["tokens"] += int(rows.shape[0])
                log["fvu"] = fvu
                position = {"buffer": b, "batch": m + 1}
                bar.update()
                if trainer.step % 20 == 0:
                    dead = float((trainer.since_fired > dead_tokens).float().mean())
                    bar.set_postfix(fvu=f"{fvu:.3f}", dead=f"{dead:.1%}")
                if trainer.step % checkpoint_every == 0:
                    log["seconds_sae"] += time.perf_counter() - started
                    started = time.perf_counter()
                    save()
            log["seconds_sae"] += time.perf_counter() - started
            if stopped:
                break
            position = {"buffer": b + 1, "batch": 0}
    except KeyboardInterrupt:
        save()
        raise
    finally:
        bar.close()
    save()
    seconds = log["seconds_forward"] + log["seconds_sae"]
    meta = {
        "source": "train_sae",
        "model": model.name,
        "fingerprint": fingerprint(model),
        "train": {
            **{k: v for k, v in asdict(settings).items() if k != "corpus"},
            "texts": counts["texts"],
            "activations": f"cache {cache.path}" if cache is not None else "model",
            "training_tokens": sum(n_tokens),
            "steps": trainer.step,
            "total_steps": total_steps,
            "finished": trainer.step >= total_steps,
            "tokens_seen": log["tokens"],
            "seconds_forward": round(log["seconds_forward"], 2),
            "seconds_sae": round(log["seconds_sae"], 2),
            "tokens_per_second": round(log["tokens"] / seconds, 1) if seconds else None,
            "dead_share_train": float((trainer.since_fired > dead_tokens).float().mean()),
            "massive_left_out": log["massive"],
            "last_fvu": log["fvu"],
        },
    }
    sae = trainer.sae(meta, log["max_norm"])
    sae.quality = measure(sae, model, eval_pieces, batch_size, progress=False)
    if stopped and progress:
        tqdm.write(f"stopped at step {trainer.step} of {total_steps} (max_steps); call again to continue")
    return sae


def _gather(
    model: LanguageModel, layer: int, batch_pieces: list[tuple[int, list[int]]], batch_size: int, skip_first: int
) -> Tensor:  # [tokens, d_model] on the model's device, in the order of batch_pieces' tokens
    chunks = []
    # Forward in length-sorted batches (little padding); the buffer is shuffled afterwards anyway.
    order = sorted(range(len(batch_pieces)), key=lambda i: len(batch_pieces[i][1]))
    for start in range(0, len(order), batch_size):
        acts, _, _, inc = layer_activations(
            model, layer, [batch_pieces[i] for i in order[start : start + batch_size]], skip_first
        )
        chunks.append(acts[inc])
    return torch.cat(chunks)


def massive_first_position(model: LanguageModel, ratio: float = MASSIVE_RATIO) -> bool:
    """Whether the model's first position carries a "massive activation" (an attention sink).

    The residual norm at position 0, halfway through the model, over the median of the others' on a
    short text, against ``ratio`` (``MASSIVE_RATIO``, the rule :attr:`SAE.max_norm` uses for every
    other token). SmolLM2's is about 150×; an SAE trained with it would spend its variance on one
    token, so :func:`train_sae` leaves position 0 out where this is true. The norm ratio is measured
    once per model; each call compares it with its own ``ratio``.

    Examples
    --------
    >>> from llmasos_widgets import load_model
    >>> massive_first_position(load_model("tiny-llama"))
    False
    >>> massive_first_position(load_model("tiny-llama"), ratio=1e-3)  # any first position clears a tiny ratio
    True

    """
    if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool) and ratio > 0):
        raise ValueError(f"ratio must be a positive number, got {ratio!r}")
    measured = _FIRST_POSITION_RATIO.get(model)
    if measured is None:
        ids = model.tokenizer("The cat sat on the mat and looked at the door.", add_special_tokens=True)["input_ids"]
        acts, _, _, _ = layer_activations(model, model.n_layers // 2, [(0, list(ids))], 0)
        norms = acts[0].float().norm(dim=-1)
        measured = float(norms[0] / norms[1:].median()) if norms.shape[0] > 2 else 0.0
        _FIRST_POSITION_RATIO[model] = measured
    return measured > ratio


# The first position's norm over the median of the others', per model (massive_first_position).
_FIRST_POSITION_RATIO: weakref.WeakKeyDictionary[LanguageModel, float] = weakref.WeakKeyDictionary()
