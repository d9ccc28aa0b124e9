#!/usr/bin/env python3
"""PyTorch peer of the engine's MISS model (Sources/MileModel), for parity and speed comparisons.

The model below mirrors MileModel detail for detail: parameter names (upstream module paths, the same
the engine's `MISSModel.save` writes), GELU in erf form, LayerNorm eps 1e-6 (ViT) / 1e-12 (BERT),
attention scores q·k/sqrt(head dim) plus additive -10000 masks, post-LN BERT layers with
cross-attention, causal decoder, decoder head tied to the decoder word embeddings with its own bias,
label smoothing 0.1 and the loss summed per sequence and divided by the batch size. PEFT methods as the
engine implements them (peft 0.7.1): LoRA, IA3, prefix tuning and P-tuning v2.

Subcommands:
  golden  read the engine's exported weights/inputs and write parity fixtures (reference in float64)
  worker  one timed run of one mode on one side (used by `bench`)
  bench   alternate engine and PyTorch workers and print the speed/memory table
  conv    conv2d on ResNet-50 stage shapes: `EngineBench conv` against F.conv2d (`make bench-conv`)
  ofa-golden  the OFA (BiomedGPT-Tiny) parity fixture from `PeerBench ofa-export` (float64 reference)
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------------------------------------------
# Configuration (mirrors ModelConfig; JSON keys are the engine's snake_case keys)

PAPER = dict(
    image_size=480, patch_size=16, vision_width=768, vision_depth=12, vision_heads=12, vision_mlp=3072,
    vision_ln_eps=1e-6, drop_path_rate=0.1,
    text_hidden=768, text_layers=12, decoder_layers=12, text_heads=12, text_intermediate=3072,
    hidden_dropout=0.1, attention_dropout=0.1, text_ln_eps=1e-12, max_positions=512,
    vocab_size=30524, initializer_range=0.02, pad_token_id=0, dec_token_id=30522, sep_token_id=102,
    lora_alpha=32.0, lora_dropout=0.1, prefix_tokens=10, vit_ia3_target="fc2")

PRESETS = {
    "paper": dict(PAPER),
    "small": dict(PAPER, image_size=96, vision_width=192, vision_depth=4, vision_heads=3, vision_mlp=768,
                  text_hidden=192, text_layers=4, decoder_layers=4, text_heads=3, text_intermediate=768,
                  max_positions=128),
    "smoke": dict(PAPER, image_size=32, vision_width=32, vision_depth=2, vision_heads=2, vision_mlp=64,
                  text_hidden=32, text_layers=2, decoder_layers=2, text_heads=2, text_intermediate=64,
                  max_positions=64, vocab_size=100, pad_token_id=0, dec_token_id=98, sep_token_id=3),
}

MODES = {"f": "F", "t": "T", "lora": "lora", "ia3": "ia3", "prefix": "prefix", "ptv2": "ptv2"}


def make_config(scale, overrides=None):
    if scale not in PRESETS:
        raise SystemExit(f"unknown scale '{scale}' (expected {', '.join(PRESETS)})")
    c = dict(PRESETS[scale])
    for k, v in (overrides or {}).items():
        if k not in c:
            raise SystemExit(f"unknown model config key '{k}'")
        c[k] = v
    return c


def parse_mode(flag):
    m = MODES.get(flag.lower())
    if m is None:
        raise SystemExit(f"unknown module mode '{flag}' (expected F, T, lora, ia3, prefix, ptv2)")
    return m


# ---------------------------------------------------------------------------------------------------
# safetensors (read and write, F32/F64 only as the engine writes F32)

_DTYPES = {"F32": np.float32, "F64": np.float64, "F16": np.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise SystemExit(f"{path}: file shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > len(raw) - 8:
        raise SystemExit(f"{path}: header length {n} exceeds the file size")
    header = json.loads(raw[8:8 + n])
    body = memoryview(raw)[8 + n:]
    out = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(entry["dtype"])
        if dtype is None:
            raise SystemExit(f"{path}: tensor '{name}' has unsupported dtype {entry['dtype']}")
        begin, end = entry["data_offsets"]
        out[name] = np.frombuffer(body[begin:end], dtype=dtype).reshape(entry["shape"]).copy()
    return out


# ---------------------------------------------------------------------------------------------------
# Model


class AdaptedLinear(nn.Module):
    """Linear(in, out) with bias, optionally with LoRA (lora_A/lora_B) or an IA3 vector (ia3_l)."""

    def __init__(self, inf, outf, std):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(outf, inf) * std)
        self.bias = nn.Parameter(torch.zeros(outf))
        self.lora_A = self.lora_B = None
        self.ia3_l = None
        self.ia3_input = False

    def add_lora(self, rank, alpha, dropout):
        self.lora_A = nn.Linear(self.weight.shape[1], rank, bias=False)
        self.lora_B = nn.Linear(rank, self.weight.shape[0], bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank
        self.lora_p = dropout

    def add_ia3(self, scale_input):
        self.ia3_input = scale_input
        shape = (1, self.weight.shape[1]) if scale_input else (self.weight.shape[0], 1)
        self.ia3_l = nn.Parameter(torch.ones(shape))

    def forward(self, x):
        if self.ia3_l is not None:
            v = self.ia3_l.reshape(-1)
            if self.ia3_input:
                return F.linear(x * v, self.weight, self.bias)
            return F.linear(x, self.weight, self.bias) * v
        out = F.linear(x, self.weight, self.bias)
        if self.lora_A is None:
            return out
        d = F.dropout(x, self.lora_p, self.training)
        return out + self.lora_B(self.lora_A(d)) * self.scaling


class PatchProjection(nn.Module):
    """patch_embed.proj: Conv2d(3, w, p, stride p) with optional conv LoRA (A: 3->r pxp, B: r->w 1x1)."""

    def __init__(self, width, patch, std):
        super().__init__()
        self.patch = patch
        self.weight = nn.Parameter(torch.randn(width, 3, patch, patch) * std)
        self.bias = nn.Parameter(torch.zeros(width))
        self.lora_A = self.lora_B = None

    def add_lora(self, rank, alpha, dropout):
        w = self.weight.shape[0]
        self.lora_A = nn.Conv2d(3, rank, self.patch, stride=self.patch, bias=False)
        self.lora_B = nn.Conv2d(rank, w, 1, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scaling = alpha / rank
        self.lora_p = dropout

    def forward(self, image):
        out = F.conv2d(image, self.weight, self.bias, stride=self.patch)
        if self.lora_A is not None:
            d = F.dropout(image, self.lora_p, self.training)
            out = out + self.lora_B(self.lora_A(d)) * self.scaling
        return out.flatten(2).transpose(1, 2)


class Holder(nn.Module):
    """A named container (gives upstream's dotted parameter paths)."""


def attend(q, k, v, mask, p, training):
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if mask is not None:
        scores = scores + mask
    probs = F.dropout(torch.softmax(scores, dim=-1), p, training)
    return probs @ v


def split_heads(x, heads):
    b, t, c = x.shape
    return x.reshape(b, t, heads, c // heads).permute(0, 2, 1, 3)


def merge_heads(x):
    b, h, t, d = x.shape
    return x.permute(0, 2, 1, 3).reshape(b, t, h * d)


class ViTBlock(nn.Module):
    def __init__(self, c, drop_path):
        super().__init__()
        w, std = c["vision_width"], c["initializer_range"]
        self.heads = c["vision_heads"]
        self.drop_path = drop_path
        self.norm1 = nn.LayerNorm(w, eps=c["vision_ln_eps"])
        self.attn = Holder()
        self.attn.qkv = AdaptedLinear(w, 3 * w, std)
        self.attn.proj = AdaptedLinear(w, w, std)
        self.norm2 = nn.LayerNorm(w, eps=c["vision_ln_eps"])
        self.mlp = Holder()
        self.mlp.fc1 = AdaptedLinear(w, c["vision_mlp"], std)
        self.mlp.fc2 = AdaptedLinear(c["vision_mlp"], w, std)

    def _dp(self, x):
        if not self.training or self.drop_path == 0:
            return x
        keep = 1 - self.drop_path
        m = (torch.rand(x.shape[0], 1, 1, dtype=x.dtype) < keep).to(x.dtype) / keep
        return x * m

    def forward(self, x):
        b, t, w = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        a = merge_heads(attend(qkv[0], qkv[1], qkv[2], None, 0.0, False))
        x = x + self._dp(self.attn.proj(a))
        h = self.norm2(x)
        return x + self._dp(self.mlp.fc2(F.gelu(self.mlp.fc1(h))))


class VisionTransformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        w, std = c["vision_width"], c["initializer_range"]
        tokens = (c["image_size"] // c["patch_size"]) ** 2 + 1
        self.cls_token = nn.Parameter(torch.randn(1, 1, w) * std)
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, w) * std)
        self.patch_embed = Holder()
        self.patch_embed.proj = PatchProjection(w, c["patch_size"], std)
        depth = c["vision_depth"]
        rates = [c["drop_path_rate"] * i / (depth - 1) if depth > 1 else 0.0 for i in range(depth)]
        self.blocks = nn.ModuleList([ViTBlock(c, r) for r in rates])
        self.norm = nn.LayerNorm(w, eps=c["vision_ln_eps"])

    def forward(self, image):
        x = self.patch_embed.proj(image)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class BertSelfAttention(nn.Module):
    def __init__(self, c, kv_width):
        super().__init__()
        h, std = c["text_hidden"], c["initializer_range"]
        self.query = AdaptedLinear(h, h, std)
        self.key = AdaptedLinear(kv_width, h, std)
        self.value = AdaptedLinear(kv_width, h, std)
        self.heads = c["text_heads"]
        self.p = c["attention_dropout"]

    def kv(self, source):
        return split_heads(self.key(source), self.heads), split_heads(self.value(source), self.heads)

    def forward(self, x, memory, mask, prefix, cached=None):
        q = split_heads(self.query(x), self.heads)
        if cached is not None:
            k, v = cached
        else:
            k, v = self.kv(x if memory is None else memory)
            if memory is None and prefix is not None:
                k = torch.cat([prefix[0], k], dim=2)
                v = torch.cat([prefix[1], v], dim=2)
        return merge_heads(attend(q, k, v, mask, self.p, self.training))


class ResidualOutput(nn.Module):
    def __init__(self, c, inf):
        super().__init__()
        self.dense = AdaptedLinear(inf, c["text_hidden"], c["initializer_range"])
        self.LayerNorm = nn.LayerNorm(c["text_hidden"], eps=c["text_ln_eps"])
        self.p = c["hidden_dropout"]

    def forward(self, x, residual):
        return self.LayerNorm(F.dropout(self.dense(x), self.p, self.training) + residual)


class BertAttention(nn.Module):
    def __init__(self, c, kv_width):
        super().__init__()
        setattr(self, "self", BertSelfAttention(c, kv_width))
        self.output = ResidualOutput(c, c["text_hidden"])

    def forward(self, x, memory, mask, prefix, cached=None):
        return self.output(getattr(self, "self")(x, memory, mask, prefix, cached), x)


class BertLayer(nn.Module):
    def __init__(self, c, cross_width):
        super().__init__()
        self.attention = BertAttention(c, c["text_hidden"])
        self.crossattention = BertAttention(c, cross_width)
        self.intermediate = Holder()
        self.intermediate.dense = AdaptedLinear(c["text_hidden"], c["text_intermediate"], c["initializer_range"])
        self.output = ResidualOutput(c, c["text_intermediate"])

    def forward(self, x, self_mask, memory, memory_mask, prefix, cached=None):
        s = self.attention(x, None, self_mask, prefix)
        cross = self.crossattention(s, memory, memory_mask, None, cached)
        return self.output(F.gelu(self.intermediate.dense(cross)), cross)


class PromptEncoder(nn.Module):
    """peft's PrefixEncoder: prefix = Embedding(n, d) -> Linear -> Tanh -> Linear(d, L*2*d); PTV2 = Embedding(n, L*2*d)."""

    def __init__(self, c, layers, projection):
        super().__init__()
        d, n = c["text_hidden"], c["prefix_tokens"]
        self.layers, self.d, self.heads, self.n = layers, d, c["text_heads"], n
        self.embedding = nn.Embedding(n, d if projection else layers * 2 * d)
        self.transform = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, layers * 2 * d)) if projection else None

    def prefixes(self, batch):
        table = self.embedding.weight
        if self.transform is not None:
            table = self.transform(table)
        dh = self.d // self.heads
        out = []
        for i in range(self.layers):
            parts = []
            for j in (2 * i, 2 * i + 1):
                cols = table[:, j * self.d:(j + 1) * self.d].reshape(self.n, self.heads, dh).permute(1, 0, 2)
                parts.append(cols.unsqueeze(0).expand(batch, -1, -1, -1))
            out.append(tuple(parts))
        return out


