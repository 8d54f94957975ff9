"""The workload generator: determinism, ground truth (truth keys, possible hits, traps), repetition laws, tenants,
multi-turn bodies, the JSONL round trip, replayed files and the bounds on what is read."""

from __future__ import annotations

import json
import re
import statistics
from collections import Counter
from pathlib import Path

import pytest

from cachesvc.loadtests import workload
from cachesvc.loadtests.workload import Intent, PlannedRequest, WorkloadSpec, generate, truth_key

DEV_INTENTS = Path("/work/shared/data/dev_intents.jsonl")
BUILTIN_INTENTS = Path(__file__).resolve().parents[2] / "loadtests" / "data" / "intents.jsonl"


def intents_file(tmp_path: Path, rows: list[dict], name: str = "intents.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def synthetic(category: str, count: int, ttl: str = "months", siblings: bool = False) -> list[Intent]:
    return [Intent(f"{category}-{i:03d}", category, (f"{category} question {i}?", f"{category} q{i} reworded"),
                   f"{category}-{i - 1:03d}" if siblings and i % 2 else None, ttl) for i in range(count)]


def mixed() -> list[Intent]:
    return [*synthetic("code", 12, siblings=True), *synthetic("conversation", 8),
            *synthetic("finance", 10, ttl="minutes", siblings=True)]


def test_same_seed_same_stream_other_seed_other_stream():
    spec = WorkloadSpec(requests=300, seed=7, tenants=2, multi_turn_fraction=0.3)
    first, again = generate(spec, mixed()), generate(spec, mixed())
    assert first == again
    assert workload.describe(first) == workload.describe(again)
    other = generate(WorkloadSpec(requests=300, seed=8, tenants=2, multi_turn_fraction=0.3), mixed())
    assert [r.body for r in other] != [r.body for r in first]
    assert workload.tenant_keys(spec) != workload.tenant_keys(WorkloadSpec(seed=8, tenants=2))
    assert [r.id for r in first[:3]] == ["r000001", "r000002", "r000003"]


def test_truth_keys_of_one_intent_by_hand():
    one = [Intent("a", "misc", ("what is a?", "tell me a"))]
    spec = WorkloadSpec(requests=5, seed=1, stream_fraction=0, multi_turn_fraction=0, paraphrase="round_robin")
    requests = generate(spec, one)
    assert [r.truth_key for r in requests] == ['["t0","default","a"]'] * 5
    assert [r.first_of_key for r in requests] == [True, False, False, False, False]
    assert [r.paraphrase_index for r in requests] == [0, 1, 0, 1, 0]
    assert [r.body["messages"] for r in requests[:2]] == [[{"role": "user", "content": "what is a?"}],
                                                           [{"role": "user", "content": "tell me a"}]]
    assert requests[0].body == {"model": "default", "messages": [{"role": "user", "content": "what is a?"}],
                                "stream": False, "max_tokens": 64, "temperature": 0.0}
    assert all(r.trap_of is None and r.conversation == ("a",) for r in requests)


def test_truth_keys_by_hand_in_a_replayed_stream(tmp_path):
    # Hand-computed: a key is the tenant, the model and the conversation's intents; the first of each key is not a
    # possible hit, a repeat is, and a request without ground truth has neither.
    ask = {"model": "m", "messages": [{"role": "user", "content": "q"}]}
    two_turns = {"model": "m", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "x"},
                                            {"role": "user", "content": "q2"}]}
    lines = [
        {"body": ask, "intent": "a", "tenant": "t1"},                       # new key (t1, m, a)
        {"body": ask, "intent": "b", "tenant": "t1"},                       # new key (t1, m, b)
        {"body": ask, "intent": "a", "tenant": "t1"},                       # repeat of line 1
        {"body": ask, "intent": "a", "tenant": "t2"},                       # another tenant: new
        {"body": two_turns, "intent": "b", "tenant": "t1", "conversation": ["a", "b"]},  # new: two turns
        {"body": ask, "intent": "b", "tenant": "t1", "model": "other"},     # another model: new
        {"body": ask, "intent": "b", "tenant": "t1"},                       # repeat of line 2
        ask,                                                                # no ground truth
        {"body": two_turns, "intent": "b", "tenant": "t1"},                 # two turns, conversation unknown
        {"body": two_turns, "intent": "b", "tenant": "t1", "conversation": ["a", "b"]},  # repeat of line 5
    ]
    requests = workload.replay_requests(intents_file(tmp_path, lines, "replay.jsonl"))
    assert [r.first_of_key for r in requests] == [True, True, False, True, True, True, False, None, None, False]
    assert requests[0].truth_key == truth_key("t1", "m", ["a"]) == '["t1","m","a"]'
    assert requests[4].truth_key == '["t1","m","a","b"]'
    assert requests[5].truth_key == '["t1","other","b"]'
    assert requests[7].intent is None and requests[7].truth_key is None and requests[7].category is None
    assert [r.id for r in requests][:2] == ["r000001", "r000002"]
    described = workload.describe(requests)
    assert described["unknown_truth"] == 2 and described["truth_keys"] == 5
    assert described["possible_hits"] == {"-": 3}


