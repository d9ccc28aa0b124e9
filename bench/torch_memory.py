#!/usr/bin/env python3
"""PyTorch-equivalent Memory of the paper's 23 cells (issue 15): the peak of live allocated tensor bytes of
an upstream-style MISS training step at paper scale, measured without arithmetic.

The model is bench/torch_peer.py's paper-scale MISS (modules frozen, trained or PEFT-adapted as upstream's
manual freeze and peft wrapping leave them), built on the `meta` device. A TorchDispatchMode sees every
tensor an ATen op returns, in the forward pass, in autograd's backward pass and in AdamW's step; a weak
reference per storage tells when it is freed. The live sum, each storage rounded up to the CUDA caching
allocator's 512-byte block, is what `torch.cuda.max_memory_allocated` counts (spec §4.1); its maximum over
two training iterations (upstream's order: forward, zero_grad, backward, step, so the first step's
gradients and AdamW moments are alive during the second forward) is the cell's figure.

Where the peer mirrors the engine rather than upstream, this file restores upstream's memory behaviour:
CUDA's dropout (a 1-byte mask; the CPU/meta path keeps a float mask), timm's drop_path, peft's prompt
computed per batch row, BLIP's LM head over every answer position followed by a contiguous shifted copy,
and the additive all-zero image mask of the JTM's cross-attention.

Not modelled: cuBLAS/cuDNN workspaces, kernel-internal temporaries, the CUDA context, and allocator
behaviour beyond 512-byte rounding (whole-block reuse, fragmentation, the reserved pool).

`make memory-peer` writes bench/memory_pytorch.json (all 23 cells, the affine-in-batch check and the CPU
cross-check); `python bench/torch_memory.py -h` lists the options.
"""
import argparse
import contextlib
import json
import platform
import sys
import time
import weakref

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import torch_peer as tp

# The paper's 23 rows (Tables 1-4) as (ViT, JTM, Dec, LoRA rank or None), in table order.
CELLS = [("F", "lora", "lora", 4), ("F", "lora", "lora", 8), ("lora", "lora", "lora", 4), ("lora", "lora", "lora", 8),
         ("F", "T", "lora", 4), ("F", "T", "lora", 8), ("T", "lora", "lora", 4), ("T", "lora", "lora", 8),
         ("T", "T", "lora", 4), ("T", "T", "lora", 8),
         ("F", "F", "prefix", None), ("F", "prefix", "prefix", None), ("T", "prefix", "prefix", None), ("T", "T", "prefix", None),
         ("F", "ia3", "ia3", None), ("ia3", "ia3", "ia3", None), ("T", "ia3", "ia3", None), ("F", "T", "ia3", None), ("T", "T", "ia3", None),
         ("F", "ptv2", "ptv2", None), ("F", "F", "ptv2", None), ("T", "ptv2", "ptv2", None), ("T", "T", "ptv2", None)]

DISPLAY = {"F": "F", "T": "T", "lora": "LoRA", "ia3": "IA3", "prefix": "Prefix", "ptv2": "PTV2"}
BLOCK = 512   # CUDA caching allocator: every block is a multiple of 512 bytes (kMinBlockSize)


def label(cell):
    vit, jtm, dec, rank = cell
    base = " ".join(DISPLAY[m] for m in (vit, jtm, dec))
    return base if rank is None else f"{base} r{rank}"


# ---------------------------------------------------------------------------------------------------
# Live storage bytes