class BertModel(nn.Module):
    def __init__(self, c, layers, cross_width, causal):
        super().__init__()
        h = c["text_hidden"]
        self.embeddings = Holder()
        self.embeddings.word_embeddings = nn.Embedding(c["vocab_size"], h)
        self.embeddings.position_embeddings = nn.Embedding(c["max_positions"], h)
        self.embeddings.LayerNorm = nn.LayerNorm(h, eps=c["text_ln_eps"])
        self.encoder = Holder()
        self.encoder.layer = nn.ModuleList([BertLayer(c, cross_width) for _ in range(layers)])
        self.causal = causal
        self.p = c["hidden_dropout"]
        self.prompt_encoder = None

    def forward(self, ids, mask, memory, memory_mask, prefixes=None, cached=None):
        """prefixes: per layer (key, value) [B, H, n, dh] prepended in self-attention only."""
        b, t = ids.shape
        n = prefixes[0][0].shape[2] if prefixes else 0
        e = self.embeddings
        pos = torch.arange(n, n + t)
        x = e.LayerNorm(e.word_embeddings(ids) + e.position_embeddings(pos)[None])
        x = F.dropout(x, self.p, self.training)
        keep = mask.to(x.dtype)
        if n:
            keep = torch.cat([torch.ones(b, n, dtype=x.dtype), keep], dim=1)
        self_mask = ((1 - keep) * -10000.0)[:, None, None, :]
        if self.causal:
            i = torch.arange(t)[:, None]
            j = torch.arange(n + t)[None, :]
            self_mask = self_mask + torch.where(j <= n + i, 0.0, -10000.0).to(x.dtype)[None, None]
        for li, layer in enumerate(self.encoder.layer):
            x = layer(x, self_mask, memory, memory_mask, prefixes[li] if prefixes else None,
                      cached[li] if cached else None)
        return x


