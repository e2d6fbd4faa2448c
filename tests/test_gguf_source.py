"""A .gguf (or a folder holding one) is a model source; what cannot be one fails in one line."""
from __future__ import annotations

import numpy as np
import pytest

from sustain.eval.errors import UserError
from sustain.eval.generators.gguf import converted_folder, gguf_file
from sustain.eval.generators.hf import check_model_source


def write_gguf(path, architecture: str) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(1)
    writer.add_context_length(8)
    writer.add_embedding_length(4)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_a_gguf_file_or_a_folder_holding_one_is_recognised(tmp_path):
    write_gguf(tmp_path / "m.gguf", "llama")
    assert gguf_file(str(tmp_path / "m.gguf")) == (tmp_path / "m.gguf").resolve()
    assert gguf_file(str(tmp_path)) == (tmp_path / "m.gguf").resolve()
    (tmp_path / "config.json").write_text("{}")  # a saved model folder stays a folder, whatever else it holds
    assert gguf_file(str(tmp_path)) is None
    assert gguf_file("Qwen/Qwen2.5-0.5B-Instruct") is None


def test_a_folder_with_two_gguf_files_asks_for_one(tmp_path):
    write_gguf(tmp_path / "a.gguf", "llama")
    write_gguf(tmp_path / "b.gguf", "llama")
    with pytest.raises(UserError, match="holds 2 .gguf files") as err:
        check_model_source(str(tmp_path))
    assert "a.gguf" in str(err.value) and "--model" in err.value.fix


def test_an_architecture_transformers_cannot_dequantise_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SUSTAIN_CACHE_DIR", str(tmp_path / "cache"))
    write_gguf(tmp_path / "odd.gguf", "rwkv7")
    with pytest.raises(UserError) as err:
        converted_folder(tmp_path / "odd.gguf")
    assert "cannot dequantise odd.gguf" in str(err.value) and "rwkv7" in str(err.value)
    assert "\n" not in str(err.value)
    assert not list((tmp_path / "cache" / "gguf-hf").glob("odd*"))  # nothing half-converted is left as a model
