"""The workload: embedded corpus and base model, default doc -> code data, noise, local sources.

One tiny base (32 wide, 1 layer, 512-token BPE, 20 pretraining steps: ~10 s on 2 cores) is built per
module and shared; only the determinism test builds a second one in its own cache dir.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pytest

from govgym.efficiency import basemodel, corpus
from govgym.efficiency import workload as wl
from govgym.efficiency.config import RunConfig
from govgym.typed import ConfigError
from tests.conftest import embedded_cfg

tiny_cfg = embedded_cfg  # the tiny embedded default, cached under the given folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("govgym_cache")


@pytest.fixture(scope="module")
def built(cache: Path) -> tuple[RunConfig, wl.Workload]:
    cfg = tiny_cfg(cache)
    return cfg, wl.load_workload(cfg, progress=False)


@pytest.fixture(scope="module")
def local_model(built: tuple[RunConfig, wl.Workload], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model + tokenizer saved as an ordinary local Hugging Face directory."""
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("local_model")
    built[1].model.save_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(Path(built[1].info["base_dir"]))
    tokenizer.pad_token = None  # like GPT-2: no pad token, so load_workload must fall back to eos
    tokenizer.save_pretrained(out)
    return out


# ----------------------------------------------------------------------------- corpus


def test_stdlib_files_are_sorted_and_filtered() -> None:
    root = corpus.stdlib_root()
    rels = [p.relative_to(root).as_posix() for p in corpus.stdlib_files()]
    assert len(rels) > 100 and rels == sorted(rels)
    assert "os.py" in rels and "json/decoder.py" in rels
    for rel in rels:
        parts = rel.split("/")
        assert not set(parts[:-1]) & corpus.EXCLUDED_DIRS, rel
        assert not parts[-1].startswith("_sysconfigdata"), rel


def test_split_is_disjoint_stable_and_balanced() -> None:
    rels = [row[0] for row in corpus.current_manifest()["files"]]
    halves = corpus.split_files(rels)
    assert set(halves["pretrain"]).isdisjoint(halves["finetune"])
    assert sorted(halves["pretrain"] + halves["finetune"]) == sorted(rels)
    assert 0.35 < len(halves["pretrain"]) / len(rels) < 0.65
    # a file's half does not depend on which other files exist
    assert corpus.split_files(rels[::3]) == {
        k: [r for r in v if r in set(rels[::3])] for k, v in halves.items()
    }


def test_manifest_diff_reports_each_kind() -> None:
    saved = {"python": "3.11.0", "files": [["a.py", "1", 1], ["b.py", "2", 1], ["c.py", "3", 1]]}
    current = {"python": "3.11.7", "files": [["a.py", "1", 1], ["b.py", "X", 1], ["d.py", "4", 1]]}
    diff = corpus.manifest_diff(saved, current)
    assert (diff["missing"], diff["changed"], diff["added"], diff["match"]) == (
        ["c.py"],
        ["b.py"],
        ["d.py"],
        False,
    )
    assert "1 missing (c.py)" in corpus.diff_summary(diff)
    assert corpus.manifest_diff(saved, saved)["match"]


def test_finetune_task_comes_from_the_other_half() -> None:
    manifest = corpus.current_manifest()
    halves = corpus.split_files(row[0] for row in manifest["files"])
    examples = corpus.doc_code_examples(manifest)
    assert len(examples) > 1000
    assert {e["key"].split("::")[0] for e in examples} <= set(halves["finetune"])
    assert all(e["text"].startswith("<doc> ") and "\n<code> def " in e["text"] for e in examples[:50])
    assert not any(e["doc"] in e["code"] for e in examples[:50])  # the docstring was cut out of the code
    assert not any("<doc> " in text for text in corpus.pretrain_texts(manifest))


# ----------------------------------------------------------------------------- base model