class LMHeadModel(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.bert = BertModel(c, c["decoder_layers"], c["text_hidden"], causal=True)
        self.cls = Holder()
        self.cls.predictions = Holder()
        self.cls.predictions.bias = nn.Parameter(torch.zeros(c["vocab_size"]))
        self.cls.predictions.transform = Holder()
        h = c["text_hidden"]
        self.cls.predictions.transform.dense = AdaptedLinear(h, h, c["initializer_range"])
        self.cls.predictions.transform.LayerNorm = nn.LayerNorm(h, eps=c["text_ln_eps"])
        self.prompt_encoder = None   # `text_decoder.prompt_encoder` (on the LM head model, not on `bert`)

    def logits(self, hidden):
        t = self.cls.predictions.transform
        x = t.LayerNorm(F.gelu(t.dense(hidden)))
        return F.linear(x, self.bert.embeddings.word_embeddings.weight, self.cls.predictions.bias)


class MISS(nn.Module):
    def __init__(self, c, vit="T", jtm="T", dec="T", rank=8):
        super().__init__()
        self.c = c
        self.modes = (vit, jtm, dec)
        self.use_cache = True   # generation keeps self-attention keys/values (HF's default use_cache=True)
        if vit in ("prefix", "ptv2"):
            raise SystemExit(f"{vit} on the ViT is not supported")
        self.visual_encoder = VisionTransformer(c)
        self.text_encoder = BertModel(c, c["text_layers"], c["vision_width"], causal=False)
        self.text_decoder = LMHeadModel(c)
        self._adapters(rank)
        self._trainability()

    def _adapters(self, r):
        c = self.c
        a, p = c["lora_alpha"], c["lora_dropout"]
        vit, jtm, dec = self.modes
        if vit == "lora":
            self.visual_encoder.patch_embed.proj.add_lora(r, a, p)
            for b in self.visual_encoder.blocks:
                for l in (b.attn.qkv, b.attn.proj, b.mlp.fc1, b.mlp.fc2):
                    l.add_lora(r, a, p)
        elif vit == "ia3":
            target = c["vit_ia3_target"]
            for b in self.visual_encoder.blocks:
                if target == "fc2":
                    b.mlp.fc2.add_ia3(scale_input=True)
                elif target == "fc1":
                    b.mlp.fc1.add_ia3(scale_input=False)
                else:
                    b.attn.qkv.add_ia3(scale_input=False)
                    b.attn.proj.add_ia3(scale_input=False)
        for owner, bert, mode, layers in ((self.text_encoder, self.text_encoder, jtm, c["text_layers"]),
                                          (self.text_decoder, self.text_decoder.bert, dec, c["decoder_layers"])):
            for layer in bert.encoder.layer:
                for block in (layer.attention, layer.crossattention):
                    s = getattr(block, "self")
                    if mode == "lora":
                        s.query.add_lora(r, a, p)
                        s.value.add_lora(r, a, p)
                    if mode == "ia3":
                        s.key.add_ia3(False)
                        s.value.add_ia3(False)
                        block.output.dense.add_ia3(True)
                if mode == "ia3":
                    layer.output.dense.add_ia3(True)
            if mode in ("prefix", "ptv2"):
                owner.prompt_encoder = PromptEncoder(c, layers, projection=(mode == "prefix"))
                nn.init.normal_(owner.prompt_encoder.embedding.weight, std=1.0)

    def _trainability(self):
        for module, mode in zip((self.visual_encoder, self.text_encoder, self.text_decoder), self.modes):
            for name, p in module.named_parameters():
                adapter = any(s in "." + name for s in (".lora_A.", ".lora_B.", ".prompt_encoder.")) \
                    or name.endswith("ia3_l")
                p.requires_grad_(mode == "T" or (mode not in ("F", "T") and adapter))

    def load_engine(self, tensors):
        """Copies tensors by name; every parameter of this model must be present with the same shape."""
        own = dict(self.named_parameters())
        missing = [n for n in own if n not in tensors]
        unexpected = [n for n in tensors if n not in own]
        if missing or unexpected:
            raise SystemExit(f"weights do not match the peer: missing {missing[:5]}, unexpected {unexpected[:5]}")
        with torch.no_grad():
            for n, p in own.items():
                t = torch.from_numpy(tensors[n])
                if tuple(t.shape) != tuple(p.shape):
                    raise SystemExit(f"tensor '{n}' has shape {tuple(t.shape)}, peer expects {tuple(p.shape)}")
                p.copy_(t.to(p.dtype))

    @staticmethod
    def _prefixes(owner, batch):
        return owner.prompt_encoder.prefixes(batch) if owner.prompt_encoder is not None else None

    def encode(self, images, qids, qmask):
        return self.text_encoder(qids, qmask, self.visual_encoder(images), None,
                                 self._prefixes(self.text_encoder, qids.shape[0]))

    def decode(self, aids, amask, memory, memory_mask, cached=None):
        return self.text_decoder.bert(aids, amask, memory, memory_mask,
                                      self._prefixes(self.text_decoder, aids.shape[0]), cached)

    def logits(self, images, qids, qmask, aids, amask):
        memory = self.encode(images, qids, qmask)
        qm = ((1 - qmask.to(memory.dtype)) * -10000.0)[:, None, None, :]
        hidden = self.decode(aids, amask, memory, qm)
        return self.text_decoder.logits(hidden[:, :-1])

    def loss(self, images, qids, qmask, aids, amask, return_logits=False):
        logits = self.logits(images, qids, qmask, aids, amask)
        targets = aids[:, 1:].clone()
        targets[targets == self.c["pad_token_id"]] = -100
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                              label_smoothing=0.1, reduction="none")
        loss = per.sum() / aids.shape[0]
        return (loss, logits) if return_logits else loss

    # -- generation (transformers 4.26 beam search as Generation.swift; cross-attention K/V computed once)

    @torch.no_grad()
    @torch.no_grad()   # as HF's generate
    def generate(self, images, qids, qmask, beams=3, max_length=10, min_length=1):
        was = self.training
        self.eval()
        try:
            memory = self.encode(images, qids, qmask)
            seqs = self._beam_search(memory, beams, max_length, min_length)
        finally:
            self.train(was)
        sep, pad = self.c["sep_token_id"], self.c["pad_token_id"]
        out = []
        for s in seqs:
            toks = []
            for t in s[1:]:
                if t in (sep, pad):
                    break
                toks.append(t)
            out.append(toks)
        return out

    def _cache(self, memory, times):
        cache = []
        for layer in self.text_decoder.bert.encoder.layer:
            k, v = getattr(layer.crossattention, "self").kv(memory)
            cache.append((k.repeat_interleave(times, 0), v.repeat_interleave(times, 0)))
        return cache

    def _next_logprobs(self, seqs, memory, cache, past=None):
        """Log-probabilities of the next token. With `past` (per-layer self-attention keys/values, as HF's
        `use_cache=True` generation keeps them) only the newest token is run; `past` is extended in place.
        Without it the whole prefix is recomputed (the reference path)."""
        if past is None:
            ids = torch.tensor(seqs, dtype=torch.long)
            hidden = self.decode(ids, torch.ones_like(ids), memory, None, cache)
            return torch.log_softmax(self.text_decoder.logits(hidden[:, -1]), dim=-1)
        tok = torch.tensor([[s[-1]] for s in seqs], dtype=torch.long)
        x = self._step(tok, len(seqs[0]) - 1, cache, past)
        return torch.log_softmax(self.text_decoder.logits(x[:, -1]), dim=-1)

    def _initial_past(self, rows):
        """Self-attention keys/values before the first answer token: the prompt's (prefix/PTV2) or empty."""
        bert = self.text_decoder.bert
        prefixes = self._prefixes(self.text_decoder, rows)
        if prefixes is not None:
            return [list(kv) for kv in prefixes]
        h = self.c["text_heads"]
        empty = torch.zeros(rows, h, 0, self.c["text_hidden"] // h)
        return [[empty, empty] for _ in bert.encoder.layer]

    def _step(self, tok, index, cache, past):
        """One decoder pass over the newest token (answer position `index`) against the cached keys/values."""
        bert = self.text_decoder.bert
        e = bert.embeddings
        n = past[0][0].shape[2] - index          # prompt tokens before the answer
        x = e.LayerNorm(e.word_embeddings(tok) + e.position_embeddings(torch.tensor([n + index]))[None])
        for li, layer in enumerate(bert.encoder.layer):
            sa = getattr(layer.attention, "self")
            k, v = sa.kv(x)
            past[li][0] = torch.cat([past[li][0], k], dim=2)
            past[li][1] = torch.cat([past[li][1], v], dim=2)
            q = split_heads(sa.query(x), sa.heads)
            s = layer.attention.output(merge_heads(attend(q, past[li][0], past[li][1], None, 0.0, False)), x)
            cross = layer.crossattention(s, None, None, None, cache[li])
            x = layer.output(F.gelu(layer.intermediate.dense(cross)), cross)
        return x

    def _beam_search(self, memory, beams, max_length, min_length):
        c = self.c
        eos, pad, v = c["sep_token_id"], c["pad_token_id"], c["vocab_size"]
        batch = memory.shape[0]
        cache = self._cache(memory, beams)
        past = self._initial_past(batch * beams) if self.use_cache else None
        seqs = [[c["dec_token_id"]] for _ in range(batch * beams)]
        scores = torch.tensor([0.0 if i % beams == 0 else -1e9 for i in range(batch * beams)])
        hyps = [Hypotheses(beams) for _ in range(batch)]
        done = [False] * batch
        while True:
            cur = len(seqs[0])
            logp = self._next_logprobs(seqs, memory, cache, past).float()
            if cur < min_length:
                logp[:, eos] = -math.inf
            total = (logp + scores[:, None]).reshape(batch, beams * v)
            top_s, top_i = torch.topk(total, 2 * beams, dim=1)
            new_seqs, new_scores, sources = [], [], []
            for b in range(batch):
                if done[b]:
                    for _ in range(beams):
                        new_seqs.append(seqs[b * beams] + [pad])
                        new_scores.append(0.0)
                        sources.append(b * beams)
                    continue
                kept = 0
                for rank in range(2 * beams):
                    s, i = float(top_s[b, rank]), int(top_i[b, rank])
                    beam, tok = divmod(i, v)
                    src = b * beams + beam
                    if tok == eos:
                        if rank < beams:
                            hyps[b].add(seqs[src], s)
                    else:
                        new_seqs.append(seqs[src] + [tok])
                        new_scores.append(s)
                        sources.append(src)
                        kept += 1
                    if kept == beams:
                        break
                done[b] = done[b] or hyps[b].is_done(float(top_s[b, 0]), cur)
            seqs, scores = new_seqs, torch.tensor(new_scores)
            if past is not None:   # HF _reorder_cache: each row continues the beam it was chosen from
                index = torch.tensor(sources, dtype=torch.long)
                past = [[k.index_select(0, index), v.index_select(0, index)] for k, v in past]
            if all(done) or len(seqs[0]) >= max_length:
                break
        result = []
        for b in range(batch):
            if not done[b]:
                for k in range(beams):
                    hyps[b].add(seqs[b * beams + k], float(scores[b * beams + k]))
            result.append(hyps[b].best())
        return result


class Hypotheses:
    """transformers 4.26 BeamHypotheses, length_penalty 1, early_stopping False."""

    def __init__(self, beams):
        self.beams, self.entries, self.worst = beams, [], 1e9

    def add(self, tokens, sum_logprobs):
        score = sum_logprobs / len(tokens)
        if len(self.entries) < self.beams or score > self.worst:
            self.entries.append((score, tokens))
            if len(self.entries) > self.beams:
                order = sorted(range(len(self.entries)), key=lambda i: self.entries[i][0])
                del self.entries[order[0]]
                self.worst = min(e[0] for e in self.entries)
            else:
                self.worst = min(score, self.worst)

    def is_done(self, best_sum, cur_len):
        return len(self.entries) >= self.beams and self.worst >= best_sum / cur_len

    def best(self):
        i_best = 0
        for i, e in enumerate(self.entries):
            if e[0] >= self.entries[i_best][0]:
                i_best = i
        return self.entries[i_best][1]


# ---------------------------------------------------------------------------------------------------
# Parity: golden fixtures (reference computed in float64 from the engine's float32 weights)


def load_case(case, directory, dtype):
    c = make_config(case["scale"], case.get("config_strings", {}))
    vit, jtm, dec = (parse_mode(m) for m in case["cell"])
    model = MISS(c, vit, jtm, dec, case.get("rank", 8))
    model.load_engine(read_safetensors(os.path.join(directory, case["name"] + ".weights.safetensors")))
    model = model.to(dtype)
    model.eval()
    inputs = read_safetensors(os.path.join(directory, case["name"] + ".inputs.safetensors"))
    images = torch.from_numpy(inputs["images"]).to(dtype)
    q = case["question"]
    a = case["answer"]
    qids, qmask = torch.tensor(q["ids"]).reshape(q["batch"], -1), torch.tensor(q["mask"]).reshape(q["batch"], -1)
    aids, amask = torch.tensor(a["ids"]).reshape(a["batch"], -1), torch.tensor(a["mask"]).reshape(a["batch"], -1)
    return model, (images, qids, qmask, aids, amask), inputs


def sample_indices(grad, k, seed):
    """Deterministic sample of element indices: all of a small tensor; otherwise the largest element and
    random ones among those at least 1 % of it (embedding gradients are mostly zero rows)."""
    g = np.abs(grad.detach().numpy())
    if g.size <= k:
        return list(range(g.size))
    strong = np.flatnonzero(g >= 0.01 * g.max())
    rng = np.random.default_rng(seed)
    pick = rng.choice(strong, size=min(k - 1, strong.size), replace=False)
    return sorted(set(int(i) for i in pick) | {int(g.argmax())})


def grad_sample_names(model, case):
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    wanted = case.get("grad_tensors")
    if wanted:
        bad = [n for n in wanted if n not in trainable]
        if bad:
            raise SystemExit(f"case {case['name']}: grad_tensors not trainable in the peer: {bad}")
        return wanted
    return trainable


def compute(model, batch):
    model.zero_grad(set_to_none=True)
    loss, logits = model.loss(*batch, return_logits=True)
    loss.backward()
    return loss, logits


def golden(args):
    spec = json.load(open(args.cases))
    os.makedirs(args.out_dir, exist_ok=True)
    for case in spec["cases"]:
        model, batch, inputs = load_case(case, args.dir, torch.float64)
        loss, logits = compute(model, batch)
        named = dict(model.named_parameters())
        grads = {}
        for i, name in enumerate(grad_sample_names(model, case)):
            g = named[name].grad
            if g is None:
                raise SystemExit(f"case {case['name']}: {name} has no gradient in the peer")
            flat = g.reshape(-1)
            idx = sample_indices(flat, case.get("grad_elements", 24), 1000 + i)
            grads[name] = {"indices": idx, "values": [float("%.12g" % float(flat[j])) for j in idx],
                           "max_abs": float(flat.abs().max()), "l2": float(flat.norm())}
        # fp32 peer values too, to show what float32 PyTorch itself gets against the float64 reference
        m32, b32, _ = load_case(case, args.dir, torch.float32)
        loss32, _ = compute(m32, b32)
        checks = {n: {"sum": float(np.sum(p.detach().numpy(), dtype=np.float64)),
                      "abs_sum": float(np.sum(np.abs(p.detach().numpy()), dtype=np.float64))}
                  for n, p in model.named_parameters()}
        out = {
            "case": case,
            "reference": "torch %s float64 (bench/torch_peer.py golden)" % torch.__version__,
            "images_sum": float(inputs["images"].astype(np.float64).sum()),
            "weights": checks,
            "loss": float(loss.detach()),
            "loss_torch_fp32": float(loss32.detach()),
            "logits_shape": list(logits.shape),
            "logits": [float("%.9g" % float(x)) for x in logits.detach().reshape(-1)],
            "grads": grads,
        }
        if case.get("generate"):
            g = case["generate"]
            out["generated"] = model.generate(batch[0], batch[1], batch[2], beams=g["beams"],
                                              max_length=g["max_length"], min_length=g.get("min_length", 1))
        path = os.path.join(args.out_dir, "parity_%s.json" % case["name"])
        with open(path, "w") as f:
            json.dump(out, f, separators=(",", ":"))
        l64, l32 = float(loss.detach()), float(loss32.detach())
        print("wrote %s (loss %.6f, fp32 peer rel %.2e)" % (path, l64, abs(l32 - l64) / abs(l64)))


# ---------------------------------------------------------------------------------------------------
# Speed: workers and the alternating driver

BENCH_MODES = {
    "full": ("T", "T", "T"),
    "lora": ("F", "lora", "lora"),
    "dec": ("F", "F", "T"),
    "infer": ("T", "T", "T"),
}


def peak_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def worker(args):
    torch.set_num_threads(args.threads)
    c = make_config("small", json.load(open(os.path.join(args.dir, "config.json"))))
    vit, jtm, dec = BENCH_MODES[args.mode]
    model = MISS(c, vit, jtm, dec, rank=args.rank)
    tensors = read_safetensors(os.path.join(args.dir, "weights.safetensors"))
    own = dict(model.named_parameters())
    base = [n for n in own if not any(k in n for k in ("lora_", "ia3_l", "prompt_encoder"))]
    absent = [n for n in base if n not in tensors] + [n for n in tensors if n not in own]
    if absent:
        raise SystemExit(f"weights.safetensors does not match the peer's base model: {absent[:5]}")
    with torch.no_grad():   # base weights from the engine; fresh adapters keep the peer's init
        for n, t in tensors.items():
            own[n].copy_(torch.from_numpy(t))
    del tensors
    inp = read_safetensors(os.path.join(args.dir, "inputs.safetensors"))
    images = torch.from_numpy(inp["images"])
    qids, qmask = torch.from_numpy(inp["question_ids"]).long(), torch.from_numpy(inp["question_mask"]).long()
    aids, amask = torch.from_numpy(inp["answer_ids"]).long(), torch.from_numpy(inp["answer_mask"]).long()
    del inp
    times = []
    if args.mode == "infer":
        model.eval()
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            out = model.generate(images, qids, qmask, beams=3, max_length=10, min_length=1)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        extra = {"answers": out}
    else:
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        try:   # the fused CPU kernel is PyTorch's fastest AdamW (2.4+); the default loops over tensors
            opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.05, fused=True)
        except (RuntimeError, TypeError, ValueError):
            opt = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.05)
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss = model.loss(images, qids, qmask, aids, amask)
            loss.backward()
            opt.step()
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
        extra = {"loss": float(loss.detach())}
    print(json.dumps(dict(side="torch", mode=args.mode, batch=images.shape[0], times=times,
                          peak_rss_mb=peak_rss_mb(), **extra)))


