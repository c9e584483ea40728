"""Self-identification in model answers: an answer that names its model ("I'm SmolLM…",
"as an AI model trained by OpenAI") tells the reviewer who wrote it, so a blind vote on it
is not blind. Chatbot Arena drops such votes (FastChat's battle cleaning matches a list of
identity words in the answers); we flag the battle and leave it out of the ratings unless
an engineer asks for it.

Pure functions: no Django, so generation workers and tests call them directly. What comes
back is a reason from a fixed vocabulary ("names SmolLM", "introduces itself by name"),
never text from the answer: the reason is stored unencrypted next to encrypted outputs.
"""

import re
from collections.abc import Iterable

# Model families and their makers, as answers spell them. Common words that happen to be
# family names (the poet "Bard", the tree "palm", the bird "falcon") only count with a
# version attached, or not at all: a false flag drops a vote for nothing.
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("SmolLM", r"smol\s?lm"),
    ("Llama", r"(?:code)?llama"),
    ("Vicuna", r"vicuna"),
    ("ChatGPT", r"chat\s?gpt"),
    ("GPT", r"gpt(?:-?\d[\w.]*|-?4o)?"),
    ("OpenAI", r"open\s?ai"),
    ("Anthropic", r"anthropic"),
    ("Claude", r"claude"),
    ("Qwen", r"qwen|tongyi|qianwen"),
    ("Alibaba Cloud", r"alibaba\s+cloud"),
    ("Mistral", r"mistral|mixtral"),
    ("Gemma", r"gemma"),
    ("Gemini", r"gemini"),
    ("DeepSeek", r"deep\s?seek"),
    ("Phi", r"phi-\d[\w.]*"),
    ("Falcon", r"falcon-?\d+b"),
    ("OLMo", r"olmo"),
    ("Tülu", r"t[üu]lu"),
    ("ChatGLM", r"chatglm|zhipu"),
    ("Baichuan", r"baichuan"),
    ("InternLM", r"internlm"),
    ("Yi", r"yi-\d+b"),
    ("Granite", r"granite-\d[\w.]*"),
    ("Pythia", r"pythia"),
    ("StarCoder", r"starcoder"),
    ("Command R", r"command[\s-]r\+?"),
    ("Hugging Face", r"hugging\s?face(?:tb)?"),
    ("LMSYS", r"lmsys"),
    ("Meta AI", r"meta\s+ai"),
    ("DeepMind", r"deepmind"),
)
# A letter right after the name makes it another word ("llamas", "gemmation"); a digit is
# a version ("SmolLM2", "Qwen2.5") and still counts.
_FAMILY_PATTERNS = tuple(
    (name, re.compile(rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z])", re.IGNORECASE))
    for name, pattern in _FAMILIES
)
# "I'm SmolLM, a helpful AI assistant", "My name is Aria, an assistant built to…"
_SELF_INTRODUCTION = re.compile(
    r"\b(?:I am|I['’]m|[Mm]y name is)\s+(?:called\s+)?"
    r"[A-Z][\w.\-]*(?:[ -][A-Z0-9][\w.\-]*)?"
    r"\s*[,(—-]?\s*(?:an?|the|your)?\s*(?:[\w-]+\s+){0,4}?"
    r"(?:language model|model|assistant|chatbot|AI)\b"
)
# "as an AI language model trained by OpenAI", "a model developed by Alibaba Cloud"
_MADE_BY = re.compile(
    r"\b(?:model|assistant|AI|chatbot)\b[^.!?\n]{0,40}?"
    r"\b(?:trained|developed|created|built|made|fine-tuned|designed)\s+by\s+[A-Z]"
)
_IDENTIFIER_LIKE = re.compile(r"[\d_./-]|[a-z][A-Z]")


def _flat(prompt: object) -> str:
    """A prompt as text: a string, or a conversation's message contents."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, Iterable):
        return "\n".join(
            str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in prompt
        )
    return ""


def model_name_terms(names: Iterable[str]) -> list[str]:
    """Registry names worth looking for: identifier-like ones ("SmolLM2-135M-Instruct",
    "helpdesk-lora"), and the last part of a hub id. A plain word ("tiny", "base") is left
    out: it would match ordinary prose."""
    terms = set()
    for name in names:
        for candidate in {name.strip(), name.strip().rstrip("/").rsplit("/", 1)[-1]}:
            if len(candidate) >= 4 and _IDENTIFIER_LIKE.search(candidate):
                terms.add(candidate)
    return sorted(terms)


def self_identification(text: str, *, prompt: object = "", names: Iterable[str] = ()) -> str:
    """Why `text` gives its model away, or "" when it does not.

    `names` are the registry names of the models in play. A family or registry name the
    prompt itself mentions does not count: answering "Tell me about Llama 3" by naming it
    is no self-identification."""
    if not text:
        return ""
    asked = _flat(prompt)
    for term in model_name_terms(names):
        pattern = re.compile(rf"(?<![\w-]){re.escape(term)}(?![\w-])", re.IGNORECASE)
        if pattern.search(text) and not pattern.search(asked):
            return "names a registered model"
    for family, pattern in _FAMILY_PATTERNS:
        if pattern.search(text) and not pattern.search(asked):
            return f"names {family}"
    if _SELF_INTRODUCTION.search(text):
        return "introduces itself by name"
    if _MADE_BY.search(text):
        return "says who made it"
    return ""
