"""Workloads with ground truth: a seeded stream of OpenAI chat requests drawn from a file of intents, each request
labelled with what it asks, so that a report can tell a right cache hit from a wrong one.

An intent is one meaning with several paraphrases. Two requests may correctly share an answer only when they have the
same *truth key*: the same tenant, the same model and the same intents in every user turn of the conversation (any
paraphrase). A request whose truth key came earlier in the stream is a *possible hit* (``first_of_key`` False); a
*trap* asks an intent's look-alike (``sibling_of`` in the file) right after the original, which a cache must not
answer from the original's entry.

How often each intent comes back follows a law per category: ``zipf`` (a few popular questions), ``uniform``, or
``burst`` (volatile data: one intent asked several times within a short stretch, then rarely again).
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

LAWS = ("zipf", "uniform", "burst")
PARAPHRASE_CHOICES = ("random", "first", "round_robin")
MAX_REQUESTS = 1_000_000  # bounds one generated or replayed stream
MAX_TENANTS = 10_000
MAX_FILE_BYTES = 50 * 1024 * 1024  # intents, planned and replayed files alike
MAX_INTENTS = 100_000
MAX_PARAPHRASES = 1_000  # per intent
MAX_PARAPHRASE_CHARS = 10_000
MAX_LINE_BYTES = 1024 * 1024  # one replayed request
MAX_TOKENS_LIMIT = 1 << 20
SHORT_TTLS = frozenset({"second", "minute", "hour"})
VOLATILE_CATEGORIES = frozenset({"finance", "news", "weather", "volatile"})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
DEFAULT_TRAP_FRACTION = 0.1
MAX_TRAP_FRACTION = 0.5  # each trap follows an original that is not a trap


@dataclass(frozen=True)
class Intent:
    """One meaning and its paraphrases, as a line of an intents file gives it."""

    intent_id: str
    category: str
    paraphrases: tuple[str, ...]
    sibling_of: str | None = None
    ttl_class: str = ""


@dataclass(frozen=True)
class WorkloadSpec:
    """What stream to generate; every field is checked here, and an error names the field."""

    requests: int = 1000
    seed: int = 0
    repetition: Mapping[str, str] | None = None  # category -> law; categories not named get default_law()
    zipf_s: float = 1.1
    burst_length: float = 5.0  # mean asks of an intent in one burst
    burst_gap: float = 3.0  # mean distance, in requests of the whole stream, between asks of one burst
    category_weights: Mapping[str, float] | None = None  # None: proportional to the categories' intent counts
    paraphrase: str = "random"
    stream_fraction: float = 0.5
    multi_turn_fraction: float = 0.1
    max_turns: int = 3  # user turns of a multi-turn request, at most
    tenants: int = 1
    models: Sequence[tuple[str, float]] = (("default", 1.0),)
    max_tokens: int = 64
    temperature: float = 0.0
    trap_fraction: float | None = None  # None: 0.1 when some intent has a sibling, else 0

    def __post_init__(self) -> None:
        _check_int("requests", self.requests, 1, MAX_REQUESTS)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"WorkloadSpec.seed must be an integer, not {self.seed!r}")
        if self.repetition is not None:
            if not isinstance(self.repetition, Mapping):
                raise ValueError(f"WorkloadSpec.repetition must map categories to laws, not {self.repetition!r}")
            for category, law in self.repetition.items():
                if not isinstance(category, str) or law not in LAWS:
                    raise ValueError(f"WorkloadSpec.repetition[{category!r}] must be one of {', '.join(LAWS)}, "
                                     f"not {law!r}")
            object.__setattr__(self, "repetition", MappingProxyType(dict(self.repetition)))
        _check_float("zipf_s", self.zipf_s, 0.0, 10.0, low_open=True)
        _check_float("burst_length", self.burst_length, 1.0, 1e6)
        _check_float("burst_gap", self.burst_gap, 1.0, 1e6)
        if self.category_weights is not None:
            if not isinstance(self.category_weights, Mapping) or not self.category_weights:
                raise ValueError(f"WorkloadSpec.category_weights must map categories to shares, "
                                 f"not {self.category_weights!r}")
            for category, weight in self.category_weights.items():
                _check_float(f"category_weights[{category!r}]", weight, 0.0, math.inf)
            if sum(self.category_weights.values()) <= 0:
                raise ValueError("WorkloadSpec.category_weights must give some category a share above 0")
            object.__setattr__(self, "category_weights", MappingProxyType(dict(self.category_weights)))
        if self.paraphrase not in PARAPHRASE_CHOICES:
            raise ValueError(f"WorkloadSpec.paraphrase must be one of {', '.join(PARAPHRASE_CHOICES)}, "
                             f"not {self.paraphrase!r}")
        _check_float("stream_fraction", self.stream_fraction, 0.0, 1.0)
        _check_float("multi_turn_fraction", self.multi_turn_fraction, 0.0, 1.0)
        _check_int("max_turns", self.max_turns, 1, 100)
        if self.multi_turn_fraction > 0 and self.max_turns < 2:
            raise ValueError("WorkloadSpec.max_turns must be at least 2 when multi_turn_fraction is above 0")
        _check_int("tenants", self.tenants, 1, MAX_TENANTS)
        self._check_models()
        _check_int("max_tokens", self.max_tokens, 1, MAX_TOKENS_LIMIT)
        _check_float("temperature", self.temperature, 0.0, 2.0)
        if self.trap_fraction is not None:
            _check_float("trap_fraction", self.trap_fraction, 0.0, MAX_TRAP_FRACTION)

    def _check_models(self) -> None:
        if not isinstance(self.models, list | tuple) or not self.models:
            raise ValueError(f"WorkloadSpec.models must be a list of (name, weight), not {self.models!r}")
        models: list[tuple[str, float]] = []
        for entry in self.models:
            if not (isinstance(entry, Sequence) and len(entry) == 2 and isinstance(entry[0], str) and entry[0]):
                raise ValueError(f"WorkloadSpec.models entries must be (name, weight), not {entry!r}")
            _check_float(f"models[{entry[0]!r}] weight", entry[1], 0.0, math.inf)
            models.append((entry[0], float(entry[1])))
        if len({name for name, _ in models}) != len(models):
            raise ValueError("WorkloadSpec.models names a model twice")
        if sum(w for _, w in models) <= 0:
            raise ValueError("WorkloadSpec.models must give some model a weight above 0")
        object.__setattr__(self, "models", tuple(models))


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ValueError(f"WorkloadSpec.{name} must be an integer in {low}..{high}, not {value!r}")


def _check_float(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) \
        and (value > low if low_open else value >= low) and value <= high
    if not ok:
        raise ValueError(f"WorkloadSpec.{name} must be a number in {'(' if low_open else '['}{low}, {high}], "
                         f"not {value!r}")


@dataclass(frozen=True)
class PlannedRequest:
    """One request of the stream: what to send (``body``, ``headers``) and its ground truth (None when unknown)."""

    id: str
    body: dict[str, Any]
    headers: dict[str, str]
    intent: str | None = None
    category: str | None = None
    paraphrase_index: int | None = None
    tenant: str | None = None
    model: str | None = None
    conversation: tuple[str, ...] | None = None  # intent ids of the user turns, the final one last
    truth_key: str | None = None
    first_of_key: bool | None = None
    trap_of: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The request as one JSON object (the line ``write_jsonl`` writes)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["conversation"] = list(self.conversation) if self.conversation is not None else None
        return out


def truth_key(tenant: str, model: str, conversation: Sequence[str]) -> str:
    """The truth key of a conversation: requests with equal keys may share an answer, no others may."""
    return json.dumps([tenant, model, *conversation], ensure_ascii=False, separators=(",", ":"))


def tenant_name(index: int) -> str:
    """The name of the index-th tenant (``t0``, ``t1``, ...)."""
    return f"t{index}"


def tenant_keys(spec: WorkloadSpec) -> dict[str, str]:
    """Tenant -> its API key, ``sk-loadtest-<tenant>-<hex>``, the hex drawn from the seed (stable per seed)."""
    rng = random.Random(f"cachesvc-loadtest-keys:{spec.seed}")
    return {tenant_name(i): f"sk-loadtest-{tenant_name(i)}-{rng.getrandbits(64):016x}" for i in range(spec.tenants)}


def placeholder_answer(intent_id: str) -> str:
    """The fixed assistant text of an earlier turn about ``intent_id`` (deterministic, so truth keys stay exact)."""
    return f"(Earlier answer about {intent_id}.)"


def default_law(category: str, ttl_classes: Sequence[str] = ()) -> str:
    """The law a category gets unless the spec names one: code zipf, conversation uniform, volatile burst, else zipf."""
    name = category.strip().lower()
    if name == "code":
        return "zipf"
    if name == "conversation":
        return "uniform"
    short = sum(ttl.strip().lower().removesuffix("s") in SHORT_TTLS for ttl in ttl_classes)
    if name in VOLATILE_CATEGORIES or (ttl_classes and 2 * short >= len(ttl_classes)):
        return "burst"
    return "zipf"


def repetition_laws(spec: WorkloadSpec, intents: Sequence[Intent]) -> dict[str, str]:
    """Category -> the law its intents repeat by in ``generate(spec, intents)``."""
    ttls: dict[str, list[str]] = {}
    for intent in intents:
        ttls.setdefault(intent.category, []).append(intent.ttl_class)
    given = spec.repetition or {}
    return {category: given.get(category) or default_law(category, t) for category, t in ttls.items()}


# --- loading intents ---------------------------------------------------------------------------------------------


def load_intents(path: Path | str) -> list[Intent]:
    """Read and check an intents file (JSONL); an error names the file and line, and its size is bounded."""
    path = Path(path)
    intents: list[Intent] = []
    lines: dict[str, int] = {}
    for lineno, line in _lines(path, MAX_LINE_BYTES * 16):
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc})") from None
        intent = _intent(row, f"{path}:{lineno}")
        if intent.intent_id in lines:
            raise ValueError(f"{path}:{lineno}: intent_id {intent.intent_id!r} already on line "
                             f"{lines[intent.intent_id]}")
        if len(intents) >= MAX_INTENTS:
            raise ValueError(f"{path}:{lineno}: more than {MAX_INTENTS} intents")
        lines[intent.intent_id] = lineno
        intents.append(intent)
    if not intents:
        raise ValueError(f"{path}: no intents")
    for intent in intents:
        if intent.sibling_of is not None and intent.sibling_of not in lines:
            raise ValueError(f"{path}:{lines[intent.intent_id]}: sibling_of {intent.sibling_of!r} is no intent_id "
                             f"of the file")
    return intents


def _intent(row: Any, where: str) -> Intent:
    """One intent from its parsed line, checked."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: an intent must be a JSON object")
    unknown = set(row) - {"intent_id", "category", "sibling_of", "ttl_class", "paraphrases"}
    if unknown:
        raise ValueError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
    for name in ("intent_id", "category"):
        value = row.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > 200:
            raise ValueError(f"{where}: {name} must be a non-empty string of at most 200 characters")
    sibling = row.get("sibling_of")
    if sibling is not None and (not isinstance(sibling, str) or not sibling or sibling == row["intent_id"]):
        raise ValueError(f"{where}: sibling_of must be another intent's id or null")
    ttl = row.get("ttl_class", "")
    if not isinstance(ttl, str) or len(ttl) > 100:
        raise ValueError(f"{where}: ttl_class must be a string")
    paraphrases = row.get("paraphrases")
    if not isinstance(paraphrases, list) or not 1 <= len(paraphrases) <= MAX_PARAPHRASES:
        raise ValueError(f"{where}: paraphrases must be a list of 1..{MAX_PARAPHRASES} strings")
    for i, text in enumerate(paraphrases):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: paraphrases[{i}] must be a non-empty string")
        if len(text) > MAX_PARAPHRASE_CHARS:
            raise ValueError(f"{where}: paraphrases[{i}] is over {MAX_PARAPHRASE_CHARS} characters")
    return Intent(row["intent_id"], row["category"], tuple(paraphrases), sibling, ttl)