def cache_check(args):
    """The peer's cached beam search against its full recomputation, on the bench weights (adapters
    perturbed so that they matter): the generated tokens must be identical for every decoder kind."""
    torch.set_num_threads(args.threads)
    c = make_config("small", json.load(open(os.path.join(args.dir, "config.json"))))
    tensors = read_safetensors(os.path.join(args.dir, "weights.safetensors"))
    inp = read_safetensors(os.path.join(args.dir, "inputs.safetensors"))
    batch = (torch.from_numpy(inp["images"]), torch.from_numpy(inp["question_ids"]).long(),
             torch.from_numpy(inp["question_mask"]).long())
    failed = False
    for modes in [("T", "T", "T"), ("F", "lora", "lora"), ("F", "ia3", "ia3"), ("F", "prefix", "prefix"), ("F", "ptv2", "ptv2")]:
        model = MISS(c, *modes, rank=8)
        own = dict(model.named_parameters())
        with torch.no_grad():
            for n, p in own.items():
                p.copy_(torch.from_numpy(tensors[n])) if n in tensors else p.add_(torch.randn_like(p) * 0.05)
        timings = {}
        for use_cache in (False, True):
            model.use_cache = use_cache
            t0 = time.perf_counter()
            timings[use_cache] = (model.generate(*batch), time.perf_counter() - t0)
        same = timings[False][0] == timings[True][0]
        failed |= not same
        print("%-20s %s  recompute %.2f s, cached %.2f s" % (" ".join(modes), "identical" if same else "DIFFERENT",
                                                             timings[False][1], timings[True][1]))
    if failed:
        raise SystemExit("cached generation differs from recomputation")