def test_first_of_key_matches_the_truth_keys_seen_before():
    requests = generate(WorkloadSpec(requests=500, seed=3, tenants=2, multi_turn_fraction=0.2), mixed())
    seen: set[str] = set()
    for r in requests:
        assert r.first_of_key == (r.truth_key not in seen)
        assert r.truth_key == truth_key(r.tenant, r.model, r.conversation)
        assert r.intent == r.conversation[-1]
        seen.add(r.truth_key)
    described = workload.describe(requests)
    assert sum(described["possible_hits"].values()) == len(requests) - len(seen)


def test_zipf_has_a_heavier_head_than_uniform(tmp_path):
    rows = [{"intent_id": f"x{i}", "category": "misc", "sibling_of": None, "ttl_class": "months",
             "paraphrases": [f"question {i}"]} for i in range(50)]
    intents = workload.load_intents(intents_file(tmp_path, rows))

    def top_share(law: str) -> float:
        spec = WorkloadSpec(requests=4000, seed=5, repetition={"misc": law}, multi_turn_fraction=0)
        counts = Counter(r.intent for r in generate(spec, intents))
        return counts.most_common(1)[0][1] / 4000

    zipf, uniform = top_share("zipf"), top_share("uniform")
    assert zipf > 0.15 and uniform < 0.05 and zipf > 4 * uniform


def _repeat_gaps(law: str) -> list[int]:
    spec = WorkloadSpec(requests=3000, seed=11, repetition={"finance": law}, burst_length=5, burst_gap=2,
                        multi_turn_fraction=0, trap_fraction=0)
    positions: dict[str, list[int]] = {}
    for position, r in enumerate(generate(spec, synthetic("finance", 100, ttl="minutes"))):
        positions.setdefault(r.intent, []).append(position)
    return [b - a for p in positions.values() for a, b in zip(p, p[1:])]


def test_bursts_cluster():
    gaps = _repeat_gaps("burst")
    within = [g for g in gaps if g <= 10]
    across = [g for g in gaps if g > 10]
    assert len(within) > 0.6 * len(gaps)
    assert statistics.mean(across) > 20 * statistics.mean(within)
    uniform = _repeat_gaps("uniform")
    assert sum(g <= 10 for g in uniform) < 0.2 * len(uniform)


def test_default_laws_by_category():
    assert workload.default_law("code", ["months"]) == "zipf"
    assert workload.default_law("conversation", ["months"]) == "uniform"
    assert workload.default_law("finance", ["months"]) == "burst"
    assert workload.default_law("alerts", ["seconds", "minutes"]) == "burst"
    assert workload.default_law("math", ["months"]) == "zipf"
    laws = workload.repetition_laws(WorkloadSpec(repetition={"code": "uniform"}), mixed())
    assert laws == {"code": "uniform", "conversation": "uniform", "finance": "burst"}


