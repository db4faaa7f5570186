"""Cheap token estimates for prompts and chat messages (no tokenizer, no regex).

The estimate is the mean of two rough counts that err in opposite directions:

* a length count, `utf8_bytes / 4`: BPE vocabularies (cl100k, o200k) average
  about four bytes of English or code per token, but long words and dense
  prose make this run high;
* a piece count, `words + punctuation`, where a word starts at each space or
  newline (a block of four spaces, i.e. indentation, counts none) and every
  ASCII punctuation byte is a piece of its own: code and JSON split at
  punctuation, which the length count misses.

Text outside ASCII adds half a token per non-ASCII character to the piece
count, since scripts without spaces (CJK) have few "words" but roughly one
token per character. Everything is counted with three C-level `bytes` passes
(no Python loop, no regex), about a microsecond for a 500-character prompt on
an idle core (bench/bench_primitives.py). docs/primitives.md has the
calibration figures (about 10% mean error on English and code).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

__all__ = [
    "MESSAGE_OVERHEAD_TOKENS",
    "estimate_messages_tokens",
    "estimate_request_tokens",
    "estimate_tokens",
]

# Each chat message costs a few tokens beyond its content (role and the
# delimiters of the chat format; OpenAI documents 3 plus the role).
MESSAGE_OVERHEAD_TOKENS = 4

_SEPARATORS = string.punctuation.encode("ascii") + b" \n"
_NON_ASCII = bytes(range(128, 256))


def estimate_tokens(text: str | None) -> int:
    """Estimate the number of BPE tokens in `text`; 0 for `None` or "".

    Any non-empty text is at least one token. Never raises for a `str`.
    """
    if not text:
        return 0
    ascii_only = text.isascii()
    data = text.encode("ascii") if ascii_only else text.encode("utf-8", "surrogatepass")
    size = len(data)
    # One deletion pass counts spaces, newlines and punctuation together: a
    # space or newline starts a word, a punctuation byte is a piece of its own.
    # Indentation would count each space as a word; a 4-space block is one
    # search (cheaper than counting space pairs) and counts nothing.
    pieces = size - len(data.translate(None, _SEPARATORS)) + 1 - 4 * data.count(b"    ")
    if not ascii_only:
        pieces += (len(text) - len(data.translate(None, _NON_ASCII))) // 2
    # (size / 4 + max(pieces, 1)) / 2, rounded half up; * 0.25 and * 0.5 are exact.
    estimate = int((size * 0.25 + (pieces if pieces > 1 else 1)) * 0.5 + 0.5)
    return estimate if estimate > 1 else 1


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return estimate_tokens(content)
    if not isinstance(content, list | tuple):
        return 0
    total = 0
    for part in content:
        if isinstance(part, str):
            total += estimate_tokens(part)
        elif isinstance(part, Mapping):
            text = part.get("text")
            if isinstance(text, str):
                total += estimate_tokens(text)
    return total


def estimate_messages_tokens(messages: object) -> int:
    """Estimate the tokens of an `llm.messages` list; never raises.

    Each message is a map whose `content` is a string or a list of parts
    carrying `text` (other parts, such as images, count nothing). Every map
    adds `MESSAGE_OVERHEAD_TOKENS`; anything that is not a list of maps is
    ignored.
    """
    if not isinstance(messages, list | tuple):
        return 0
    total = 0
    for message in messages:
        if isinstance(message, Mapping):
            total += MESSAGE_OVERHEAD_TOKENS + _content_tokens(message.get("content"))
    return total


def estimate_request_tokens(llm: Mapping[str, Any]) -> int:
    """`llm.estimated_tokens`: the prompt plus the messages of an `llm` section."""
    if type(llm) is not dict and not isinstance(llm, Mapping):
        return 0
    prompt = llm.get("prompt")
    prompt_tokens = estimate_tokens(prompt) if type(prompt) is str or isinstance(prompt, str) else 0
    messages = llm.get("messages")
    return prompt_tokens + (estimate_messages_tokens(messages) if messages is not None else 0)