def run_side(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("worker failed: %s\n%s" % (" ".join(cmd), p.stderr[-4000:]))
    return json.loads(p.stdout.strip().splitlines()[-1])


def matmul_flops_full_step(c, batch, tq, ta, head_rows=None, question_lengths=None):
    """Analytic matmul FLOPs of one full fine-tuning step (forward + backward; 2 flop per multiply-add).

    Every linear and attention matmul costs F forward, and F for each input that needs a gradient in
    backward (weights and activations: 2F), except the patch convolution whose image input needs none.
    The vocabulary head runs on `head_rows` rows: batch * (ta - 1) for the peer (every position but the
    last, as upstream), the number of non-PAD targets for the engine (it skips rows without a target).
    The JTM runs on every question position padded to tq (the peer), or on the real tokens only,
    `question_lengths` per item (the engine packs the rows, and its decoder cross-attends to those only)."""
    def lin(m, k, n):
        return 2.0 * m * k * n
    w, mlp, h, ffn, v = c["vision_width"], c["vision_mlp"], c["text_hidden"], c["text_intermediate"], c["vocab_size"]
    p = c["patch_size"]
    patches = (c["image_size"] // p) ** 2
    ni = patches + 1
    fwd = 0.0
    patch = lin(batch * patches, 3 * p * p, w)
    mv = batch * ni
    vit_block = lin(mv, w, 3 * w) + lin(mv, w, w) + lin(mv, w, mlp) + lin(mv, mlp, w) + 2 * 2.0 * batch * ni * ni * w
    fwd += c["vision_depth"] * vit_block

    def bert_layer(lengths, mem_lengths, mem_width):
        m = sum(lengths)
        self_part = 4 * lin(m, h, h) + 2 * 2.0 * sum(t * t for t in lengths) * h
        cross = 2 * lin(m, h, h) + 2 * lin(sum(mem_lengths), mem_width, h)
        cross += 2 * 2.0 * sum(t * s for t, s in zip(lengths, mem_lengths)) * h
        return self_part + cross + lin(m, h, ffn) + lin(m, ffn, h)

    questions = question_lengths or [tq] * batch
    fwd += c["text_layers"] * bert_layer(questions, [ni] * batch, w)
    fwd += c["decoder_layers"] * bert_layer([ta] * batch, questions, h)
    mh = batch * (ta - 1) if head_rows is None else head_rows
    fwd += lin(mh, h, h) + lin(mh, h, v)
    return patch * 2 + fwd * 3


def cpu_peak():
    """FMA peak of this CPU, from /proc/cpuinfo: cores x GHz x (2 FMA units x lanes x 2 flop)."""
    model, mhz, flags, cores = "?", 0.0, set(), os.cpu_count() or 1
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and model == "?":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":", 1)[1])
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    units = 2
    return model, mhz, lanes, units, cores, cores * mhz / 1000 * units * lanes * 2


def reference_gemm_rate(threads):
    """GFLOP/s of one large fp32 product in this process: what the BLAS reaches where packing and
    element-wise work do not count, a practical ceiling beside the nominal peak (the cores may turbo)."""
    torch.set_num_threads(threads)
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def stats(xs):
    s = sorted(xs)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    return med, s[0], s[-1]


def bench(args):
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, MILE_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
    # On a loaded machine libgomp's active waiting makes PyTorch 10-30x slower (a parked worker stalls
    # every parallel region); --torch-omp-passive trades that for a small cost on a quiet machine.
    torch_env = dict(env, OMP_WAIT_POLICY="PASSIVE") if args.torch_omp_passive else env
    engine_env = dict(env)
    for item in args.engine_env:
        key, _, value = item.partition("=")
        engine_env[key] = value
    engine = os.path.abspath(args.engine)
    args.blas_core = openblas_core(engine, engine_env, work, args)   # also writes the weights and the batch
    modes = args.modes.split(",")
    results = {m: {"engine": [], "torch": []} for m in modes}
    for r in range(args.rounds):
        for mode in modes:
            sides = ["engine", "torch"] if r % 2 == 0 else ["torch", "engine"]
            for side in sides:
                if side == "engine":
                    cmd = [engine, "worker", "--mode", mode, "--dir", work, "--steps", str(args.steps),
                           "--warmup", str(args.warmup)]
                else:
                    cmd = [sys.executable, os.path.abspath(__file__), "worker", "--mode", mode, "--dir", work,
                           "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
                res = run_side(cmd, engine_env if side == "engine" else torch_env)
                results[mode][side].append(res)
                sps = [res["batch"] / t for t in res["times"]]
                print("round %d %-5s %-6s samples/s %s  peak RSS %.0f MB" % (
                    r + 1, mode, side, " ".join("%.2f" % x for x in sps), res["peak_rss_mb"]), flush=True)
    report(results, modes, args)


def openblas_core(engine, env, work, args):
    """The kernel set OpenBLAS picks for the engine (OPENBLAS_VERBOSE=2 prints it at load time)."""
    p = subprocess.run([engine, "prepare", "--dir", work, "--scale", args.scale, "--batch", str(args.batch),
                        "--question", str(args.question), "--answer", str(args.answer)],
                       env=dict(env, OPENBLAS_VERBOSE="2"), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("PeerBench prepare failed:\n" + p.stderr[-4000:])
    lines = [l for l in (p.stdout + p.stderr).splitlines() if l.startswith("Core:")]
    return lines[-1].split(":", 1)[1].strip() if lines else "unknown"


def report(results, modes, args):
    c = make_config("small", json.load(open(os.path.join(os.path.abspath(args.work), "config.json"))))
    print()
    print("%s preset, batch %d, question %d / answer %d tokens, fp32, %d threads, %d rounds x %d timed steps "
          "(alternating engine/PyTorch)" % (args.scale, args.batch, args.question, args.answer, args.threads,
                                            args.rounds, args.steps))
    print("engine: OpenBLAS core %s%s; PyTorch %s (%s)" % (
        args.blas_core, (" (" + " ".join(args.engine_env) + ")") if args.engine_env else "", torch.__version__,
        "MKL" if torch.backends.mkl.is_available() else "no MKL") +
        (", OMP_WAIT_POLICY=PASSIVE" if args.torch_omp_passive else ""))
    print()
    print("| mode | engine samples/s (median, range) | PyTorch samples/s (median, range) | ratio (median, range) | "
          "ratio of best steps | engine peak RSS MB | PyTorch peak RSS MB | RSS ratio |")
    print("|---|---|---|---|---|---|---|---|")
    names = {"full": "full fine-tuning (T T T)", "lora": "LoRA JTM+Dec (F lora lora r8)",
             "dec": "decoder only (F F T)", "infer": "inference (beam 3, max 10)"}
    summary = {}
    for mode in modes:
        e = [results[mode]["engine"], results[mode]["torch"]]
        sps = [[run["batch"] / t for run in side for t in run["times"]] for side in e]
        (em, elo, ehi), (tm, tlo, thi) = stats(sps[0]), stats(sps[1])
        # ratio range: per round, engine median over PyTorch median
        per_round = [stats([run_e["batch"] / t for t in run_e["times"]])[0] /
                     stats([run_t["batch"] / t for t in run_t["times"]])[0] for run_e, run_t in zip(e[0], e[1])]
        rm, rlo, rhi = stats(per_round)
        erss = max(r["peak_rss_mb"] for r in e[0])
        trss = max(r["peak_rss_mb"] for r in e[1])
        summary[mode] = dict(engine=em, torch=tm, ratio=rm, best_ratio=ehi / thi, engine_rss=erss, torch_rss=trss)
        # the best step of each side is the least disturbed by other load on a shared machine
        print("| %s | %.2f (%.2f-%.2f) | %.2f (%.2f-%.2f) | %.2fx (%.2f-%.2f) | %.2fx | %.0f | %.0f | %.2f |" % (
            names.get(mode, mode), em, elo, ehi, tm, tlo, thi, rm, rlo, rhi, ehi / thi, erss, trss, erss / trss))
        if mode == "infer":
            same = all(a["answers"] == b["answers"] for a, b in zip(e[0], e[1]) if "answers" in a)
            print("|   | generated answers identical on both sides: %s |  |  |  |  |  |  |" % same)
    print()
    if "full" in summary:
        inputs = read_safetensors(os.path.join(os.path.abspath(args.work), "inputs.safetensors"))
        targets = int((inputs["answer_ids"][:, 1:] != c["pad_token_id"]).sum())
        lengths = [int(n) for n in inputs["question_mask"].sum(axis=1)]
        side_flops = dict(engine=matmul_flops_full_step(c, args.batch, args.question, args.answer, head_rows=targets,
                                                        question_lengths=lengths),
                          torch=matmul_flops_full_step(c, args.batch, args.question, args.answer))
        print("vocabulary head rows per step: engine %d (positions with a target), PyTorch %d (all but the last)" % (
            targets, args.batch * (args.answer - 1)))
        print("JTM rows per step: engine %d (question tokens, padding skipped), PyTorch %d (padded to %d)" % (
            sum(lengths), args.batch * args.question, args.question))
        model, mhz, lanes, units, cores, peak = cpu_peak()
        print("CPU: %s, %d cores at %.0f MHz (cpuinfo), %d-lane fp32 FMA x %d units assumed -> FMA peak %.1f GFLOP/s "
              "for %d threads" % (model, cores, mhz, lanes, units, peak * args.threads / cores, args.threads))
        peak = peak * args.threads / cores
        rate = reference_gemm_rate(args.threads)
        print("reference: torch.mm 2048 x 2048 x 2048 on %d threads, best of 5: %.1f GFLOP/s = %.1f %% of peak" % (
            args.threads, rate, 100 * rate / peak))
        for side in ("engine", "torch"):
            flops = side_flops[side]
            runs = results["full"][side]
            median_sps = summary["full"][side]
            best_sps = max(run["batch"] / t for run in runs for t in run["times"])
            for label, sps in (("median", median_sps), ("best", best_sps)):
                rate = flops * sps / args.batch / 1e9
                print("full fine-tuning, %.2f GFLOP of matmuls per step: %-6s %-6s step %.1f GFLOP/s = %.1f %% of peak" % (
                    flops / 1e9, side, label, rate, 100 * rate / peak))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(results=results, summary=summary), f, indent=1)



# ---------------------------------------------------------------------------------------------------
# conv2d on ResNet-50 stage shapes (BiomedGPT-Tiny's trunk), against `EngineBench conv`

# (name, input channels, input size, output channels, kernel, stride, padding): EngineBench's list.
RESNET_CONV_SHAPES = [
    ("stem [3,256,256] -> 64 7/2/3", 3, 256, 64, 7, 2, 3),
    ("s1 [64,64,64] -> 64 1/1/0", 64, 64, 64, 1, 1, 0),
    ("s1 [64,64,64] -> 64 3/1/1", 64, 64, 64, 3, 1, 1),
    ("s1 [64,64,64] -> 256 1/1/0", 64, 64, 256, 1, 1, 0),
    ("s2 [256,64,64] -> 128 1/1/0", 256, 64, 128, 1, 1, 0),
    ("s2 [128,64,64] -> 128 3/2/1", 128, 64, 128, 3, 2, 1),
    ("s2 [128,32,32] -> 128 3/1/1", 128, 32, 128, 3, 1, 1),
    ("s2 [128,32,32] -> 512 1/1/0", 128, 32, 512, 1, 1, 0),
    ("s3 [256,32,32] -> 256 3/2/1", 256, 32, 256, 3, 2, 1),
    ("s3 [256,16,16] -> 256 3/1/1", 256, 16, 256, 3, 1, 1),
    ("s3 [1024,16,16] -> 256 1/1/0", 1024, 16, 256, 1, 1, 0),
    ("s3 [256,16,16] -> 1024 1/1/0", 256, 16, 1024, 1, 1, 0),
]


def best_ms(reps, fn):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times) * 1e3