class LiveBytes(TorchDispatchMode):
    """Sums the bytes of live storages on one device; records the peak, the phase it falls in and the live
    bytes by kind (weights, optimizer state, gradients kept from the previous step, bool tensors: the
    dropout masks autograd keeps, and everything else)."""

    def __init__(self, device, block=BLOCK):
        super().__init__()
        self.device, self.block = device, block
        self.live = {"weights": 0, "optimizer_state": 0, "gradients": 0, "bool_masks": 0, "activations_and_temporaries": 0}
        self.kind = {}        # id(storage) -> (weakref, kind, rounded bytes)
        self.phase = "build"
        self.peak, self.peak_phase, self.peak_kinds = 0, None, {}
        self.phase_peaks = {}

    def track(self, t, kind="activations_and_temporaries"):
        if not isinstance(t, torch.Tensor) or t.device.type != self.device:
            return
        if t.dtype == torch.bool and kind == "activations_and_temporaries":
            kind = "bool_masks"
        st = t.untyped_storage()
        entry = self.kind.get(id(st))
        if entry is not None and entry[0]() is st:
            return
        n = -(-st.nbytes() // self.block) * self.block
        self.kind[id(st)] = (weakref.ref(st, self._freed(id(st))), kind, n)
        self.live[kind] += n
        self._note()

    def retag(self, t, kind):
        """Moves a live storage to another kind (gradients after backward, moments after the first step)."""
        entry = self.kind.get(id(t.untyped_storage()))
        if entry is not None and entry[1] != kind:
            self.live[entry[1]] -= entry[2]
            self.live[kind] += entry[2]
            self.kind[id(t.untyped_storage())] = (entry[0], kind, entry[2])

    def _freed(self, key):
        def callback(_):
            _, kind, n = self.kind.pop(key)
            self.live[kind] -= n
        return callback

    def _note(self):
        total = sum(self.live.values())
        self.phase_peaks[self.phase] = max(self.phase_peaks.get(self.phase, 0), total)
        if total > self.peak:
            self.peak, self.peak_phase, self.peak_kinds = total, self.phase, dict(self.live)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.track(t)
        return out


# ---------------------------------------------------------------------------------------------------
# Upstream's memory behaviour where the peer follows the engine


def cuda_dropout(x, p=0.5, training=True, inplace=False):
    """CUDA's F.dropout is native_dropout: the output plus a bool mask, and autograd keeps the mask."""
    if not training or p == 0:
        return x
    return torch.native_dropout(x, p, True)[0]


def timm_drop_path(self, x):
    """timm 0.4.12 drop_path: x.div(keep) * floor(keep + U[0,1)) per sample."""
    if not self.training or self.drop_path == 0:
        return x
    keep = 1 - self.drop_path
    r = keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype)
    r.floor_()
    return x.div(keep) * r


def peft_prefixes(self, batch):
    """peft 0.7.1 get_prompt: the prompt encoder runs on [batch, n] token ids, then view/permute/split."""
    tokens = torch.arange(self.n).unsqueeze(0).expand(batch, -1)
    x = self.embedding(tokens)
    if self.transform is not None:
        x = self.transform(x)
    kv = x.view(batch, self.n, self.layers * 2, self.heads, self.d // self.heads).permute(2, 0, 3, 1, 4).split(2)
    return [(pair[0], pair[1]) for pair in kv]


@contextlib.contextmanager
def upstream_behaviour():
    saved = (F.dropout, tp.ViTBlock._dp, tp.PromptEncoder.prefixes)
    F.dropout, tp.ViTBlock._dp, tp.PromptEncoder.prefixes = cuda_dropout, timm_drop_path, peft_prefixes
    try:
        yield
    finally:
        F.dropout, tp.ViTBlock._dp, tp.PromptEncoder.prefixes = saved


def additive_mask(keep):
    return ((1.0 - keep.to(torch.float32)) * -10000.0)[:, None, None, :]


def upstream_loss(model, images, qids, qmask, aids, amask):
    """MISS_VQA.forward(train=True) with BertLMHeadModel's loss (MILE models/miss_vqa.py, med.py)."""
    b = images.shape[0]
    image_embeds = model.visual_encoder(images)
    image_atts = torch.ones(image_embeds.shape[:-1], dtype=torch.long)
    question = model.text_encoder(qids, qmask, image_embeds, additive_mask(image_atts),
                                  model._prefixes(model.text_encoder, b))
    hidden = model.text_decoder.bert(aids, amask, question, additive_mask(qmask),
                                     model._prefixes(model.text_decoder, b))
    scores = model.text_decoder.logits(hidden)
    shifted = scores[:, :-1, :].contiguous()
    targets = aids.masked_fill(aids == model.c["pad_token_id"], -100)[:, 1:].contiguous()
    per = F.cross_entropy(shifted.view(-1, shifted.shape[-1]), targets.view(-1), reduction="none", label_smoothing=0.1)
    return per.view(b, -1).sum(1).sum() / b


# ---------------------------------------------------------------------------------------------------
# One cell


def build(cell, config, device):
    vit, jtm, dec, rank = cell
    with torch.device(device):
        model = tp.MISS(config, vit, jtm, dec, rank or 8)
    model.train()
    return model


def inputs(shape, config):
    b, q, a = shape["batch"], shape["question_tokens"], shape["answer_tokens"]
    s = config["image_size"]
    ids = lambda n: torch.ones(b, n, dtype=torch.long)   # non-PAD ids: every position counts
    return torch.zeros(b, 3, s, s), ids(q), ids(q), ids(a), ids(a)


def train(model, tracker, shape, device, steps):
    """Upstream's loop body (train_IA3.py / train_MILE.py): loss = model(...); zero_grad; backward; step."""
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.05, foreach=True) if steps else None
    for _ in range(max(steps, 1)):
        tracker.phase = "forward"
        with torch.device(device):
            loss = upstream_loss(model, *inputs(shape, model.c))
        tracker.phase = "zero_grad"
        model.zero_grad(set_to_none=True)
        tracker.phase = "backward"
        loss.backward()
        del loss
        for p in model.parameters():
            if p.grad is not None:
                tracker.retag(p.grad, "gradients")
        if opt is None:
            return
        tracker.phase = "step"
        opt.step()   # AdamW steps counters stay on the host, as on CUDA without capturable/fused
        for state in opt.state.values():
            for t in state.values():
                tracker.retag(t, "optimizer_state")


