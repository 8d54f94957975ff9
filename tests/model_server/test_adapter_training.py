"""Adapter making: offline corpora, and trained adapters that help on their own domain more than on another."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from torch import nn

from cachesvc.model_server.adapter_corpora import DOMAINS, domain_texts, split
from cachesvc.model_server.adapter_training import heldout_loss, train_lora_adapter
from cachesvc.model_server.adapters import AdapterRegistry
from tests.model_server.adapter_fixtures import SEQ_LEN, heldout_texts


@pytest.mark.parametrize("domain", DOMAINS)
def test_corpora_are_deterministic_deduplicated_and_split_disjoint(domain: str) -> None:
    texts = domain_texts(domain, limit=50)
    assert len(texts) >= 20
    assert texts == domain_texts(domain, limit=50)
    assert len(set(texts)) == len(texts)
    train, heldout = split(texts)
    assert heldout and train and not set(train) & set(heldout)
    assert sorted(train + heldout) == sorted(texts)
    assert split(list(reversed(texts)))[1] == heldout, "the split must not depend on order"


def test_corpora_are_distinct_domains() -> None:
    corpus = {d: " ".join(domain_texts(d, limit=30)) for d in DOMAINS}
    code, legal, docs = corpus["code"], corpus["legal"], corpus["docs"]
    assert code.count("def ") > 100 and legal.count("def ") < 5
    assert legal.lower().count("licen") > 100 and code.lower().count("licen") < legal.lower().count("licen") / 10
    assert docs.count("statement") > 20
    # Each newer domain has a marker that is common in it and rare in every other domain.
    markers = {"cpp": "#include", "readme": "pip install", "build": "set_target_properties("}
    for domain, marker in markers.items():
        rates = {d: text.count(marker) / len(text) for d, text in corpus.items()}
        assert rates[domain] > 3 * max(r for d, r in rates.items() if d != domain), (marker, rates)


@pytest.fixture(scope="module")
def loss_table(smollm2: tuple[nn.Module, object], trained_adapters: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Held-out loss of the base model and of each fixture adapter on each fixture domain."""
    model, tokenizer = smollm2
    registry = AdapterRegistry(copy.deepcopy(model))
    for name, path in trained_adapters.items():
        registry.load(name, str(path))
    table = {}
    for row in [None, *trained_adapters]:
        with registry.active(row) as active:
            table[row or "base"] = {d: heldout_loss(active, tokenizer, heldout_texts(d), seq_len=SEQ_LEN,
                                                    max_windows=4) for d in trained_adapters}
    return table


@pytest.mark.parametrize("domain", ["code", "legal"])
def test_adapter_helps_its_own_domain_most(domain: str, loss_table: dict[str, dict[str, float]]) -> None:
    # Any fine-tune on text helps a little everywhere (and the licence corpus depends on the installed packages),
    # so specialisation is judged between adapters: on its own domain, an adapter beats the base and the other one.
    other = "legal" if domain == "code" else "code"
    assert loss_table["base"][domain] - loss_table[domain][domain] > 0.01, loss_table
    assert loss_table[domain][domain] < loss_table[other][domain], loss_table


def test_training_leaves_the_model_untouched_and_saves_a_standard_adapter(
    smollm2: tuple[nn.Module, object], tmp_path: Path
) -> None:
    model, tokenizer = smollm2
    before = {name: p.detach().clone() for name, p in model.state_dict().items()}
    modules = [type(m) for m in model.modules()]
    train, heldout = split(domain_texts("docs", limit=20))
    report = train_lora_adapter(model, tokenizer, train, tmp_path / "docs", rank=2, alpha=4, target_modules=["q_proj"],
                                steps=1, seq_len=32, batch_size=1, layers=[29], heldout=heldout, eval_windows=1)
    assert sorted(p.name for p in tmp_path.joinpath("docs").iterdir() if p.suffix != ".md") == [
        "adapter_config.json", "adapter_model.safetensors"]
    assert report.steps == 1 and report.trainable_parameters == 2 * 576 + 576 * 2
    assert report.loss_before > 0 and report.seconds >= report.train_seconds > 0
    trained = load_file(str(tmp_path / "docs" / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and t.abs().max() > 0 for k, t in trained.items()), "B starts at 0"
    assert [type(m) for m in model.modules()] == modules
    assert all(torch.equal(before[name], p) for name, p in model.state_dict().items())

    prompt = torch.tensor([[1, 504, 3458, 314, 260, 1789]])
    registry = AdapterRegistry(copy.deepcopy(model))
    registry.load("docs", str(tmp_path / "docs"))
    with torch.no_grad(), registry.active("docs") as active:
        ours = active(input_ids=prompt).logits
    with warnings.catch_warnings():  # peft 0.21 calls an attribute transformers 5.23 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path / "docs")).eval()
    with torch.no_grad():
        theirs = peft_model(input_ids=prompt).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