def torch_conv_times(batch, reps):
    """name -> (forward ms, forward+backward ms) of F.conv2d, fp32, no bias, as EngineBench times them."""
    out = {}
    for name, c, h, o, k, stride, padding in RESNET_CONV_SHAPES:
        x = (torch.rand(batch, c, h, h) * 2 - 1).requires_grad_()
        w = (torch.rand(o, c, k, k) * 2 - 1).requires_grad_()
        with torch.no_grad():
            fwd = best_ms(reps, lambda: F.conv2d(x, w, stride=stride, padding=padding))

        def step():
            F.conv2d(x, w, stride=stride, padding=padding).sum().backward()
            x.grad = None
            w.grad = None
        both = best_ms(reps, step)
        out[name] = (fwd, both)
    return out


def engine_conv_times(engine):
    """Parses `EngineBench conv`: name -> (forward ms, forward+backward ms)."""
    text = subprocess.run([engine, "conv"], check=True, capture_output=True, text=True).stdout
    out = {}
    for line in text.splitlines():
        for name, *_ in RESNET_CONV_SHAPES:
            if line.startswith(name):
                fwd, both = line[len(name):].split()[:2]
                out[name] = (float(fwd), float(both))
    return out


def conv(args):
    torch.set_num_threads(args.threads)
    engine, peer = engine_conv_times(args.engine), torch_conv_times(2, args.reps)
    print(f"conv2d, batch 2, {args.threads} threads, best of {args.reps} (ms); ratio = engine / torch")
    print(f"{'shape':34} {'eng fwd':>8} {'torch fwd':>9} {'ratio':>6} {'eng f+b':>8} {'torch f+b':>9} {'ratio':>6}")
    totals = [0.0, 0.0, 0.0, 0.0]
    for name, *_ in RESNET_CONV_SHAPES:
        (ef, eb), (tf, tb) = engine[name], peer[name]
        totals = [totals[0] + ef, totals[1] + tf, totals[2] + eb, totals[3] + tb]
        print(f"{name:34} {ef:8.2f} {tf:9.2f} {ef / tf:6.2f} {eb:8.2f} {tb:9.2f} {eb / tb:6.2f}")
    ef, tf, eb, tb = totals
    print(f"{'sum':34} {ef:8.2f} {tf:9.2f} {ef / tf:6.2f} {eb:8.2f} {tb:9.2f} {eb / tb:6.2f}")

# ---------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------
# OFA / BiomedGPT-Tiny (Table 5): an independent peer of Sources/MileModel/OFA, written from OFA's fairseq
# code (models/ofa/unify_transformer.py, unify_transformer_layer.py, unify_multihead_attention.py,
# resnet.py) in its own terms: the full upstream bucket tables, (B, T, C) tensors with fairseq's head
# split, -inf key padding and causal masks, BatchNorm2d in eval mode. Names are the HF port's (the
# engine's `OFAModel.save`). `ofa-golden` writes Tests/MileModelTests/Fixtures/ofa_parity.json.

OFA_SMOKE = dict(image_size=32, resnet_layers=[1, 1, 1], resnet_width=4, d_model=32, encoder_layers=2,
                 decoder_layers=2, attention_heads=2, ffn_dim=64, layer_norm_eps=1e-5, attn_scale_factor=2.0,
                 token_bucket_size=16, image_bucket_size=4, max_positions=64, vocab_size=100, pad_token_id=0,
                 bos_token_id=98, eos_token_id=3, lora_alpha=32.0, lora_dropout=0.1, prefix_tokens=10)


def ofa_token_rp_bucket(bucket_size, max_position=1024):
    """make_token_bucket_position: relative position (query - key) -> table row, log-spaced past mid."""
    rel = torch.arange(max_position)[:, None] - torch.arange(max_position)[None, :]
    mid = bucket_size // 2
    absolute = torch.where((rel < mid) & (rel > -mid), torch.full_like(rel, mid - 1), rel.abs())
    logged = torch.ceil(torch.log(absolute / mid) / math.log((max_position - 1) / mid) * (mid - 1)) + mid
    bucket = torch.where(absolute <= mid, rel, logged.int() * torch.sign(rel))
    return bucket.long() + bucket_size - 1


def ofa_image_rp_bucket(bucket_size):
    """make_image_bucket_position: [(bs² + 1)², ] table of rows for image positions 1 + y·bs + x (row/col 0 the
    CLS-like slot OFA's ResNet path never uses)."""
    n_rel = (2 * bucket_size - 1) ** 2 + 3
    ys, xs = torch.meshgrid(torch.arange(bucket_size), torch.arange(bucket_size), indexing="ij")
    coords = torch.stack([ys.reshape(-1), xs.reshape(-1)])                       # [2, bs²]
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + bucket_size - 1
    table = torch.zeros(bucket_size ** 2 + 1, bucket_size ** 2 + 1, dtype=torch.long)
    table[1:, 1:] = rel[:, :, 0] * (2 * bucket_size - 1) + rel[:, :, 1]
    table[0, :] = n_rel - 3
    table[:, 0] = n_rel - 2
    table[0, 0] = n_rel - 1
    return table


class TorchBottleneck(nn.Module):
    def __init__(self, inplanes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(planes * 4))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(identity + out)


class TorchResNet(nn.Module):
    def __init__(self, layers, width):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        inplanes = width
        for i, blocks in enumerate(layers):
            planes = width * 2 ** i
            stage = []
            for b in range(blocks):
                stage.append(TorchBottleneck(inplanes, planes, 2 if b == 0 and i > 0 else 1))
                inplanes = planes * 4
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*stage))
        self.stages = len(layers)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(self.stages):
            x = getattr(self, "layer%d" % (i + 1))(x)
        return x