def measure(cell, config, shape, device="meta", steps=2, block=BLOCK):
    model = build(cell, config, device)
    tracker = LiveBytes(device, block)
    with upstream_behaviour(), tracker:
        for p in model.parameters():
            tracker.track(p, "weights")
        train(model, tracker, shape, device, steps)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"peak_bytes": tracker.peak, "peak_phase": tracker.peak_phase, "at_peak": tracker.peak_kinds,
            "phase_peaks": tracker.phase_peaks, "trainable": trainable,
            "total": sum(p.numel() for p in model.parameters())}


def affine(cell, config, shape, batches):
    """Peaks at small batches, the least-squares line through them and its value at the measured batch."""
    peaks = [measure(cell, config, dict(shape, batch=b))["peak_bytes"] for b in batches]
    n = len(batches)
    mx, my = sum(batches) / n, sum(peaks) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(batches, peaks)) / sum((x - mx) ** 2 for x in batches)
    line = lambda x: my + slope * (x - mx)
    return {"batches": batches, "peak_bytes": peaks, "bytes_per_sample": round(slope),
            "fit_residual_bytes": round(max(abs(line(x) - y) for x, y in zip(batches, peaks))),
            "extrapolated_bytes": round(line(shape["batch"]))}


def row(cell, config, shape, typical_answer, batches):
    main = measure(cell, config, shape)
    typical = measure(cell, config, dict(shape, answer_tokens=typical_answer))
    check = affine(cell, config, shape, batches)
    check["extrapolation_error_bytes"] = check["extrapolated_bytes"] - main["peak_bytes"]
    vit, jtm, dec, rank = cell
    return {"label": label(cell), "vit": vit, "jtm": jtm, "dec": dec, "rank": rank, **main,
            "typical_answer_peak_bytes": typical["peak_bytes"], "affine": check}


# ---------------------------------------------------------------------------------------------------
# CPU cross-check: the same step on real CPU tensors (meta kernels return what the real ones return) and
# the CPU allocator's own running total from the profiler (which also sees kernel-internal temporaries)


def allocator_peak(fn):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events() if e.name() == "[memory]")
    live = peak = 0
    for _, n in events:
        live += n
        peak = max(peak, live)
    return peak


def cpu_check(cell, config, shape):
    """One forward + backward (no optimizer) at a small batch on meta and on CPU, bytes unrounded as the CPU
    allocator's."""
    meta = measure(cell, config, shape, "meta", steps=0, block=1)["peak_bytes"]
    cpu = measure(cell, config, shape, "cpu", steps=0, block=1)["peak_bytes"]
    model = build(cell, config, "cpu")
    weights = sum(p.untyped_storage().nbytes() for p in model.parameters())

    def step():
        with upstream_behaviour():
            upstream_loss(model, *inputs(shape, config)).backward()
    profiled = allocator_peak(step) + weights
    return {"label": label(cell), "batch": shape["batch"], "meta_peak_bytes": meta, "cpu_peak_bytes": cpu,
            "cpu_allocator_peak_bytes": profiled}


# ---------------------------------------------------------------------------------------------------


