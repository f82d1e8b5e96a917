"""all-MiniLM-L6-v2 as sentence-transformers runs it, in ~100 lines of torch: tokenizer, BERT, mean pool.

Why not `sentence_transformers.SentenceTransformer`: importing it (and `transformers` behind it)
costs ~3.7 s of a 2-core machine, and every grading worker starts the model afresh, so a
batch of RAG submissions spent more time importing than searching. This file reads the
same package folder (tokenizer.json, model.safetensors, the config files) and computes the
same vectors: `tests/test_embeddings.py` checks it against sentence-transformers itself.

The pipeline is the one the folder's modules.json names: a BERT encoder (6 layers, 12 heads,
hidden 384, inputs truncated to max_seq_length 256), mean pooling over real tokens (the
attention mask excludes padding), then L2 normalisation.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer


class MiniLM:
    """Encodes texts into L2-normalised float32 vectors. Not thread-safe: callers share one under a lock."""

    def __init__(self, folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        max_len = json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"]
        self.heads = config["num_attention_heads"]
        self.layers = config["num_hidden_layers"]
        self.eps = config["layer_norm_eps"]
        self.dim = config["hidden_size"]
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_len)
        self.tokenizer.enable_padding(pad_id=config["pad_token_id"], pad_token="[PAD]")
        self.w = load_file(str(folder / "model.safetensors"))

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(x, (self.dim,), self.w[f"{name}.weight"], self.w[f"{name}.bias"],
                                              self.eps)

    def _layer(self, x: torch.Tensor, mask_bias: torch.Tensor, i: int) -> torch.Tensor:
        p = f"encoder.layer.{i}"
        batch, seq, _ = x.shape
        head_dim = self.dim // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, seq, self.heads, head_dim).transpose(1, 2)

        q, k, v = (split(self._linear(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        context = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask_bias)
        context = context.transpose(1, 2).reshape(batch, seq, self.dim)
        x = self._norm(self._linear(context, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        hidden = torch.nn.functional.gelu(self._linear(x, f"{p}.intermediate.dense"))
        return self._norm(self._linear(hidden, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1])
        x = (self.w["embeddings.word_embeddings.weight"][ids]
             + self.w["embeddings.position_embeddings.weight"][positions]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        mask_bias = (1.0 - mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        for i in range(self.layers):
            x = self._layer(x, mask_bias, i)
        weights = mask[:, :, None].float()
        pooled = (x * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2, dim=1)

    def encode(self, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
        """Vectors of shape (len(texts), 384) in input order; batches group similar lengths to pad less."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                encodings = self.tokenizer.encode_batch([texts[i] for i in chunk])
                ids = torch.tensor([e.ids for e in encodings], dtype=torch.long)
                mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.long)
                out[chunk] = self._forward(ids, mask).numpy()
        return out