class TorchOFAAttention(nn.Module):
    """fairseq MultiheadAttention with OFA's scale_factor, attn_bias on the last src_len columns, prompt K/V
    in front of the keys and the NormFormer head scale c_attn."""

    def __init__(self, d, heads, factor):
        super().__init__()
        self.c_attn = nn.Parameter(torch.ones(heads))
        self.k_proj, self.v_proj = AdaptedLinear(d, d, 0.0), AdaptedLinear(d, d, 0.0)
        self.q_proj, self.out_proj = AdaptedLinear(d, d, 0.0), AdaptedLinear(d, d, 0.0)
        self.heads, self.head_dim = heads, d // heads
        self.scaling = float(self.head_dim * factor) ** -0.5

    def forward(self, query, key, attn_bias=None, key_padding_mask=None, attn_mask=None, prompt_kv=None):
        b, t, d = query.shape
        s, h, dh = key.shape[1], self.heads, self.head_dim
        q = (self.q_proj(query) * self.scaling).view(b, t, h, dh).transpose(1, 2)
        k = self.k_proj(key).view(b, s, h, dh).transpose(1, 2)
        v = self.v_proj(key).view(b, s, h, dh).transpose(1, 2)
        if prompt_kv is not None:
            k, v = torch.cat([prompt_kv[0], k], 2), torch.cat([prompt_kv[1], v], 2)
        w = q @ k.transpose(2, 3)
        if attn_bias is not None:
            w = torch.cat([w[..., :w.shape[-1] - s], w[..., -s:] + attn_bias], -1)
        if attn_mask is not None:
            w = w + attn_mask
        if key_padding_mask is not None:
            w = w.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        a = torch.softmax(w, -1) @ v                                     # [B, H, T, dh]
        a = a * self.c_attn.view(1, h, 1, 1)
        return self.out_proj(a.transpose(1, 2).reshape(b, t, d))


class TorchOFALayer(nn.Module):
    def __init__(self, c, decoder):
        super().__init__()
        d, eps, h, f = c["d_model"], c["layer_norm_eps"], c["attention_heads"], c["attn_scale_factor"]
        self.self_attn = TorchOFAAttention(d, h, f)
        self.self_attn_layer_norm = nn.LayerNorm(d, eps=eps)
        self.self_attn_mid_layer_norm = nn.LayerNorm(d, eps=eps)
        if decoder:
            self.cross_attn = TorchOFAAttention(d, h, f)
            self.cross_attn_layer_norm = nn.LayerNorm(d, eps=eps)
            self.cross_attn_mid_layer_norm = nn.LayerNorm(d, eps=eps)
        self.fc1, self.fc2 = AdaptedLinear(d, c["ffn_dim"], 0.0), AdaptedLinear(c["ffn_dim"], d, 0.0)
        self.ffn_layer_norm = nn.LayerNorm(c["ffn_dim"], eps=eps)
        self.final_layer_norm = nn.LayerNorm(d, eps=eps)

    def forward(self, x, self_bias, self_padding=None, self_mask=None, prompt_kv=None, enc=None, enc_padding=None,
                cross_bias=None):
        y = self.self_attn_layer_norm(x)
        y = self.self_attn(y, y, attn_bias=self_bias, key_padding_mask=self_padding, attn_mask=self_mask,
                           prompt_kv=prompt_kv)
        x = x + self.self_attn_mid_layer_norm(y)
        if enc is not None:
            y = self.cross_attn(self.cross_attn_layer_norm(x), enc, attn_bias=cross_bias, key_padding_mask=enc_padding)
            x = x + self.cross_attn_mid_layer_norm(y)
        y = self.fc2(self.ffn_layer_norm(F.gelu(self.fc1(self.final_layer_norm(x)))))
        return x + y


def _pos_bias(q_linear, k_linear, q_pos, k_pos, heads, scaling):
    b, t, d = q_pos.shape
    q = q_linear(q_pos).view(b, t, heads, -1).transpose(1, 2) * scaling
    k = k_linear(k_pos).view(b, k_pos.shape[1], heads, -1).transpose(1, 2)
    return q @ k.transpose(2, 3)


class TorchOFAEncoder(nn.Module):
    def __init__(self, c, embed_tokens):
        super().__init__()
        d, eps, h, n = c["d_model"], c["layer_norm_eps"], c["attention_heads"], c["encoder_layers"]
        self.c = c
        self.layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.embed_tokens = embed_tokens
        self.type_embedding = nn.Embedding(2, d)
        self.embed_images = TorchResNet(c["resnet_layers"], c["resnet_width"])
        self.image_proj = AdaptedLinear(c["resnet_width"] * 16, d, 0.0)
        self.patch_layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.embed_positions = nn.Embedding(c["max_positions"] + 2, d)
        self.embed_image_positions = nn.Embedding(c["image_bucket_size"] ** 2 + 1, d)
        self.pos_ln, self.image_pos_ln = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.pos_q_linear, self.pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.layers = nn.ModuleList([TorchOFALayer(c, False) for _ in range(n)])
        self.layer_norm = nn.LayerNorm(d, eps=eps)
        bs = c["token_bucket_size"]
        self.token_rel_pos_table_list = nn.ModuleList([nn.Embedding(2 * bs - 1, h) for _ in range(n)])
        ibs = c["image_bucket_size"]
        self.image_rel_pos_table_list = nn.ModuleList([nn.Embedding((2 * ibs - 1) ** 2 + 3, h) for _ in range(n)])
        self.token_rp_bucket = ofa_token_rp_bucket(bs)
        self.image_rp_bucket = ofa_image_rp_bucket(ibs)
        self.pos_scaling = float(d / h * c["attn_scale_factor"]) ** -0.5

    def forward(self, images, src_tokens, src_padding):
        c, h = self.c, self.c["attention_heads"]
        feats = self.embed_images(images)
        gh, gw = feats.shape[-2:]
        image_embed = feats.flatten(2).transpose(1, 2)                               # [B, N, C]
        image_ids = (torch.arange(gw)[None, :].expand(gh, gw) + torch.arange(gh)[:, None] * c["image_bucket_size"] + 1).reshape(-1)
        b, t = src_tokens.shape
        nimg = image_ids.numel()
        x = self.layernorm_embedding(self.embed_tokens(src_tokens) + self.type_embedding(torch.zeros_like(src_tokens)))
        ix = self.image_proj(image_embed) + self.type_embedding(torch.ones(b, nimg, dtype=torch.long))
        x = torch.cat([self.patch_layernorm_embedding(ix), x], 1)
        padding = torch.cat([torch.zeros(b, nimg, dtype=torch.bool), src_padding], 1)
        x = x * (1 - padding.unsqueeze(-1).type_as(x))
        pos = torch.cat([self.image_pos_ln(self.embed_image_positions(image_ids))[None],
                         self.pos_ln(self.embed_positions(torch.arange(t)))[None]], 1)   # [1, L, d]
        absolute = _pos_bias(self.pos_q_linear, self.pos_k_linear, pos, pos, h, self.pos_scaling)
        img_rows = self.image_rp_bucket[image_ids][:, image_ids]
        for idx, layer in enumerate(self.layers):
            bias = absolute.expand(b, -1, -1, -1).clone()
            bias[:, :, -t:, -t:] += self.token_rel_pos_table_list[idx](self.token_rp_bucket[:t, :t]).permute(2, 0, 1)
            bias[:, :, :nimg, :nimg] += self.image_rel_pos_table_list[idx](img_rows).permute(2, 0, 1)
            x = layer(x, bias, self_padding=padding if padding.any() else None)
        return self.layer_norm(x), padding, pos


class TorchOFADecoder(nn.Module):
    def __init__(self, c, embed_tokens):
        super().__init__()
        d, eps, h, n = c["d_model"], c["layer_norm_eps"], c["attention_heads"], c["decoder_layers"]
        self.c = c
        self.embed_tokens = embed_tokens
        self.layers = nn.ModuleList([TorchOFALayer(c, True) for _ in range(n)])
        self.layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.embed_positions = nn.Embedding(c["max_positions"] + 2, d)
        self.embed_image_positions = nn.Embedding(c["image_bucket_size"] ** 2 + 1, d)
        self.pos_ln, self.image_pos_ln = nn.LayerNorm(d, eps=eps), nn.LayerNorm(d, eps=eps)
        self.self_pos_q_linear, self.self_pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.cross_pos_q_linear, self.cross_pos_k_linear = nn.Linear(d, d), nn.Linear(d, d)
        self.code_layernorm_embedding = nn.LayerNorm(d, eps=eps)
        self.layer_norm = nn.LayerNorm(d, eps=eps)
        bs, ibs = c["token_bucket_size"], c["image_bucket_size"]
        self.token_rel_pos_table_list = nn.ModuleList([nn.Embedding(2 * bs - 1, h) for _ in range(n)])
        self.image_rel_pos_table_list = nn.ModuleList([nn.Embedding((2 * ibs - 1) ** 2 + 3, h) for _ in range(n)])
        self.token_rp_bucket = ofa_token_rp_bucket(bs)
        self.pos_scaling = float(d / h * c["attn_scale_factor"]) ** -0.5
        self.prompt_encoder = None

    def forward(self, prev, enc, enc_padding, enc_pos):
        c, h = self.c, self.c["attention_heads"]
        b, t = prev.shape
        tgt_pos = self.pos_ln(self.embed_positions(torch.arange(t)))[None]
        self_abs = _pos_bias(self.self_pos_q_linear, self.self_pos_k_linear, tgt_pos, tgt_pos, h, self.pos_scaling)
        cross_abs = _pos_bias(self.cross_pos_q_linear, self.cross_pos_k_linear, tgt_pos, enc_pos, h, self.pos_scaling)
        x = self.layernorm_embedding(self.embed_tokens(prev))
        prompts = self.prompt_encoder.prefixes(b) if self.prompt_encoder is not None else None
        n = prompts[0][0].shape[2] if prompts else 0
        padding = prev.eq(c["pad_token_id"])
        padding = torch.cat([torch.zeros(b, n, dtype=torch.bool), padding], 1) if padding.any() else None
        causal = torch.triu(torch.full((t, t), float("-inf"), dtype=x.dtype), 1)
        causal = torch.cat([torch.zeros(t, n, dtype=x.dtype), causal], 1)
        for idx, layer in enumerate(self.layers):
            bias = self_abs + self.token_rel_pos_table_list[idx](self.token_rp_bucket[:t, :t]).permute(2, 0, 1)
            x = layer(x, bias, self_padding=padding, self_mask=causal, prompt_kv=prompts[idx] if prompts else None,
                      enc=enc, enc_padding=enc_padding if enc_padding.any() else None, cross_bias=cross_abs)
        return self.layer_norm(x) @ self.embed_tokens.weight.t()