def test_traps_follow_their_original():
    intents = mixed()
    look_alikes = {(i.intent_id, i.sibling_of) for i in intents if i.sibling_of} | \
        {(i.sibling_of, i.intent_id) for i in intents if i.sibling_of}
    requests = generate(WorkloadSpec(requests=2000, seed=2, tenants=3, models=[("a", 1), ("b", 1)]), intents)
    traps = [(i, r) for i, r in enumerate(requests) if r.trap_of is not None]
    assert 0.07 < len(traps) / len(requests) < 0.11
    for i, trap in traps:
        original = requests[i - 1]
        assert original.intent == trap.trap_of and original.trap_of is None and len(original.conversation) == 1
        assert (trap.intent, trap.trap_of) in look_alikes
        assert (trap.tenant, trap.model) == (original.tenant, original.model)
        assert trap.truth_key != original.truth_key
    assert workload.describe(requests)["traps"] == len(traps)
    none = generate(WorkloadSpec(requests=200, trap_fraction=0), intents)
    assert all(r.trap_of is None for r in none)
    with pytest.raises(ValueError, match="trap_fraction"):
        generate(WorkloadSpec(requests=10, trap_fraction=0.2), synthetic("misc", 5))
    assert all(r.trap_of is None for r in generate(WorkloadSpec(requests=200), synthetic("misc", 5)))


def test_tenants_have_their_own_keys_and_truth_keys():
    spec = WorkloadSpec(requests=600, seed=4, tenants=3)
    keys = workload.tenant_keys(spec)
    assert list(keys) == ["t0", "t1", "t2"] and len(set(keys.values())) == 3
    assert all(re.fullmatch(rf"sk-loadtest-{t}-[0-9a-f]{{16}}", k) for t, k in keys.items())
    requests = generate(spec, mixed())
    assert set(workload.describe(requests)["tenants"]) == {"t0", "t1", "t2"}
    by_intent: dict[str, set[str]] = {}
    for r in requests:
        assert r.headers == {"Authorization": f"Bearer {keys[r.tenant]}"}
        assert json.loads(r.truth_key)[0] == r.tenant
        by_intent.setdefault(r.conversation, set()).add(r.truth_key)
    assert any(len(k) > 1 for k in by_intent.values())  # the same question of two tenants: two keys


def test_multi_turn_bodies_are_valid_chat_lists():
    intents = mixed()
    by_id = {i.intent_id: i for i in intents}
    spec = WorkloadSpec(requests=300, seed=9, multi_turn_fraction=1.0, max_turns=3, trap_fraction=0,
                        stream_fraction=0.5, models=[("assistants", 1)], max_tokens=16, temperature=0.5)
    for r in generate(spec, intents):
        messages = r.body["messages"]
        assert 2 <= len(r.conversation) <= 3 and len(messages) == 2 * len(r.conversation) - 1
        assert [m["role"] for m in messages] == ["user", "assistant"] * (len(r.conversation) - 1) + ["user"]
        for turn, intent_id in enumerate(r.conversation):
            assert messages[2 * turn]["content"] in by_id[intent_id].paraphrases
            if turn < len(r.conversation) - 1:
                assert messages[2 * turn + 1]["content"] == workload.placeholder_answer(intent_id)
        assert messages[-1]["content"] == by_id[r.intent].paraphrases[r.paraphrase_index]
        assert len(set(r.conversation[:-1]) & {r.intent}) == 0
        assert r.body["model"] == r.model == "assistants"
        assert (r.body["max_tokens"], r.body["temperature"]) == (16, 0.5)
        assert ("stream_options" in r.body) == r.body["stream"]
        if r.body["stream"]:
            assert r.body["stream_options"] == {"include_usage": True}
    assert workload.describe(generate(spec, intents))["multi_turn_share"] == 1.0


