"""Chat formatting shared by the local backends (hf, vllm) and stop-string handling for all."""
from __future__ import annotations

# For tokenizers without a chat template (base models): "User: ...\n\nAssistant:". One Jinja
# template so hf and vllm render exactly the same prompt.
PLAIN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ message['role'] | capitalize }}: {{ message['content'] }}\n\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)
# A base model rendered with the plain template tends to write the next user turn itself.
PLAIN_CHAT_STOPS = ["\nUser:"]


def truncate_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Cut `text` before the earliest stop string; returns (text, whether one was found)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
