"""Batched generation from a base model, optionally with an adapter or full fine-tuned
weights. Loaded models are kept (a small LRU) so a worker answers repeated calls fast."""

import threading
from collections import OrderedDict

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

CACHE_SIZE = 2
BATCH_SIZE = 8
_cache: "OrderedDict[tuple, tuple]" = OrderedDict()
_lock = threading.Lock()


def _load(base_path: str, adapter_path: str | None, full_path: str | None):
    key = (base_path, adapter_path, full_path)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    weights = full_path or base_path
    tokenizer = AutoTokenizer.from_pretrained(full_path or adapter_path or base_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" and torch.cuda.is_bf16_supported() else None
    model = AutoModelForCausalLM.from_pretrained(weights, dtype=dtype or torch.float32)
    if adapter_path:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter_path)
    model.to(device).eval()
    with _lock:
        _cache[key] = (model, tokenizer)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return model, tokenizer


def _flat(messages: list[dict]) -> str:
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _render(tokenizer, prompt: str | list[dict], template: str | None) -> str:
    """The text a model continues. A conversational prompt (a list of {role, content}
    turns) goes through the chat template turn by turn; plain text is one user turn."""
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    if template:
        # A plain placeholder, not str.format: prompts and templates may hold braces.
        return template.replace("{prompt}", prompt if isinstance(prompt, str) else _flat(prompt))
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return prompt if isinstance(prompt, str) else _flat(prompt)


def stopped_at_limit(new_tokens, *, stop_ids: set[int], max_new_tokens: int) -> list[bool]:
    """Per row of generated ids: True where generation ran to max_new_tokens without an end
    token. A row that ended early holds an end token (padding after it, in a batch)."""
    if new_tokens.shape[1] < max_new_tokens:
        return [False] * new_tokens.shape[0]
    return [not stop_ids.intersection(row.tolist()) for row in new_tokens]


def _stop_ids(model, tokenizer) -> set[int]:
    configured = model.generation_config.eos_token_id
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(tokenizer.eos_token_id)
    return {i for i in ids if i is not None}


@torch.no_grad()
def generate_completions(
    *,
    base_path: str,
    adapter_path: str | None = None,
    full_path: str | None = None,
    prompts: list[str | list[dict]],
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    prompt_template: str | None = None,
) -> list[tuple[str, bool]]:
    """(text, truncated) per prompt: truncated when it stopped at max_new_tokens."""
    model, tokenizer = _load(base_path, adapter_path, full_path)
    torch.manual_seed(seed)
    sample = temperature > 0
    stop_ids = _stop_ids(model, tokenizer)
    outputs: list[tuple[str, bool]] = []
    device = next(model.parameters()).device
    for start in range(0, len(prompts), BATCH_SIZE):
        texts = [
            _render(tokenizer, p, prompt_template) for p in prompts[start : start + BATCH_SIZE]
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = enc.to(device)
        kwargs = {"do_sample": sample, "max_new_tokens": max_new_tokens}
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        out = model.generate(**enc, **kwargs, pad_token_id=tokenizer.pad_token_id)
        new = out[:, enc["input_ids"].shape[1] :]
        truncated = stopped_at_limit(new, stop_ids=stop_ids, max_new_tokens=max_new_tokens)
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        outputs.extend(zip(decoded, truncated, strict=True))
    return outputs
