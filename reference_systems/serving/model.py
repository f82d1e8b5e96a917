"""The serving lab's model: a tiny GPT-2 built deterministically and saved in Hugging Face format.

Nothing is downloaded. A byte-level BPE tokenizer is trained on the Python documentation that
ships with CPython (`pydoc_data.topics`) and a 4-layer GPT-2 gets seeded random weights. The
directory loads with `AutoModelForCausalLM` / `AutoTokenizer` and is laid out the way vLLM
expects (`config.json`, `model.safetensors`, `tokenizer.json`, `vocab.json`, `merges.txt`), so
`vllm serve <model_dir()>` serves the very same weights on a GPU.

The weights are random (untrained), so generated text is gibberish; the lab is about serving, not
quality. Build: ~5 s on 2 cores, once; `python -m reference_systems.serving.model` prints the path.

Two sizes are named in `MODELS`: `tiny-gpt2` (4 layers, 256 wide: the CPU lab) and `gpt2-small` (GPT-2
small's 12 layers, 768 wide, 12 heads, 1,024 positions: the GPU profile), both with the same tokenizer,
so prompts and expected texts are built the same way for either. `python -m reference_systems.serving.model
gpt2-small` builds and prints the bigger one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

EOS = "<|endoftext|>"
# A plain role-tagged template: vLLM refuses chat requests for a model without one.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


@dataclass(frozen=True)
class ModelParams:
    """Everything that determines the built model; its hash names the cache directory."""
    vocab_size: int = 4096
    n_layer: int = 4
    n_embd: int = 256
    n_head: int = 4
    n_positions: int = 512
    seed: int = 1234
    # GPT-2's init with tied embeddings makes greedy decoding repeat the last input token forever;
    # louder MLP outputs give varied (still meaningless) text, which makes batching bugs visible.
    mlp_out_scale: float = 5.0
    version: int = 1  # bump when the build recipe changes

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


MODELS = {
    "tiny-gpt2": ModelParams(),
    "gpt2-small": ModelParams(n_layer=12, n_embd=768, n_head=12, n_positions=1024),
}


def params_for(name: str) -> ModelParams:
    """The named model's build parameters (lab.toml names them: `model = "gpt2-small"`)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; lab.toml may name one of {sorted(MODELS)}")
    return MODELS[name]


def corpus() -> list[str]:
    """The tokenizer's training text: CPython's pydoc topics, in a fixed order."""
    from pydoc_data.topics import topics
    return [topics[name] for name in sorted(topics)]


def build(out_dir: Path, params: ModelParams = ModelParams()) -> Path:
    """Build tokenizer + model into `out_dir` (created; must not exist yet). Deterministic."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=False)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus(), vocab_size=params.vocab_size, min_frequency=2,
                            special_tokens=[EOS], show_progress=False)
    bpe.save_model(str(out_dir))  # vocab.json + merges.txt
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                            model_max_length=params.n_positions)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(str(out_dir))

    eos_id = tok.convert_tokens_to_ids(EOS)
    config = GPT2Config(vocab_size=len(tok), n_positions=params.n_positions, n_embd=params.n_embd,
                        n_layer=params.n_layer, n_head=params.n_head, bos_token_id=eos_id, eos_token_id=eos_id)
    torch.manual_seed(params.seed)
    model = GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for block in model.transformer.h:
            block.mlp.c_proj.weight.mul_(params.mlp_out_scale)
    model.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
    for path in out_dir.iterdir():  # safetensors writes 0600; a sandboxed server (another user) must read it
        path.chmod(0o644)
    (out_dir / "ailab_build.json").write_text(json.dumps({"params": asdict(params), "weights_sha256":
                                                          weights_sha256(out_dir)}, indent=2))
    return out_dir


def weights_sha256(path: Path) -> str:
    """Hash of the tensors themselves (names, dtypes, shapes, bytes), independent of file metadata."""
    from safetensors import safe_open
    h = hashlib.sha256()
    with safe_open(str(Path(path) / "model.safetensors"), framework="pt") as f:
        for name in sorted(f.keys()):
            t = f.get_tensor(name).contiguous()
            h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
    return h.hexdigest()


def model_dir(params: ModelParams | str = ModelParams(), root: Path | None = None) -> Path:
    """The built model's directory (`params` or a name in MODELS), building it once (atomically) under the cache."""
    if isinstance(params, str):
        params = params_for(params)
    if root is None:
        from graders.paths import cache_dir
        root = cache_dir() / "models"
    name = next((n for n, p in MODELS.items() if p == params), "gpt2")
    final = Path(root) / f"{name}-{params.key()}"
    if (final / "ailab_build.json").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    print(f"building the {name} model into {final} ...", file=sys.stderr)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        build(tmp / "m", params)
        try:
            os.rename(tmp / "m", final)
        except OSError:  # another process won the race: keep theirs
            if not (final / "ailab_build.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


if __name__ == "__main__":
    print(model_dir(sys.argv[1] if len(sys.argv) > 1 else ModelParams()))