def _lines(path: Path, max_line_bytes: int, max_bytes: int | None = None) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a bounded UTF-8 file with their 1-based numbers."""
    max_bytes = MAX_FILE_BYTES if max_bytes is None else max_bytes
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path}: {size} bytes, more than the {max_bytes} allowed")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if len(raw) > max_line_bytes:
                raise ValueError(f"{path}:{lineno}: line of {len(raw)} bytes, more than the {max_line_bytes} allowed")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not UTF-8 ({exc})") from None
            if line.strip():
                yield lineno, line


# --- generating --------------------------------------------------------------------------------------------------


class _Picker:
    """Draws the next intent of one category (indices into its list) by the category's law."""

    def __init__(self, count: int, law: str, spec: WorkloadSpec, rng: random.Random) -> None:
        self.count = count
        self.law = law
        self.rng = rng
        order = list(range(count))
        rng.shuffle(order)  # which intents are popular is itself drawn from the seed, not the file's order
        if law == "zipf":
            weights = [0.0] * count
            for rank, index in enumerate(order):
                weights[index] = 1.0 / (rank + 1) ** spec.zipf_s
        else:
            weights = [1.0] * count
        self.cumulative = list(itertools.accumulate(weights))
        self.burst_length = spec.burst_length
        self.burst_gap = spec.burst_gap
        self.active: list[tuple[int, int, int, int]] = []  # (due position, sequence, intent index, asks left)
        self.queue: list[int] = []  # intents to start a burst with, a fresh shuffled round when empty
        self.sequence = 0

    def static(self) -> int:
        """An intent by the law's weights alone (earlier turns of a conversation; touches no burst)."""
        return _choose(self.rng, self.cumulative)

    def other(self, index: int) -> int:
        """An intent by the law's weights other than ``index`` where the category has another."""
        for _ in range(16):
            drawn = self.static()
            if drawn != index or self.count == 1:
                return drawn
        return (index + 1) % self.count

    def pick(self, position: int) -> int:
        """The intent of the request at ``position`` of the whole stream."""
        if self.law != "burst":
            return self.static()
        if self.active and self.active[0][0] <= position:
            _, sequence, index, left = heapq.heappop(self.active)
            if left > 1:
                heapq.heappush(self.active, (position + self._gap(), sequence, index, left - 1))
            return index
        index = self._next_burst()
        asks = 1 + _geometric(self.rng, self.burst_length - 1)
        if asks > 1:
            self.sequence += 1
            heapq.heappush(self.active, (position + self._gap(), self.sequence, index, asks - 1))
        return index

    def _gap(self) -> int:
        return 1 + _geometric(self.rng, self.burst_gap - 1)

    def _next_burst(self) -> int:
        """The next intent to burst: each intent once per shuffled round, skipping those in a burst now."""
        busy = {index for _, _, index, _ in self.active}
        for _ in range(2):
            if not self.queue:
                self.queue = list(range(self.count))
                self.rng.shuffle(self.queue)
            for i, index in enumerate(self.queue):
                if index not in busy:
                    del self.queue[i]
                    return index
            self.queue = []
        return self.rng.randrange(self.count)  # every intent is in a burst already