def peak_rss_bytes():
    return int(tp.peak_rss_mb() * 1024 * 1024)


def run(args):
    start = time.time()
    torch.set_num_threads(args.threads)
    config = tp.make_config("paper")
    shape = {"batch": args.batch, "question_tokens": args.question, "answer_tokens": args.answer,
             "image_size": config["image_size"], "image_tokens": (config["image_size"] // config["patch_size"]) ** 2 + 1,
             "dtype": "float32"}
    batches = [int(b) for b in args.affine_batches.split(",")]
    cells = [c for c in CELLS if not args.cells or label(c) in args.cells.split(",")]
    rows = []
    for cell in cells:
        rows.append(row(cell, config, shape, args.typical_answer, batches))
        r = rows[-1]
        print(f"{r['label']:22s} {r['peak_bytes'] / 1e9:6.2f} GB ({r['peak_phase']}), answer {args.typical_answer}: "
              f"{r['typical_answer_peak_bytes'] / 1e9:6.2f} GB", flush=True)
    checks = [cpu_check(tuple(c), config, dict(shape, batch=args.cpu_batch)) for c in CPU_CHECK_CELLS] if args.cpu_check else []
    return {
        "what": "Peak live allocated tensor bytes of one upstream-style MISS training step per paper cell (issue 15)",
        "command": "make memory-peer", "argv": " ".join(["bench/torch_memory.py"] + sys.argv[1:]),
        "torch": torch.__version__, "python": platform.python_version(),
        "method": METHOD, "not_modelled": NOT_MODELLED,
        "unit": "bytes", "shape": shape, "shape_note": SHAPE_NOTE, "typical_answer_tokens": args.typical_answer,
        "config": config, "cells": rows, "cpu_check": checks,
        "wall_seconds": round(time.time() - start, 1), "peak_rss_bytes": peak_rss_bytes(),
    }


METHOD = ("paper-scale MISS of bench/torch_peer.py on the meta device; a TorchDispatchMode sums the live storages "
          "each rounded up to 512 bytes; two iterations of loss = model(...), zero_grad(set_to_none), backward, "
          "AdamW(foreach, weight_decay 0.05) step; the peak over both; CUDA dropout masks (bool), timm drop_path, "
          "peft per-row prompts, BLIP's LM head over all answer positions")
NOT_MODELLED = ["cuBLAS and cuDNN workspaces", "kernel-internal temporaries", "the CUDA context",
                "caching-allocator effects beyond 512-byte rounding (whole-block reuse, fragmentation, reserved pool)"]
SHAPE_NOTE = ("upstream pads questions (truncated at 35) and answers (never truncated) to the longest in the batch, and "
              "max_memory_allocated is a running maximum, so the measured batch is the one with the longest training "
              "answer: 35 bert-base-uncased tokens with [DEC] and [SEP] (SLAKE train; VQA-RAD's longest is 32)")
CPU_CHECK_CELLS = [("F", "F", "ptv2", None), ("T", "T", "lora", 4)]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="write the JSON here (default: print it)")
    p.add_argument("--batch", type=int, default=20, help="training batch (upstream: 20)")
    p.add_argument("--question", type=int, default=35, help="question tokens (upstream truncates at 35)")
    p.add_argument("--answer", type=int, default=35,
                   help="answer tokens of the measured batch: the longest training answer (bert-base-uncased "
                        "wordpieces + [DEC] + [SEP]; docs/MODEL.md), since answers are padded to the batch's longest")
    p.add_argument("--typical-answer", type=int, default=6, help="answer tokens of the second figure (the engine's)")
    p.add_argument("--affine-batches", default="1,2,4", help="small batches of the affine-in-batch check")
    p.add_argument("--cpu-check", action="store_true", help="also run the meta/CPU cross-check (real arithmetic)")
    p.add_argument("--cpu-batch", type=int, default=1, help="batch of the CPU cross-check")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CPU cross-check only computes)")
    p.add_argument("--cells", help="comma-separated row labels (default: all 23)")
    args = p.parse_args()
    data = run(args)
    text = json.dumps(data, indent=1) + "\n"
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    print(f"{len(data['cells'])} cells in {data['wall_seconds']} s, peak RSS {data['peak_rss_bytes'] / 1e9:.2f} GB",
          file=sys.stderr)


if __name__ == "__main__":
    main()
