"""Which batch size embeds fastest on this CPU? MiniLM encode time of the reference's chunks at several batch sizes.

    .venv/bin/python -m benchmarks.embedding_batch [--dataset support-kb|PATH] [--n 512] [--sizes 8 16 32 64]

Chunks `n` documents of the dataset with the reference's chunker and times `labkit.minilm.MiniLM.encode` on
them (no cache), once per batch size, after one warm-up batch. Batches hold texts of similar length, so padding
is small at any size; what changes is the size of the attention tensors (batch x 12 heads x 256 x 256 floats at
full length), which past ~16 texts no longer fit the CPU's caches. labkit/embeddings.py's default follows this.
"""
from __future__ import annotations

import argparse
import time

import torch

from graders.datasets import load_dataset
from labkit.embeddings import model
from reference_systems.rag.chunking import chunk


def main(argv: list[str] | None = None) -> dict[int, float]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="support-kb", help="registry name or folder (e.g. ../shared/datasets/cranfield)")
    ap.add_argument("--n", type=int, default=512, help="chunks to embed per batch size")
    ap.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args(argv)
    texts = [c for d in load_dataset(args.dataset).docs for c in chunk(f"{d.title}. {d.text}")][: args.n]
    encoder = model()
    encoder.encode(texts[:16])
    mean_chars = sum(map(len, texts)) / len(texts)
    print(f"{len(texts)} chunks of {args.dataset} (mean {mean_chars:.0f} characters), {torch.get_num_threads()} "
          "torch threads")
    print(f"{'batch':>6} {'seconds':>8} {'texts/s':>8}")
    seconds: dict[int, float] = {}
    for size in args.sizes:
        started = time.perf_counter()
        encoder.encode(texts, batch_size=size)
        seconds[size] = time.perf_counter() - started
        print(f"{size:>6} {seconds[size]:>8.2f} {len(texts) / seconds[size]:>8.1f}", flush=True)
    return seconds


if __name__ == "__main__":
    main()
