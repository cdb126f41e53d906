"""Reliability plan part C (agent-level attacks): our own tool texts carry nothing that could steer a
model, and text from tool schemas is static and plain."""

import json
import re
import unicodedata

import pytest
from ibkr_gateway_core.registry import OPERATIONS

HIDDEN = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z][^>]*>|\]\(\s*(https?|javascript|data):", re.IGNORECASE)
STEERING = re.compile(
    r"ignore (all |any )?(previous|prior|above)|disregard|system prompt|do not tell|don't tell|without asking"
    r"|~/\.ssh|id_rsa|sidenote|exfiltrat",
    re.IGNORECASE,
)


def _texts() -> list[tuple[str, str]]:
    texts: list[tuple[str, str]] = []
    for op in OPERATIONS.values():
        texts += [(f"{op.tool}.title", op.title), (f"{op.tool}.description", op.description)]
        for model in (op.input_model, op.output_model):
            texts.append((f"{op.tool}.{model.__name__}", json.dumps(model.model_json_schema(), ensure_ascii=False)))
    return texts


@pytest.mark.parametrize(("where", "text"), _texts(), ids=lambda value: str(value)[:40])
def test_tool_texts_hold_no_hidden_characters_markup_or_instructions(where: str, text: str) -> None:
    """Tool titles, descriptions and schemas have no zero-width, bidi or control characters, no HTML-like tags or
    links, and no phrases aimed at overriding the model (tool poisoning, plan R18)."""
    assert not HIDDEN.search(text), (where, HIDDEN.findall(text))
    assert all(unicodedata.category(ch) != "Cf" for ch in text), where
    assert not MARKUP.search(text), (where, MARKUP.findall(text))
    assert not STEERING.search(text), (where, STEERING.findall(text))