class TorchOFA(nn.Module):
    def __init__(self, c, enc="T", dec="T", rank=8):
        super().__init__()
        self.c = c
        shared = nn.Embedding(c["vocab_size"], c["d_model"])
        self.encoder = TorchOFAEncoder(c, shared)
        self.decoder = TorchOFADecoder(c, shared)
        self.modes = (enc, dec)
        for mode, module in ((enc, self.encoder), (dec, self.decoder)):
            for name, m in module.named_modules():
                if not isinstance(m, AdaptedLinear):
                    continue
                leaf = name.split(".")[-1]
                if mode == "lora" and leaf in ("q_proj", "v_proj"):
                    m.add_lora(rank, c["lora_alpha"], c["lora_dropout"])
                if mode == "ia3" and leaf in ("k_proj", "v_proj", "fc2"):
                    m.add_ia3(leaf == "fc2")
        if dec in ("prefix", "ptv2"):
            p = dict(text_hidden=c["d_model"], text_heads=c["attention_heads"], prefix_tokens=c["prefix_tokens"])
            self.decoder.prompt_encoder = PromptEncoder(p, c["decoder_layers"], dec == "prefix")
        for mode, module in ((enc, self.encoder), (dec, self.decoder)):
            for name, prm in module.named_parameters():
                adapter = "lora_" in name or "ia3_l" in name or "prompt_encoder" in name
                prm.requires_grad_(mode == "T" or (mode not in ("T", "F") and adapter))
        shared.weight.requires_grad_(enc == "T" and dec == "T")

    def load_engine(self, tensors):
        own = dict(self.named_parameters())
        own.update(dict(self.named_buffers()))
        names = [n for n in own if not n.endswith("num_batches_tracked") and "rp_bucket" not in n]
        missing = [n for n in names if n not in tensors]
        extra = [n for n in tensors if n not in own]
        if missing or extra:
            raise SystemExit(f"weights do not match the OFA peer: missing {missing[:5]}, extra {extra[:5]}")
        with torch.no_grad():
            for n, t in tensors.items():
                if own[n].shape != t.shape:
                    raise SystemExit(f"{n}: shape {list(t.shape)} vs peer {list(own[n].shape)}")
                own[n].copy_(torch.from_numpy(t))

    def loss(self, images, qids, qmask, aids, amask):
        enc, enc_padding, enc_pos = self.encoder(images, qids, qmask.eq(0))
        logits = self.decoder(aids[:, :-1], enc, enc_padding, enc_pos)
        targets = aids[:, 1:].clone()
        targets[(targets == self.c["pad_token_id"]) | amask[:, 1:].eq(0)] = -100
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                               label_smoothing=0.1)
        return loss, logits


def ofa_golden(args):
    cases = json.load(open(os.path.join(args.dir, "ofa_cases.json")))
    out = {"reference": "torch %s float64 (bench/torch_peer.py ofa-golden)" % torch.__version__, "cases": []}
    for case in cases:
        results = {}
        for dtype in (torch.float64, torch.float32):
            c = dict(OFA_SMOKE, **case["overrides"])
            model = TorchOFA(c, case["cell"][0], case["cell"][1], case["rank"])
            model.load_engine(read_safetensors(os.path.join(args.dir, "ofa_%s.weights.safetensors" % case["name"])))
            model = model.to(dtype).eval()
            inputs = read_safetensors(os.path.join(args.dir, "ofa_%s.inputs.safetensors" % case["name"]))
            images = torch.from_numpy(inputs["images"]).to(dtype)
            q, a = case["question"], case["answer"]
            qids, qmask = torch.tensor(q["ids"]).reshape(q["batch"], -1), torch.tensor(q["mask"]).reshape(q["batch"], -1)
            aids, amask = torch.tensor(a["ids"]).reshape(a["batch"], -1), torch.tensor(a["mask"]).reshape(a["batch"], -1)
            loss, logits = model.loss(images, qids, qmask, aids, amask)
            loss.backward()
            results[dtype] = (model, loss, logits, images)
        model, loss, logits, images = results[torch.float64]
        named = dict(model.named_parameters())
        grads = {}
        for i, name in enumerate(case["grad_tensors"]):
            if not named[name].requires_grad or named[name].grad is None:
                raise SystemExit(f"case {case['name']}: {name} has no gradient in the peer")
            flat = named[name].grad.reshape(-1)
            idx = sample_indices(flat, 16, 2000 + i)
            grads[name] = {"indices": idx, "values": [float("%.12g" % float(flat[j])) for j in idx],
                           "max_abs": float(flat.abs().max()), "l2": float(flat.norm())}
        out["cases"].append({
            "case": case,
            "images_sum": float(images.sum()),
            "weights": {n: {"sum": float(p.detach().sum()), "abs_sum": float(p.detach().abs().sum())}
                        for n, p in model.named_parameters()},
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
            "loss": float(loss.detach()),
            "loss_torch_fp32": float(results[torch.float32][1].detach()),
            "logits_shape": list(logits.shape),
            "logits": [float("%.9g" % float(x)) for x in logits.detach().reshape(-1)],
            "grads": grads,
        })
        l64, l32 = float(loss.detach()), float(results[torch.float32][1].detach())
        print("ofa %s: loss %.6f, fp32 peer rel %.2e" % (case["name"], l64, abs(l32 - l64) / abs(l64)))
    with open(args.out, "w") as f:
        json.dump(out, f, separators=(",", ":"))
    print("wrote %s" % args.out)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("golden", help="write parity fixtures from the engine's exported weights and inputs")
    g.add_argument("--cases", required=True)
    g.add_argument("--dir", required=True, help="directory written by `PeerBench export`")
    g.add_argument("--out-dir", required=True)
    o = sub.add_parser("ofa-golden", help="OFA parity fixture from `PeerBench ofa-export` (float64 reference)")
    o.add_argument("--dir", required=True)
    o.add_argument("--out", default="Tests/MileModelTests/Fixtures/ofa_parity.json")
    w = sub.add_parser("worker", help="one timed run (internal, used by bench)")
    w.add_argument("--mode", choices=list(BENCH_MODES), required=True)
    w.add_argument("--dir", required=True)
    w.add_argument("--steps", type=int, default=3)
    w.add_argument("--warmup", type=int, default=1)
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--rank", type=int, default=8)
    b = sub.add_parser("bench", help="alternate engine and PyTorch and print the table")
    b.add_argument("--engine", default=".build/release/PeerBench")
    b.add_argument("--work", default="bench/.work")
    b.add_argument("--modes", default="full,lora,dec,infer")
    b.add_argument("--rounds", type=int, default=3)
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--scale", choices=["small", "paper"], default="small",
                   help="model preset; paper is upstream's full size (use a small --batch, e.g. 2)")
    b.add_argument("--batch", type=int, default=32)
    b.add_argument("--question", type=int, default=35)
    b.add_argument("--answer", type=int, default=6)
    b.add_argument("--json", default="")
    b.add_argument("--torch-omp-passive", action="store_true",
                   help="run the PyTorch workers with OMP_WAIT_POLICY=PASSIVE (use on a loaded machine)")
    b.add_argument("--engine-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the engine workers, e.g. OPENBLAS_CORETYPE=SkylakeX")
    k = sub.add_parser("cache-check", help="cached beam search against recomputation (bench weights from `bench`)")
    k.add_argument("--dir", default=".build/peer-bench")
    k.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("conv", help="conv2d on ResNet-50 shapes: EngineBench conv against F.conv2d")
    c.add_argument("--engine", default=".build/release/EngineBench")
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    {"golden": golden, "worker": worker, "bench": bench, "cache-check": cache_check, "conv": conv,
     "ofa-golden": ofa_golden}[args.cmd](args)


if __name__ == "__main__":
    main()
