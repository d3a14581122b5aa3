"""Issue 19 item 7: ``govgym transfer`` on any base — model keys or a local HF model directory (deploy/bases.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from govgym.deploy.bases import base_overrides, key_overrides
from govgym.deploy.transfer import TransferJob, _size_cfg
from govgym.errors import ConfigError
from tests.conftest import TINY_INSTANCES, tiny_llama


def _llama_dir(tmp_path: Path, tokenizer: bool = True) -> Path:
    from tests.test_trl import word_tokenizer

    d = tmp_path / "my-llama"
    tiny_llama(vocab=64, hidden=32, layers=2, heads=2, inter=64).save_pretrained(d)
    if tokenizer:
        word_tokenizer().save_pretrained(d)
    return d


def test_model_keys_parse_and_fit():
    assert key_overrides("h256-l4-a4") == {
        "hidden_size": 256,
        "num_layers": 4,
        "num_heads": 4,
        "intermediate_size": 704,  # 2.75 x 256, Llama's ratio
    }
    assert key_overrides("h48-l2-a2-i96-p20") == {
        "hidden_size": 48,
        "num_layers": 2,
        "num_heads": 2,
        "intermediate_size": 96,
        "pretrain_steps": 20,
    }
    assert key_overrides("10m") is None
    with pytest.raises(
        ConfigError,
        match=r"sizes\[0\]: 'h250-l4-a6' has hidden size 250, not divisible by its 6 heads.*h250-l4-a5",
    ):
        TransferJob(sizes=["h250-l4-a6"])
    with pytest.raises(ConfigError, match="every model key must be >= 1"):
        key_overrides("h0-l4-a4")
    with pytest.raises(ConfigError, match=r"unknown base model size 'h256-l4'.*model keys h<hidden>"):
        TransferJob(sizes=["h256-l4"])


def test_keys_become_the_embedded_models_shape():
    from govgym.envs.instances import load_instances

    iset = load_instances(TINY_INSTANCES)
    base = iset.run_config(iset.split("train")[0])
    cfg = _size_cfg(base, "h48-l2-a2-i96-p20")
    m = cfg.model
    assert (m.hidden_size, m.num_layers, m.num_heads, m.intermediate_size, m.pretrain_steps) == (
        48,
        2,
        2,
        96,
        20,
    )
    assert m.source == "default" and cfg.data == base.data


def test_a_local_model_directory_is_checked(tmp_path):
    d = _llama_dir(tmp_path)
    assert base_overrides(str(d)) == {"source": str(d.resolve())}
    job = TransferJob(sizes=[str(d)])
    from govgym.envs.instances import load_instances

    iset = load_instances(TINY_INSTANCES)
    assert _size_cfg(iset.run_config(iset.split("train")[0]), job.sizes[0]).model.source == str(d.resolve())
    with pytest.raises(ConfigError, match="is not a directory"):
        TransferJob(sizes=[str(tmp_path / "nope")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has no config.json"):
        TransferJob(sizes=[str(tmp_path / "empty")])
    with pytest.raises(ConfigError, match="has no tokenizer"):
        TransferJob(sizes=[str(_llama_dir(tmp_path / "nt", tokenizer=False))])


def test_a_non_causal_model_directory_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    d = tmp_path / "bert"
    BertModel(
        BertConfig(
            vocab_size=64, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
        )
    ).save_pretrained(d)
    with pytest.raises(
        ConfigError, match=r"is a 'bert' model \(architectures: BertModel\), not a causal language model"
    ) as err:
        TransferJob(sizes=[str(d)])
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_transfer_runs_on_a_users_model_directory(tmp_path, module_cache):
    """The whole transfer table on a saved model directory (its own tokenizer tokenizes the data)."""
    from govgym.deploy.transfer import transfer

    d = _llama_dir(tmp_path)
    job = TransferJob(
        sizes=[str(d)],
        policies=["default"],
        instances=TINY_INSTANCES,
        split="train",
        names=["t-squeeze"],
        seeds=1,
    )
    rows = transfer(job, tmp_path / "out", progress=False)
    sizes = {r["size"] for r in rows}
    assert sizes == {"train", str(d)}