def test_paraphrase_choice_and_category_weights():
    intents = mixed()
    first = generate(WorkloadSpec(requests=100, paraphrase="first", multi_turn_fraction=0), intents)
    assert {r.paraphrase_index for r in first} == {0}
    only_code = generate(WorkloadSpec(requests=100, category_weights={"code": 1}, trap_fraction=0), intents)
    assert {r.category for r in only_code} == {"code"}
    with pytest.raises(ValueError, match="category_weights"):
        generate(WorkloadSpec(requests=10, category_weights={"poetry": 1}), intents)
    default = workload.describe(generate(WorkloadSpec(requests=3000, seed=1, trap_fraction=0), intents))
    assert abs(default["categories"]["code"] / 3000 - 12 / 30) < 0.04
    assert 0.45 < default["stream_share"] < 0.55


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"requests": 0}, "requests"), ({"requests": True}, "requests"), ({"seed": "x"}, "seed"),
    ({"repetition": {"code": "pareto"}}, "repetition"), ({"zipf_s": 0}, "zipf_s"),
    ({"burst_length": 0.5}, "burst_length"), ({"burst_gap": float("nan")}, "burst_gap"),
    ({"category_weights": {"code": -1}}, "category_weights"), ({"paraphrase": "any"}, "paraphrase"),
    ({"stream_fraction": 1.5}, "stream_fraction"), ({"multi_turn_fraction": -0.1}, "multi_turn_fraction"),
    ({"max_turns": 1}, "max_turns"), ({"tenants": 0}, "tenants"), ({"models": []}, "models"),
    ({"models": [("a", 1), ("a", 2)]}, "models"), ({"models": [("a", -1)]}, "models"),
    ({"max_tokens": 0}, "max_tokens"), ({"temperature": 3}, "temperature"), ({"trap_fraction": 0.9}, "trap_fraction"),
])
def test_spec_errors_name_the_field(kwargs, name):
    with pytest.raises(ValueError, match=rf"WorkloadSpec\.{name}"):
        WorkloadSpec(**kwargs)


def test_spec_is_frozen_and_normalised():
    spec = WorkloadSpec(models=[("a", 2), ("b", 1)], repetition={"code": "uniform"})
    assert spec.models == (("a", 2.0), ("b", 1.0))
    with pytest.raises(AttributeError):
        spec.requests = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.repetition["code"] = "zipf"  # type: ignore[index]


def test_jsonl_round_trip(tmp_path):
    requests = generate(WorkloadSpec(requests=200, seed=6, tenants=2, multi_turn_fraction=0.3), mixed())
    path = tmp_path / "planned.jsonl"
    workload.write_jsonl(path, requests)
    assert workload.read_jsonl(path) == requests
    replayed = workload.replay_requests(path)
    assert [(r.truth_key, r.first_of_key, r.trap_of) for r in replayed] == \
        [(r.truth_key, r.first_of_key, r.trap_of) for r in requests]
    unknown = [PlannedRequest("x1", {"messages": [{"role": "user", "content": "é"}]}, {})]
    workload.write_jsonl(path, unknown)
    assert workload.read_jsonl(path) == unknown