def test_base_is_cached_and_deterministic(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from safetensors.torch import load_file

    cfg, work = built
    base = Path(work.info["base_dir"])
    assert {"config.json", "manifest.json", "govgym_base.json", "tokenizer.json"} <= {
        p.name for p in base.iterdir()
    }
    assert not list(base.parent.glob(".tmp-*"))  # the temp build dir was renamed into place

    def no_rebuild(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the cached base was rebuilt")

    with monkeypatch.context() as m:
        m.setattr(basemodel, "_build_base", no_rebuild)
        assert wl.build_base_model(cfg, progress=False) == base
        again = wl.load_workload(cfg, progress=False)
    assert again.model is not work.model  # a new instance per call: runs never share weights
    assert again.model.model.embed_tokens.weight.data_ptr() != work.model.model.embed_tokens.weight.data_ptr()

    other = wl.build_base_model(tiny_cfg(tmp_path), progress=False)
    assert other.name == base.name
    assert (other / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    a, b = load_file(base / "model.safetensors"), load_file(other / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_pretraining_lowers_loss(built) -> None:
    summary = json.loads((Path(built[1].info["base_dir"]) / "govgym_base.json").read_text())
    assert summary["eval_loss"] < summary["init_eval_loss"] - 0.2  # held-out chunks, not the batches seen
    assert summary["final_loss"] < summary["first_loss"]
    assert summary["recipe"]["pretrain_steps"] == 20 and summary["govgym_version"]


# ----------------------------------------------------------------------------- default data


def test_columns_shapes_and_labels(built) -> None:
    cfg, work = built
    tok = work.tokenizer
    assert work.train.column_names == ["input_ids", "labels", "noise"] == work.eval.column_names
    assert (len(work.train), len(work.eval)) == (64, 8)
    for row in work.eval:
        ids, labels = row["input_ids"], row["labels"]
        assert len(ids) == len(labels) == cfg.data.seq_len and ids[0] == tok.bos_token_id
        n = sum(lab != -100 for lab in labels)
        assert labels[:n] == ids[:n] and ids[n:] == [tok.pad_token_id] * (len(ids) - n)
        assert tok.decode(ids[:n]).startswith("<|bos|><doc> ")
    json.dumps(work.info)  # json-able provenance
    assert (
        work.info["manifest_hash"] == corpus.current_manifest()["hash"]
        and work.info["manifest_mismatch"] is None
    )


def test_noise_counts_rate_and_clean_eval(built) -> None:
    _, work = built
    noise = work.train["noise"]
    counts = work.info["noise_counts"]
    assert sum(v for k, v in counts.items() if k != "clean") == sum(n > 0 for n in noise) == round(0.3 * 64)
    assert all(counts[k] > 0 for k in ("corrupt", "shuffle", "duplicate"))
    assert set(work.eval["noise"]) == {0}
    rows = [tuple(r) for r in work.train["input_ids"]]
    clean = {rows[i] for i, n in enumerate(noise) if n == 0}
    assert all(rows[i] in clean for i, n in enumerate(noise) if n == wl.NOISE_CODES["duplicate"])
    assert not any(rows[i] in clean for i, n in enumerate(noise) if n == wl.NOISE_CODES["corrupt"])
    assert clean.isdisjoint(tuple(r) for r in work.eval["input_ids"])  # eval is held out


# ----------------------------------------------------------------------------- reproducibility


def test_manifest_mismatch_is_reported(built, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg, work = built
    base = Path(work.info["base_dir"])
    shutil.copytree(base, tmp_path / "base" / base.name)
    saved = corpus.load_manifest(tmp_path / "base" / base.name / "manifest.json")
    saved["files"][0][1] = "0" * 64  # changed
    saved["files"].append(["gone_module.py", "1" * 64, 10])  # missing here
    del saved["files"][1]  # added here
    corpus.save_manifest(saved, tmp_path / "base" / base.name / "manifest.json")
    with caplog.at_level(logging.WARNING, logger="govgym.efficiency.workload"):
        tampered = wl.load_workload(tiny_cfg(tmp_path), progress=False)
    assert (
        "1 missing (gone_module.py)" in caplog.text
        and "1 changed" in caplog.text
        and "1 added" in caplog.text
    )
    mismatch = tampered.info["manifest_mismatch"]
    assert (mismatch["missing"], mismatch["changed"], mismatch["added"]) == (1, 1, 1)
    assert tampered.info["base_dir"] == str(tmp_path / "base" / base.name)  # the cache is still used
    assert wl.base_manifest_diff(tmp_path / "base" / base.name)["missing"] == ["gone_module.py"]


# ----------------------------------------------------------------------------- local sources


def test_local_model_dir_with_default_data(local_model: Path, tmp_path: Path) -> None:
    work = wl.load_workload(tiny_cfg(tmp_path, model={"source": str(local_model)}), progress=False)
    assert work.info["model_source"] == str(local_model) and work.info["base_dir"] is None
    assert not (tmp_path / "base").exists()  # nothing was pretrained
    assert len(work.train) == 64 and work.tokenizer.pad_token_id == work.tokenizer.eos_token_id
    padded = [row for row in work.train if row["labels"][-1] == -100 and row["noise"] != 1]  # 1 = corrupt
    assert padded  # some functions are shorter than 64 tokens
    for row in padded:  # the eos that ends the text is a target; the pad (= eos) copies after it are not
        n = sum(lab != -100 for lab in row["labels"])
        assert row["labels"][n - 1] == row["input_ids"][n] == work.tokenizer.eos_token_id


def _rows(n: int = 40) -> list[dict[str, Any]]:
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    return [
        {"content": " ".join(words[(i + k) % 10] for k in range(8)) + f" row {i}", "id": i} for i in range(n)
    ]


def _write_local(kind: str, root: Path) -> tuple[Path, str]:
    import datasets

    rows = _rows()
    if kind == "jsonl":
        path = root / "data.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path, "content"
    if kind == "txt_folder":  # a folder of text files, one example per line
        (root / "txt").mkdir()
        for part in range(2):
            (root / "txt" / f"part{part}.txt").write_text(
                "\n".join(r["content"] for r in rows[part::2]) + "\n"
            )
        return root / "txt", "text"
    ds = datasets.Dataset.from_list(rows)
    if kind == "parquet":
        ds.to_parquet(str(root / "data.parquet"))
        return root / "data.parquet", "content"
    ds.save_to_disk(str(root / "saved"))
    if kind == "arrow":  # the shard save_to_disk writes is a plain arrow stream file
        shutil.copy(next((root / "saved").glob("*.arrow")), root / "data.arrow")
        return root / "data.arrow", "content"
    return root / "saved", "content"


@pytest.mark.parametrize("kind", ["jsonl", "txt_folder", "parquet", "arrow", "save_to_disk"])
def test_local_datasets(kind: str, built, tmp_path: Path) -> None:
    cache = Path(built[0].cache_dir)
    source, field = _write_local(kind, tmp_path)
    cfg = tiny_cfg(cache, data={"source": str(source), "text_field": field, "seq_len": 32})
    work = wl.load_workload(cfg, progress=False)
    assert (len(work.train), len(work.eval), work.info["n_available"]) == (32, 8, 40)
    assert all(len(ids) == 32 for ids in work.train["input_ids"])
    assert sum(n > 0 for n in work.train["noise"]) == round(0.3 * 32) and set(work.eval["noise"]) == {0}
    special = set(work.tokenizer.all_special_ids)
    for ids in work.eval["input_ids"]:  # eval rows are clean examples, truncated to 32 tokens
        text = work.tokenizer.decode([t for t in ids if t not in special])
        assert any(r["content"].startswith(text) for r in _rows()), text
    again = wl.load_workload(cfg, progress=False)  # deterministic split and noise
    assert again.train["input_ids"] == work.train["input_ids"] and again.train["noise"] == work.train["noise"]


def test_bad_text_field_names_the_field(built, tmp_path: Path) -> None:
    source, _ = _write_local("jsonl", tmp_path)
    cfg = tiny_cfg(Path(built[0].cache_dir), data={"source": str(source), "text_field": "contnet"})
    with pytest.raises(ConfigError, match=r"data.text_field: 'contnet'.*content, id.*Did you mean 'content'"):
        wl.load_workload(cfg, progress=False)


def test_unloadable_model_dir_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 32}))
    with pytest.raises(ConfigError, match=r"model.source: could not load a causal LM from .*save_pretrained"):
        wl.load_workload(tiny_cfg(tmp_path / "cache", model={"source": str(tmp_path)}), progress=False)


def test_seq_len_beyond_positions_fails_before_building(tmp_path: Path) -> None:
    cfg = tiny_cfg(tmp_path, model={"max_position_embeddings": 32}, data={"seq_len": 64})
    with pytest.raises(ConfigError, match="data.seq_len: 64 exceeds model.max_position_embeddings=32"):
        wl.load_workload(cfg, progress=False)
    assert not (tmp_path / "base").exists()


def _build_in_subprocess(cache: str) -> str:
    return str(wl.build_base_model(tiny_cfg(Path(cache), model={"pretrain_steps": 5}), progress=False))


@pytest.mark.slow
def test_two_processes_building_at_once_share_one_cache(tmp_path: Path) -> None:
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2) as pool:
        paths = pool.map(_build_in_subprocess, [str(tmp_path)] * 2)
    assert paths[0] == paths[1]
    assert [p.name for p in (tmp_path / "base").iterdir() if not p.name.startswith(".")] == [
        Path(paths[0]).name
    ]
    assert not list((tmp_path / "base").glob(".tmp-*"))
    wl.load_workload(tiny_cfg(tmp_path, model={"pretrain_steps": 5}), progress=False)  # the survivor loads


# ----------------------------------------------------------------------------- tasks and SFT labels


def _task_split(cfg: RunConfig) -> tuple[Any, Any]:
    """The train / eval examples (before noise and tokenization) of a default-source config."""
    import datasets

    examples = corpus.task_examples(corpus.current_manifest(), cfg.data.task)
    cols = ("key", "doc", "code", "prompt", "response", "text")
    return wl._split(datasets.Dataset.from_dict({k: [e[k] for e in examples] for k in cols}), cfg)


def test_code2doc_examples_mirror_doc2code() -> None:
    manifest = corpus.current_manifest()
    d2c, c2d = corpus.task_examples(manifest, "doc2code"), corpus.task_examples(manifest, "code2doc")
    assert len(c2d) == len(d2c) > 1000 and [e["key"] for e in c2d] == [e["key"] for e in d2c]
    for a, b in zip(d2c[:200], c2d[:200], strict=True):
        assert a["text"] == corpus.format_example(a["doc"], a["code"]) == a["prompt"] + a["response"]
        assert b["prompt"] == f"<code> {a['code']}\n<doc>" and b["response"] == f" {a['doc']}"
        assert b["prompt"].strip() and b["response"].strip()
    with pytest.raises(ValueError, match="unknown task 'text2sql'"):
        corpus.prompt_response("d", "c", "text2sql")


def test_default_task_tokenization_is_unchanged(built) -> None:
    # response_only false: every row is exactly the recipe before tasks existed (joint tokenization of
    # format_example(doc, code), eos when it fits, labels = ids with -100 on padding only)
    cfg, work = built
    tok, seq = work.tokenizer, cfg.data.seq_len
    train_text, eval_text = _task_split(cfg)

    def old(doc: str, code: str) -> tuple[list[int], list[int]]:
        ids = tok(corpus.format_example(doc, code), truncation=True, max_length=seq)["input_ids"]
        if len(ids) < seq and ids[-1] != tok.eos_token_id:
            ids = [*ids, tok.eos_token_id]
        fill = seq - len(ids)
        return ids + [tok.pad_token_id] * fill, ids + [-100] * fill

    for n, ex in enumerate(eval_text):
        assert old(ex["doc"], ex["code"]) == (work.eval[n]["input_ids"], work.eval[n]["labels"])
    clean = [n for n, code in enumerate(work.train["noise"]) if code == 0]
    assert len(clean) > 30
    for n in clean:
        ex = train_text[n]
        assert old(ex["doc"], ex["code"]) == (work.train[n]["input_ids"], work.train[n]["labels"])


@pytest.mark.parametrize("task", ["doc2code", "code2doc"])
def test_response_only_masks_exactly_the_prompt(task: str, built) -> None:
    cache = Path(built[0].cache_dir)
    cfg = tiny_cfg(cache, data={"task": task, "response_only": True, "seq_len": 128, "eval_examples": 24})
    work = wl.load_workload(cfg, progress=False)
    tok = work.tokenizer
    _, eval_text = _task_split(cfg)
    assert work.info["task"] == task and work.info["response_only"] is True
    whole = 0
    for ex, row in zip(eval_text, work.eval, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        p = tok(ex["prompt"])["input_ids"]  # bos + prompt
        r = tok(ex["response"], add_special_tokens=False)["input_ids"]
        first = next(k for k, lab in enumerate(labels) if lab != -100)  # every row has response tokens
        assert all(lab == -100 for lab in labels[:first])
        n = sum(lab != -100 for lab in labels)
        assert labels[first : first + n] == ids[first : first + n]  # one contiguous labelled span
        assert ids[first + n :] == [tok.pad_token_id] * (len(ids) - first - n)
        assert ids[0] == tok.bos_token_id
        if len(p) + len(r) < cfg.data.seq_len:  # fits: prompt exactly masked, then response + eos
            whole += 1
            assert first == len(p) and ids[:first] == p
            assert ids[first : first + n] == [*r, tok.eos_token_id]
            assert tok.decode(ids[1 : first + n - 1]) == ex["prompt"] + ex["response"]
        else:  # cut: the prompt keeps its head and its cue, the response its head
            cue = "\n<doc>" if task == "code2doc" else "\n<code>"
            assert tok.decode(ids[1:first]).endswith(cue) and first <= max(len(p), cfg.data.seq_len // 2)
            assert tok.decode(ids[first : first + n]) in ex["response"]
    assert whole >= 2


def test_shuffle_and_corrupt_under_response_only(built) -> None:
    cache = Path(built[0].cache_dir)
    over = {"response_only": True, "seq_len": 96}
    clean = wl.load_workload(tiny_cfg(cache, data={**over, "noise_rate": 0.0}), progress=False)
    tok = clean.tokenizer
    train_text, _ = _task_split(tiny_cfg(cache, data=over))
    responses = train_text["response"]

    shuffled = wl.load_workload(
        tiny_cfg(cache, data={**over, "noise_rate": 0.5, "noise_kinds": ["shuffle"]}), progress=False
    )
    rows = [n for n, code in enumerate(shuffled.train["noise"]) if code == wl.NOISE_CODES["shuffle"]]
    assert len(rows) == 32
    for n in rows:  # same prompt as the clean row, another row's response
        ids, labels = shuffled.train[n]["input_ids"], shuffled.train[n]["labels"]
        first = next(k for k, lab in enumerate(labels) if lab != -100)
        assert ids[:first] == clean.train[n]["input_ids"][:first]
        reply = tok.decode(
            [t for t, lab in zip(ids, labels, strict=True) if lab != -100 and t != tok.eos_token_id]
        )
        assert not responses[n].startswith(reply)
        assert any(responses[j].startswith(reply) for j in range(len(responses)) if j != n)

    corrupt = wl.load_workload(
        tiny_cfg(cache, data={**over, "noise_rate": 0.5, "noise_kinds": ["corrupt"]}), progress=False
    )
    rows = [n for n, code in enumerate(corrupt.train["noise"]) if code == wl.NOISE_CODES["corrupt"]]
    assert len(rows) == 32
    for n in range(len(corrupt.train)):
        a, b = clean.train[n], corrupt.train[n]
        changed = [k for k, (x, y) in enumerate(zip(a["input_ids"], b["input_ids"], strict=True)) if x != y]
        labelled = [k for k, lab in enumerate(a["labels"]) if lab != -100]
        assert [lab == -100 for lab in b["labels"]] == [lab == -100 for lab in a["labels"]]
        assert set(changed) <= set(labelled)  # the prompt is never touched
        if n in rows:
            assert len(changed) >= 0.4 * len(labelled)  # 50-100% drawn; a draw may repeat a token
            assert all(b["labels"][k] == b["input_ids"][k] for k in labelled)
        else:
            assert not changed


def test_data_cache_key_has_task_and_response_only(built) -> None:
    cache = Path(built[0].cache_dir)
    folders = {}
    for task, ro in [("doc2code", False), ("doc2code", True), ("code2doc", False), ("code2doc", True)]:
        before = set((cache / "data").iterdir())
        work = wl.load_workload(tiny_cfg(cache, data={"task": task, "response_only": ro}), progress=False)
        new = set((cache / "data").iterdir()) - before
        folders[task, ro] = new.pop() if new else None
        assert work.info["data_config"]["task"] == task
    # the first was built by the module fixture (same key); every other combination got its own folder
    assert (
        folders["doc2code", False] is None
        and len({folders[k] for k in folders if k[0] != "doc2code" or k[1]}) == 3
    )


def _write_pairs(root: Path) -> Path:
    rows = [{"question": f"What is {i} plus {i}?", "answer": f" It is {2 * i}.", "id": i} for i in range(40)]
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_local_prompt_response_fields(built, tmp_path: Path) -> None:
    cache = Path(built[0].cache_dir)
    source = str(_write_pairs(tmp_path))
    fields = {"source": source, "prompt_field": "question", "response_field": "answer", "seq_len": 32}
    work = wl.load_workload(tiny_cfg(cache, data={**fields, "response_only": True}), progress=False)
    tok = work.tokenizer
    for row in work.eval:
        ids, labels = row["input_ids"], row["labels"]
        first = next(k for k, lab in enumerate(labels) if lab != -100)
        prompt, reply = (
            tok.decode(ids[1:first]),
            tok.decode([t for t, lab in zip(ids, labels) if lab != -100][:-1]),
        )
        assert prompt.startswith("What is ") and reply.startswith(" It is ")
        i = int(prompt.split()[2])
        assert reply == f" It is {2 * i}."
    full = wl.load_workload(tiny_cfg(cache, data=fields), progress=False)  # all-token loss
    assert all(row["labels"][1] != -100 for row in full.eval)


def test_bad_prompt_or_response_field(built, tmp_path: Path) -> None:
    cache = Path(built[0].cache_dir)
    source = str(_write_pairs(tmp_path))
    cfg = tiny_cfg(cache, data={"source": source, "prompt_field": "qestion", "response_field": "answer"})
    with pytest.raises(
        ConfigError, match=r"data.prompt_field: 'qestion' is not a column.*Did you mean 'question'"
    ):
        wl.load_workload(cfg, progress=False)
    cfg = tiny_cfg(cache, data={"source": source, "prompt_field": "question", "response_field": "id"})
    with pytest.raises(ConfigError, match=r"data.response_field: column 'id' .* not strings"):
        wl.load_workload(cfg, progress=False)
    with pytest.raises(
        ConfigError, match=r"data.prompt_field: set to 'question' but data.response_field is empty"
    ):
        tiny_cfg(cache, data={"source": source, "prompt_field": "question"})
    with pytest.raises(ConfigError, match=r"data.response_only: true needs prompt-completion data"):
        tiny_cfg(cache, data={"source": source, "response_only": True})
    with pytest.raises(ConfigError, match=r"data.task: .*text2sql"):
        tiny_cfg(cache, data={"task": "text2sql"})