def _geometric(rng: random.Random, mean: float) -> int:
    """A draw of failures before a success, with the given mean (0 when the mean is 0)."""
    if mean <= 0:
        return 0
    p = 1.0 / (1.0 + mean)
    return int(math.log(1.0 - rng.random()) / math.log(1.0 - p))


def _check_intents(intents: Sequence[Intent]) -> None:
    if not intents:
        raise ValueError("generate needs at least one intent")
    ids = {i.intent_id for i in intents}
    if len(ids) != len(intents):
        raise ValueError("intent ids must be unique")
    for intent in intents:
        if not intent.paraphrases:
            raise ValueError(f"intent {intent.intent_id!r} has no paraphrases")
        if intent.sibling_of is not None and intent.sibling_of not in ids:
            raise ValueError(f"intent {intent.intent_id!r}: sibling_of {intent.sibling_of!r} is not among the intents")


def generate(spec: WorkloadSpec, intents: Sequence[Intent]) -> list[PlannedRequest]:
    """The planned stream over ``intents`` with its ground truth; the same spec and intents give the same list."""
    _check_intents(intents)
    rng = random.Random(spec.seed)
    by_category: dict[str, list[Intent]] = {}
    for intent in intents:
        by_category.setdefault(intent.category, []).append(intent)
    categories = list(by_category)
    if spec.category_weights is not None:
        unknown = sorted(set(spec.category_weights) - set(categories))
        if unknown:
            raise ValueError(f"WorkloadSpec.category_weights names categories the intents lack: {', '.join(unknown)}")
        weights = [float(spec.category_weights.get(c, 0.0)) for c in categories]
        if sum(weights) <= 0:
            raise ValueError("WorkloadSpec.category_weights gives every category of the intents a share of 0")
    else:
        weights = [float(len(by_category[c])) for c in categories]
    unknown = sorted(set(spec.repetition or {}) - set(categories))
    if unknown:
        raise ValueError(f"WorkloadSpec.repetition names categories the intents lack: {', '.join(unknown)}")
    laws = repetition_laws(spec, intents)
    pickers = {c: _Picker(len(by_category[c]), laws[c], spec, rng) for c in categories}
    category_cumulative = list(itertools.accumulate(weights))
    model_names = [name for name, _ in spec.models]
    model_cumulative = list(itertools.accumulate(w for _, w in spec.models))
    keys = tenant_keys(spec)
    tenants = list(keys)

    by_id = {i.intent_id: i for i in intents}
    look_alikes: dict[str, list[str]] = {}
    for intent in intents:
        if intent.sibling_of is not None:
            look_alikes.setdefault(intent.sibling_of, []).append(intent.intent_id)
            look_alikes.setdefault(intent.intent_id, []).append(intent.sibling_of)
    trap_fraction = spec.trap_fraction if spec.trap_fraction is not None else \
        (DEFAULT_TRAP_FRACTION if look_alikes else 0.0)
    if trap_fraction > 0 and not look_alikes:
        raise ValueError("WorkloadSpec.trap_fraction is above 0 but no intent has a sibling_of")

    asked: Counter[str] = Counter()  # for round_robin paraphrases

    def paraphrase(intent: Intent) -> int:
        if spec.paraphrase == "first":
            return 0
        if spec.paraphrase == "round_robin":
            index = asked[intent.intent_id] % len(intent.paraphrases)
            asked[intent.intent_id] += 1
            return index
        return rng.randrange(len(intent.paraphrases))

    out: list[PlannedRequest] = []
    seen: set[str] = set()
    traps = 0
    previous: tuple[str, str, str] | None = None  # (intent, tenant, model) of the last request when a trap may follow
    for position in range(spec.requests):
        trap_of: str | None = None
        # Traps keep up with their share: one follows an eligible original while the stream has fewer than its share.
        if previous is not None and previous[0] in look_alikes and traps < trap_fraction * (position + 1) \
                and rng.random() < 0.5:
            trap_of, tenant, model = previous
            conversation: tuple[str, ...] = (rng.choice(look_alikes[trap_of]),)
            traps += 1
        else:
            category = categories[_choose(rng, category_cumulative)]
            members = by_category[category]
            picker = pickers[category]
            drawn = picker.pick(position)
            final = members[drawn].intent_id
            conversation = (final,)
            if rng.random() < spec.multi_turn_fraction:
                turns = rng.randint(1, spec.max_turns - 1)
                earlier = [members[picker.other(drawn)].intent_id for _ in range(turns)]
                conversation = (*earlier, final)
            tenant = tenants[rng.randrange(len(tenants))]
            model = model_names[_choose(rng, model_cumulative)]
        messages: list[dict[str, Any]] = []
        index = 0
        for turn, intent_id in enumerate(conversation):
            index = paraphrase(by_id[intent_id])
            messages.append({"role": "user", "content": by_id[intent_id].paraphrases[index]})
            if turn < len(conversation) - 1:
                messages.append({"role": "assistant", "content": placeholder_answer(intent_id)})
        stream = rng.random() < spec.stream_fraction
        body: dict[str, Any] = {"model": model, "messages": messages, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        body["max_tokens"] = spec.max_tokens
        body["temperature"] = spec.temperature
        key = truth_key(tenant, model, conversation)
        final_intent = by_id[conversation[-1]]
        request = PlannedRequest(
            id=_request_id(position), body=body, headers={"Authorization": f"Bearer {keys[tenant]}"},
            intent=final_intent.intent_id, category=final_intent.category, paraphrase_index=index, tenant=tenant,
            model=model, conversation=conversation, truth_key=key, first_of_key=key not in seen, trap_of=trap_of)
        seen.add(key)
        out.append(request)
        previous = (final_intent.intent_id, tenant, model) if trap_of is None and len(conversation) == 1 else None
    return out


def _choose(rng: random.Random, cumulative: Sequence[float]) -> int:
    """An index drawn with the weights whose running sums are ``cumulative``."""
    return min(bisect.bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _request_id(position: int) -> str:
    return f"r{position + 1:06d}"


# --- files of planned requests -----------------------------------------------------------------------------------

_FIELDS = ("id", "body", "headers", "intent", "category", "paraphrase_index", "tenant", "model", "conversation",
           "truth_key", "first_of_key", "trap_of")


def write_jsonl(path: Path | str, requests: Sequence[PlannedRequest]) -> None:
    """Write the planned stream, one request a line, so that ``read_jsonl`` gives back an equal list."""
    with Path(path).open("w", encoding="utf-8") as f:
        for request in requests:
            f.write(json.dumps(request.to_json(), ensure_ascii=False, allow_nan=False) + "\n")


def read_jsonl(path: Path | str) -> list[PlannedRequest]:
    """Read a stream ``write_jsonl`` wrote (checked and bounded; an error names the line)."""
    path = Path(path)
    out: list[PlannedRequest] = []
    for lineno, line in _lines(path, MAX_LINE_BYTES):
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(row, dict) or set(row) != set(_FIELDS):
            raise ValueError(f"{where}: a planned request must be an object with exactly {', '.join(_FIELDS)}")
        if len(out) >= MAX_REQUESTS:
            raise ValueError(f"{where}: more than {MAX_REQUESTS} requests")
        if not isinstance(row["id"], str):
            raise ValueError(f"{where}: id must be a string")
        _check_body(row["body"], where)
        headers = _check_headers(row["headers"], where)
        truth = _truth(row, where)
        out.append(PlannedRequest(id=row["id"], body=row["body"], headers=headers, **truth,
                                  first_of_key=_optional(row, "first_of_key", bool, where)))
    return out


def replay_requests(path: Path | str, *, max_requests: int = MAX_REQUESTS, max_line_bytes: int = MAX_LINE_BYTES,
                    max_bytes: int | None = None) -> list[PlannedRequest]:
    """A user's own requests (JSONL: each line a chat-completions body, or ``{"body", "headers", ...truth}``) as
    planned requests, checked and bounded; ``first_of_key`` is computed where the truth key is known."""
    path = Path(path)
    out: list[PlannedRequest] = []
    seen: set[str] = set()
    for lineno, line in _lines(path, max_line_bytes, max_bytes):
        where = f"{path}:{lineno}"
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{where}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: a request must be a JSON object")
        if len(out) >= max_requests:
            raise ValueError(f"{where}: more than {max_requests} requests")
        if "body" not in row:
            if "messages" not in row:
                raise ValueError(f"{where}: a request needs messages (a chat body) or a body")
            row = {"body": row}
        unknown = set(row) - set(_FIELDS)
        if unknown:
            raise ValueError(f"{where}: unknown fields {', '.join(sorted(unknown))}")
        body = row["body"]
        _check_body(body, where)
        headers = _check_headers(row.get("headers", {}), where)
        request_id = row.get("id", _request_id(len(out)))
        if not isinstance(request_id, str) or not request_id:
            raise ValueError(f"{where}: id must be a non-empty string")
        truth = _truth(row, where)
        if truth["truth_key"] is None and truth["intent"] is not None:
            truth["truth_key"] = _derived_key(truth, body, headers)
        key = truth["truth_key"]
        first = None if key is None else key not in seen
        if key is not None:
            seen.add(key)
        out.append(PlannedRequest(id=request_id, body=body, headers=headers, first_of_key=first, **truth))
    if not out:
        raise ValueError(f"{path}: no requests")
    return out


def _derived_key(truth: dict[str, Any], body: dict[str, Any], headers: dict[str, str]) -> str | None:
    """A replayed request's truth key from its intent (an unnamed tenant is its API key's digest); None when unsure."""
    conversation = truth["conversation"]
    if conversation is None:
        users = sum(1 for m in body["messages"] if m.get("role") == "user")
        if users != 1:
            return None
        conversation = (truth["intent"],)
        truth["conversation"] = conversation
    elif conversation[-1] != truth["intent"]:
        return None
    tenant = truth["tenant"]
    if tenant is None:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        tenant = "auth:" + hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else "-"
    model = truth["model"] if truth["model"] is not None else body.get("model")
    return truth_key(tenant, str(model) if model is not None else "-", conversation)


def _check_body(body: Any, where: str) -> None:
    """A chat-completions body: an object with a non-empty list of messages, each with a role."""
    if not isinstance(body, dict):
        raise ValueError(f"{where}: body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError(f"{where}: body.messages must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"{where}: body.messages[{i}] must be an object with a role among "
                             f"{', '.join(sorted(ROLES))}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise ValueError(f"{where}: body.messages[{i}].content must be a string, a list of parts or null")
    if "model" in body and not isinstance(body["model"], str):
        raise ValueError(f"{where}: body.model must be a string")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ValueError(f"{where}: body.stream must be true or false")


def _check_headers(headers: Any, where: str) -> dict[str, str]:
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ValueError(f"{where}: headers must be an object of strings")
    return headers


def _truth(row: dict[str, Any], where: str) -> dict[str, Any]:
    """The optional ground-truth fields of a line, type-checked (first_of_key left to the caller)."""
    truth: dict[str, Any] = {name: _optional(row, name, str, where)
                             for name in ("intent", "category", "tenant", "model", "truth_key", "trap_of")}
    index = row.get("paraphrase_index")
    if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
        raise ValueError(f"{where}: paraphrase_index must be a non-negative integer or null")
    truth["paraphrase_index"] = index
    conversation = row.get("conversation")
    if conversation is not None:
        if not isinstance(conversation, list) or not conversation or \
                not all(isinstance(c, str) for c in conversation):
            raise ValueError(f"{where}: conversation must be a non-empty list of intent ids or null")
        conversation = tuple(conversation)
    truth["conversation"] = conversation
    return truth


def _optional(row: dict[str, Any], name: str, kind: type, where: str) -> Any:
    value = row.get(name)
    if value is not None and not isinstance(value, kind):
        raise ValueError(f"{where}: {name} must be a {kind.__name__} or null")
    return value


# --- summary -----------------------------------------------------------------------------------------------------


def describe(requests: Sequence[PlannedRequest]) -> dict[str, Any]:
    """What a stream holds, for the report: counts, stream and multi-turn shares, possible hits and traps."""
    n = len(requests)

    def count(values: Iterator[Any]) -> dict[str, int]:
        return dict(sorted(Counter("-" if v is None else str(v) for v in values).items()))

    def turns(r: PlannedRequest) -> int:
        if r.conversation is not None:
            return len(r.conversation)
        return sum(1 for m in r.body.get("messages", []) if isinstance(m, dict) and m.get("role") == "user")

    return {
        "requests": n,
        "categories": count(r.category for r in requests),
        "tenants": count(r.tenant for r in requests),
        "models": count(r.model if r.model is not None else r.body.get("model") for r in requests),
        "stream_share": sum(bool(r.body.get("stream")) for r in requests) / n if n else 0.0,
        "multi_turn_share": sum(turns(r) > 1 for r in requests) / n if n else 0.0,
        "truth_keys": len({r.truth_key for r in requests if r.truth_key is not None}),
        "unknown_truth": sum(r.truth_key is None for r in requests),
        "possible_hits": count(r.category for r in requests if r.first_of_key is False),
        "possible_hit_share": sum(r.first_of_key is False for r in requests) / n if n else 0.0,
        "traps": sum(r.trap_of is not None for r in requests),
        "traps_by_category": count(r.category for r in requests if r.trap_of is not None),
    }