def test_replay_accepts_bare_bodies(tmp_path):
    path = intents_file(tmp_path, [{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
                                   {"body": {"messages": [{"role": "user", "content": "yo"}]},
                                    "headers": {"Authorization": "Bearer k"}, "intent": "greet", "id": "mine"}],
                        "replay.jsonl")
    bare, wrapped = workload.replay_requests(path)
    assert bare.body["stream"] is True and bare.headers == {} and bare.truth_key is None
    assert wrapped.id == "mine" and wrapped.headers == {"Authorization": "Bearer k"}
    assert wrapped.conversation == ("greet",) and wrapped.first_of_key is True
    assert json.loads(wrapped.truth_key)[0].startswith("auth:")  # the tenant is unnamed: its key stands in


@pytest.mark.parametrize(("line", "error"), [
    ("{not json", "not JSON"),
    ('{"model": "m"}', "needs messages"),
    ('{"body": {"messages": []}}', "body.messages"),
    ('{"body": {"messages": [{"content": "x"}]}}', "role"),
    ('{"body": {"messages": [{"role": "user", "content": "x"}]}, "intnet": "a"}', "unknown fields intnet"),
    ('{"body": {"messages": [{"role": "user", "content": "x"}]}, "headers": {"a": 1}}', "headers"),
    ('[1, 2]', "JSON object"),
    ('{"messages": [{"role": "user", "content": "' + "x" * 300 + '"}]}', "more than the 200 allowed"),
])
def test_replay_errors_name_the_line(tmp_path, line, error):
    good = json.dumps({"messages": [{"role": "user", "content": "fine"}]})
    path = tmp_path / "replay.jsonl"
    path.write_text(f"{good}\n\n{line}\n{good}\n")
    with pytest.raises(ValueError, match=rf"replay\.jsonl:3: .*{error}"):
        workload.replay_requests(path, max_line_bytes=200)


def test_replay_bounds(tmp_path):
    good = json.dumps({"messages": [{"role": "user", "content": "fine"}]}) + "\n"
    path = tmp_path / "replay.jsonl"
    path.write_text(good * 5)
    with pytest.raises(ValueError, match=r"replay\.jsonl:4: more than 3 requests"):
        workload.replay_requests(path, max_requests=3)
    with pytest.raises(ValueError, match="bytes, more than"):
        workload.replay_requests(path, max_bytes=10)
    path.write_text("")
    with pytest.raises(ValueError, match="no requests"):
        workload.replay_requests(path)


def test_load_the_real_intents():
    for path in (DEV_INTENTS, BUILTIN_INTENTS):
        if not path.exists():
            continue
        intents = workload.load_intents(path)
        ids = {i.intent_id for i in intents}
        assert len(ids) == len(intents) and all(i.paraphrases for i in intents)
        assert all(i.sibling_of in ids for i in intents if i.sibling_of)
        spec = WorkloadSpec(requests=1000, seed=0, tenants=2)
        requests = generate(spec, intents)
        described = workload.describe(requests)
        assert described["requests"] == 1000 and described["traps"] > 50
        assert set(described["categories"]) == {i.category for i in intents}
        laws = workload.repetition_laws(spec, intents)
        assert all(law == workload.default_law(c, [i.ttl_class for i in intents if i.category == c])
                   for c, law in laws.items())
    if DEV_INTENTS.exists():
        assert len(workload.load_intents(DEV_INTENTS)) == sum(1 for line in DEV_INTENTS.open() if line.strip())
        assert workload.repetition_laws(WorkloadSpec(), workload.load_intents(DEV_INTENTS))["finance"] == "burst"


@pytest.mark.parametrize(("row", "error"), [
    ("{broken", "not JSON"),
    ('{"intent_id": "b", "category": "c"}', "paraphrases"),
    ('{"intent_id": "b", "category": "", "paraphrases": ["x"]}', "category"),
    ('{"intent_id": "a", "category": "c", "paraphrases": ["x"]}', "already on line 1"),
    ('{"intent_id": "b", "category": "c", "paraphrases": [""]}', r"paraphrases\[0\]"),
    ('{"intent_id": "b", "category": "c", "paraphrases": ["' + "x" * 10_001 + '"]}', "over 10000 characters"),
    ('{"intent_id": "b", "category": "c", "sibling_of": "zz", "paraphrases": ["x"]}', "sibling_of"),
    ('{"intent_id": "b", "category": "c", "paraphrases": ["x"], "colour": 1}', "unknown fields colour"),
])
def test_intent_errors_name_the_line(tmp_path, row, error):
    path = tmp_path / "intents.jsonl"
    path.write_text('{"intent_id": "a", "category": "c", "paraphrases": ["x"]}\n' + row + "\n")
    with pytest.raises(ValueError, match=rf"intents\.jsonl:2: .*{error}"):
        workload.load_intents(path)


def test_intent_bounds(tmp_path, monkeypatch):
    rows = [{"intent_id": f"x{i}", "category": "c", "paraphrases": ["q"]} for i in range(5)]
    path = intents_file(tmp_path, rows)
    monkeypatch.setattr(workload, "MAX_INTENTS", 3)
    with pytest.raises(ValueError, match=r"intents\.jsonl:4: more than 3 intents"):
        workload.load_intents(path)
    monkeypatch.setattr(workload, "MAX_FILE_BYTES", 10)
    with pytest.raises(ValueError, match="bytes, more than the 10 allowed"):
        workload.load_intents(path)
    path.write_text("\n")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no intents"):
        workload.load_intents(path)
