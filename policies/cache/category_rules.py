"""Surface rules that settle a question's cache category when they are sure, before any embedding is consulted.

Only unambiguous signals: code syntax, arithmetic written in symbols, and words that make an answer go
stale (prices, rates, weather, news, scores). Anything else is left to the nearest-exemplar vote.
"""

from __future__ import annotations

import re

_CODE = re.compile(
    r"```|`[^`]+`|\bdef\s+\w+\s*\(|\bfn\s+\w+|\bfunc\s+\w+|\bfunction\s*\w*\s*\(|\blambda\s*\w*\s*:|#include|"
    r"console\.log|\bprintf\b|\bprintln\b|\bSELECT\s.+\sFROM\b|\bINSERT\s+INTO\b|\b(CREATE|ALTER|DROP)\s+TABLE\b|"
    r"=>|::|\w+\.\w+\(|(?-i:\b[A-Z]\w*(Error|Exception)\b)|\bE\d{4}\b|"
    r"\b(npm|pip|git|cargo|docker|kubectl|chmod|sudo|grep)\s+\w+|\.(py|js|ts|java|rs|go|cpp|sh|sql|json|yaml|yml)\b|"
    r"\w+\[\w*\]|\$\?|2>&1|\w+_\w+\(",
    re.IGNORECASE,
)
# Words that tie a question to programming when a language, database or tool is also named.
_CODE_WORDS = re.compile(
    r"\b(code|function|method|class|array|list|string|dict|dictionary|map|vector|vec|struct|interface|"
    r"variable|loop|error|exception|compile|syntax|library|package|module|script|query|table|column|regex|"
    r"api|json|file|int|integer|float|boolean|null|none|option|pointer|thread|async|await|import|install|"
    r"command|terminal|shell|repo|branch|commit|database|index|key|element|object|type|bug|debug|stack)\b",
    re.IGNORECASE,
)
_TECH_NAMES = re.compile(
    r"\b(python|javascript|js|typescript|java|kotlin|golang|rust|ruby|php|perl|swift|scala|c\+\+|c#|"
    r"bash|zsh|powershell|sql|mysql|postgres(ql)?|sqlite|mongodb|redis|react|vue|angular|django|flask|"
    r"node(js)?|pandas|numpy|linux|git|docker|kubernetes|html|css|t-sql|mssql)\b",
    re.IGNORECASE,
)
_ARITHMETIC = re.compile(
    r"\d\s*[-+*/x\u00d7^]\s*\d|\d\s*%\s*(of\s+)?\$?\d|\b\d*[a-z]\s*[-+]\s*\d+\s*=|=\s*\?|\bsqrt\b|"
    r"\b(solve|simplify|factor|integrate|differentiate|derivative|integral)\b.*(\d|x)|"
    r"\b\d+\s+(times|plus|minus|divided by|multiplied by|squared|cubed|mod|modulo)\b",
    re.IGNORECASE,
)
_VOLATILE = re.compile(
    r"(?i:\b(stocks?|share price|shares of|ticker|market cap|dividend|(bond|treasury|dividend) yield|exchange rate|"
    r"forex|crypto|bitcoin|ethereum|futures|spot price|index level|nasdaq|dow jones|s&p|ftse|dax|nikkei|"
    r"mortgage rates?|weather|forecast|temperature outside|headlines?|latest news|news today|standings|"
    r"trending|election results)\b)|\b[A-Z]{3}\s*/\s*[A-Z]{3}\b",
)
_NOW = re.compile(r"\b(right now|today|todays|today's|currently|current|latest|live|at the moment|this week)\b",
                  re.IGNORECASE)
_PRICE = re.compile(r"\b(price|prices|priced|cost|worth|trading|quote|rate|rates|value)\b", re.IGNORECASE)


def rule_category(text: str) -> str | None:
    """The category a surface rule is sure of, or None to let the exemplars decide."""
    if _VOLATILE.search(text) or (_NOW.search(text) and _PRICE.search(text)):
        return "volatile"
    if _CODE.search(text) or (_TECH_NAMES.search(text) and _CODE_WORDS.search(text)):
        return "code"
    if _ARITHMETIC.search(text):
        return "math"
    return None
