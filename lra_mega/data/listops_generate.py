"""ListOps generator (Nangia & Bowman 2018, as used by the Long Range Arena).

The distribution is the official one: a node at depth < 10 is an operator with
probability 0.25 (else a leaf), depth 10 is always a leaf; an operator draws its
arity uniformly from 2..10 and its kind uniformly from MIN, MAX, MED, SM; a leaf
is a uniform digit. Whole trees are sampled from depth 1 and kept when their token
count (no parentheses) is strictly between ``min_len`` and ``max_len`` (500 and
2000, as in LRA); duplicates are dropped.

Speed: the shape of a tree does not depend on its digits and operators, so shapes
are sampled level by level for thousands of trials at once with numpy, trials whose
running length reaches ``max_len`` stop growing (they are rejected anyway), and
digits/operators, values and the pre-order token layout are computed only for the
accepted shapes, again level by level. Each chunk of trials has its own seed derived
from ``(seed, chunk index)`` and chunks are consumed in index order, so the output
depends only on the seed, never on the number of worker processes.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np

from lra_mega.data.progress import count_progress
from lra_mega.data.shards import mp_context

MAX_DEPTH = 10
MAX_ARGS = 10
OP_PROB = 0.25

#: Token ids (0 is padding). Digits d -> d + 1.
PAD = 0
DIGIT_BASE = 1
OPS = ("[MIN", "[MAX", "[MED", "[SM")
OP_BASE = 11  # [MIN=11 [MAX=12 [MED=13 [SM=14
END = 15
VOCAB: dict[str, int] = {**{str(d): d + DIGIT_BASE for d in range(10)},
                         **{op: OP_BASE + i for i, op in enumerate(OPS)}, "]": END}
VOCAB_SIZE = 16
ID_TO_TOKEN = {v: k for k, v in VOCAB.items()}

CHUNK_TRIALS = 4096
#: Below this many expressions a process pool costs more than it saves.
PARALLEL_MIN = 2000
GENERATOR_VERSION = 1


@dataclass
class Chunk:
    """Accepted expressions of one chunk: flat uint8 tokens, offsets (N+1), labels (N)."""

    tokens: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray


def _kth(cum: np.ndarray, k: np.ndarray) -> np.ndarray:
    """k-th smallest (0-based) digit of each row, from per-row cumulative digit counts."""
    return (cum <= k[:, None]).sum(axis=1)


def generate_chunk(seed: int, chunk: int, n_trials: int = CHUNK_TRIALS,
                   min_len: int = 500, max_len: int = 2000) -> Chunk:
    """Sample ``n_trials`` trees with the seed ``(seed, chunk)`` and keep those in the length window."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, chunk]))
    # ---- shapes, level by level; nodes of a level are grouped by tree, then by parent
    tree = np.arange(n_trials)
    length = np.zeros(n_trials, dtype=np.int64)
    alive = np.ones(n_trials, dtype=bool)
    levels: list[tuple[np.ndarray, np.ndarray]] = []  # (tree id, arity; 0 = leaf) per level
    for depth in range(1, MAX_DEPTH + 1):
        if depth < MAX_DEPTH:
            is_op = rng.random(tree.size) < OP_PROB
        else:
            is_op = np.zeros(tree.size, dtype=bool)
        arity = np.zeros(tree.size, dtype=np.int64)
        arity[is_op] = rng.integers(2, MAX_ARGS + 1, size=int(is_op.sum()))
        levels.append((tree, arity))
        # a leaf is one token, an operator two (itself and its closing "]")
        length += np.bincount(tree, minlength=n_trials) + np.bincount(tree[is_op], minlength=n_trials)
        alive &= length < max_len
        grow = is_op & alive[tree]
        tree = np.repeat(tree[grow], arity[grow])
        if tree.size == 0:
            break
    accepted = np.flatnonzero(alive & (length > min_len))
    n_acc = accepted.size
    if n_acc == 0:
        return Chunk(np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros(0, np.int64))
    # ---- keep accepted trees only, renumbered 0..n_acc-1
    remap = np.full(n_trials, -1)
    remap[accepted] = np.arange(n_acc)
    kept = []
    for t, a in levels:
        sel = remap[t] >= 0
        kept.append((remap[t[sel]], a[sel]))
    # ---- symbols: digits for leaves, operator kinds for operators
    syms = [np.where(a > 0, rng.integers(0, len(OPS), size=a.size), rng.integers(0, 10, size=a.size))
            for _, a in kept]
    # ---- bottom-up: values and subtree token counts
    values: list[np.ndarray] = [np.empty(0, np.int64)] * len(kept)
    sizes: list[np.ndarray] = [np.empty(0, np.int64)] * len(kept)
    for d in range(len(kept) - 1, -1, -1):
        t, a = kept[d]
        val = syms[d].astype(np.int64).copy()
        size = np.ones(a.size, dtype=np.int64)
        ops = np.flatnonzero(a > 0)
        if ops.size:
            cv, cs = values[d + 1], sizes[d + 1]
            counts = a[ops]
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            seg = np.repeat(np.arange(ops.size), counts)
            kind = syms[d][ops]
            # children are digits, so order statistics come from per-operator digit histograms
            cum = np.bincount(seg * 10 + cv, minlength=ops.size * 10).reshape(ops.size, 10).cumsum(axis=1)
            med = (_kth(cum, (counts - 1) // 2) + _kth(cum, counts // 2)) // 2  # int(np.median(...))
            res = np.select(
                [kind == 0, kind == 1, kind == 2],
                [_kth(cum, np.zeros_like(counts)), _kth(cum, counts - 1), med],
                np.add.reduceat(cv, starts) % 10,
            )
            val[ops] = res
            size[ops] = 2 + np.add.reduceat(cs, starts)
        values[d], sizes[d] = val, size
    labels = values[0]
    tree_len = sizes[0]
    offsets = np.zeros(n_acc + 1, dtype=np.int64)
    np.cumsum(tree_len, out=offsets[1:])
    # ---- top-down: pre-order positions, then scatter tokens
    flat = np.zeros(int(offsets[-1]), dtype=np.uint8)
    pos = offsets[:-1].copy()  # global position of each root
    for d in range(len(kept)):
        t, a = kept[d]
        s = syms[d]
        is_op = a > 0
        flat[pos] = np.where(is_op, OP_BASE + s, DIGIT_BASE + s).astype(np.uint8)
        ops = np.flatnonzero(is_op)
        flat[pos[ops] + sizes[d][ops] - 1] = END
        if d + 1 < len(kept):
            counts = a[ops]
            cs = sizes[d + 1]
            excl = np.cumsum(cs) - cs
            first = np.cumsum(counts) - counts
            pos = np.repeat(pos[ops] + 1 - excl[first], counts) + excl
    return Chunk(flat, offsets, labels.astype(np.int64))


def _chunk_worker(args: tuple[int, int, int, int, int]) -> Chunk:
    return generate_chunk(*args)


def generate(n: int, seed: int = 0, min_len: int = 500, max_len: int = 2000,
             workers: int | None = None, progress: bool = True) -> Chunk:
    """Generate ``n`` distinct expressions (a pure function of ``seed`` and the window)."""
    workers = max(1, os.cpu_count() or 1) if workers is None else max(1, workers)
    seen: set[bytes] = set()
    tok_parts: list[np.ndarray] = []
    len_parts: list[np.ndarray] = []
    lab_parts: list[np.ndarray] = []
    have = 0
    next_chunk = 0
    bar = count_progress(progress and n > 2000)
    task = bar.add_task("generating ListOps", total=n)
    bar.start()
    pool = mp_context().Pool(workers) if workers > 1 and n > PARALLEL_MIN else None
    try:
        while have < n:
            # expect ~8% acceptance for the default window; ask for a little more than needed
            want = max(1, int((n - have) / (0.07 * CHUNK_TRIALS)) + 1)
            if pool is not None:
                want = max(want, workers)
            args = [(seed, c, CHUNK_TRIALS, min_len, max_len) for c in range(next_chunk, next_chunk + want)]
            next_chunk += want
            results = pool.imap(_chunk_worker, args) if pool is not None else map(_chunk_worker, args)
            for ch in results:
                if have >= n:
                    continue
                lens = np.diff(ch.offsets)
                for i in range(lens.size):
                    seq = ch.tokens[ch.offsets[i]:ch.offsets[i + 1]]
                    h = hashlib.blake2b(seq.tobytes(), digest_size=16).digest()
                    if h in seen:
                        continue
                    seen.add(h)
                    tok_parts.append(seq)
                    len_parts.append(lens[i:i + 1])
                    lab_parts.append(ch.labels[i:i + 1])
                    have += 1
                    if have >= n:
                        break
                bar.update(task, completed=have)
    finally:
        bar.stop()
        if pool is not None:
            pool.terminate()
    lens = np.concatenate(len_parts) if len_parts else np.zeros(0, np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    tokens = np.concatenate(tok_parts) if tok_parts else np.zeros(0, np.uint8)
    labels = np.concatenate(lab_parts) if lab_parts else np.zeros(0, np.int64)
    return Chunk(tokens.astype(np.uint8), offsets, labels)


def to_source(tokens: np.ndarray | list[int]) -> str:
    """The official left-nested ``Source`` string of a pre-order token sequence.

    ``[MAX 2 9]`` (ids 12, 3, 10, 15) becomes ``( ( ( [MAX 2 ) 9 ) ] )``.
    """
    toks = [int(t) for t in tokens]
    pos = 0

    def node() -> str:
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t < OP_BASE:
            return ID_TO_TOKEN[t]
        out = ID_TO_TOKEN[t]
        n = 0
        while toks[pos] != END:
            out = f"{out} {node()} )"
            n += 1
        pos += 1
        return "( " * (n + 1) + out + " ] )"

    return node()
