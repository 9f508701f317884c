"""The offline Whisper base as an openai-whisper checkpoint, for `wer.engine=openai-whisper` (faster-whisper loads
the CTranslate2 folder directly and needs none of this). CTranslate2's Python package can load a `model.bin` but
not hand its tensors back, so the format is read here.

CTranslate2 `model.bin`, as read from the bytes (little endian):
    u32 format version (6) | string spec name ("WhisperSpec") | u32 spec revision | u32 variable count
    per variable: string name | u8 rank | rank × u32 dims | u8 dtype | u32 byte count | raw data
    u32 alias count | per alias: string alias | string target
where a string is u16 byte length followed by the bytes (NUL terminated).

The mapping onto openai-whisper's layout: fused self-attention qkv split into query/key/value (a zero key bias
dropped), encoder-decoder attention linear_0 → query, linear_1 → key+value, linear_2 → out; ffn linear_0/1 →
mlp.0/mlp.2; gamma/beta → weight/bias; encoder layer_norm → ln_post; decoder embeddings → token_embedding;
alignment heads from config.json.
"""
from __future__ import annotations

import base64
import hashlib
import io
import fcntl
import gzip
import re
import struct
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from whisper.model import ModelDimensions

from mheval.asr.weights import (BASE_MODEL_PARTS, BASE_VERSION, CONVERTER_VERSION, base_config, cache_dir,
                                source_bytes)
from mheval.files import sha256_file, write_bytes_atomic

CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class BinaryReader:
    def __init__(self, data: bytes):
        self.data, self.offset = memoryview(data), 0

    def unpack(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def take(self, n: int) -> memoryview:
        chunk = self.data[self.offset : self.offset + n]
        if len(chunk) != n:
            raise ValueError("truncated CTranslate2 model file")
        self.offset += n
        return chunk

    def string(self) -> str:
        return bytes(self.take(self.unpack("H"))).rstrip(b"\0").decode()


def read_ctranslate2(data: bytes) -> dict[str, np.ndarray]:
    """All variables of a CTranslate2 model.bin, aliases resolved; scalars come back as 0-d arrays."""
    reader = BinaryReader(data)
    format_version, spec = reader.unpack("I"), reader.string()
    if format_version != 6 or spec != "WhisperSpec":
        raise ValueError(f"unsupported CTranslate2 file: format {format_version}, spec {spec!r}")
    reader.unpack("I")  # spec revision
    variables = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        shape = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        dtype_code, n_bytes = reader.unpack("B"), reader.unpack("I")
        if dtype_code not in CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CTranslate2 dtype {dtype_code}")
        variables[name] = np.frombuffer(reader.take(n_bytes), dtype=CT2_DTYPES[dtype_code]).reshape(shape)
    for _ in range(reader.unpack("I")):
        alias, target = reader.string(), reader.string()
        variables[alias] = variables[target]
    if reader.offset != len(data):
        raise ValueError(f"{len(data) - reader.offset} unexpected bytes after the CTranslate2 variables")
    return variables


# ---------------------------------------------------------------------------------------------------------------
# CTranslate2 Whisper → openai-whisper checkpoint


def count_layers(variables: dict, stack: str) -> int:
    return len({m.group(1) for name in variables if (m := re.match(rf"{stack}/layer_(\d+)/", name))})


def model_dimensions(v: dict) -> ModelDimensions:
    return ModelDimensions(
        n_mels=v["encoder/conv1/weight"].shape[1],
        n_audio_ctx=v["encoder/position_encodings/encodings"].shape[0],
        n_audio_state=v["encoder/position_encodings/encodings"].shape[1],
        n_audio_head=int(v["encoder/num_heads"]),
        n_audio_layer=count_layers(v, "encoder"),
        n_vocab=v["decoder/embeddings/weight"].shape[0],
        n_text_ctx=v["decoder/position_encodings/encodings"].shape[0],
        n_text_state=v["decoder/position_encodings/encodings"].shape[1],
        n_text_head=int(v["decoder/num_heads"]),
        n_text_layer=count_layers(v, "decoder"),
    )


def split_rows(weight: np.ndarray, bias: np.ndarray, names: tuple[str, ...], prefix: str) -> dict:
    """A fused projection (rows stacked in `names` order) as separate linears. openai-whisper's key projection has
    no bias: CTranslate2 stores zeros there, which we check, since a non-zero slice would mean a wrong layout."""
    out = {}
    for name, w, b in zip(names, np.split(weight, len(names)), np.split(bias, len(names))):
        out[f"{prefix}.{name}.weight"] = w
        if name == "key":
            if np.any(b != 0):
                raise ValueError(f"{prefix}: non-zero key bias; unexpected fused layout")
        else:
            out[f"{prefix}.{name}.bias"] = b
    return out


def linear(v: dict, source: str, target: str) -> dict:
    return {f"{target}.weight": v[f"{source}/weight"], f"{target}.bias": v[f"{source}/bias"]}


def layer_norm(v: dict, source: str, target: str) -> dict:
    return {f"{target}.weight": v[f"{source}/gamma"], f"{target}.bias": v[f"{source}/beta"]}


def attention_block(v: dict, source: str, target: str, cross_attention: bool) -> dict:
    sd = {}
    sa = f"{source}/self_attention"
    sd |= layer_norm(v, f"{sa}/layer_norm", f"{target}.attn_ln")
    sd |= split_rows(v[f"{sa}/linear_0/weight"], v[f"{sa}/linear_0/bias"], ("query", "key", "value"), f"{target}.attn")
    sd |= linear(v, f"{sa}/linear_1", f"{target}.attn.out")
    if cross_attention:
        ca = f"{source}/attention"
        sd |= layer_norm(v, f"{ca}/layer_norm", f"{target}.cross_attn_ln")
        sd |= linear(v, f"{ca}/linear_0", f"{target}.cross_attn.query")
        sd |= split_rows(v[f"{ca}/linear_1/weight"], v[f"{ca}/linear_1/bias"], ("key", "value"), f"{target}.cross_attn")
        sd |= linear(v, f"{ca}/linear_2", f"{target}.cross_attn.out")
    sd |= layer_norm(v, f"{source}/ffn/layer_norm", f"{target}.mlp_ln")
    sd |= linear(v, f"{source}/ffn/linear_0", f"{target}.mlp.0")
    sd |= linear(v, f"{source}/ffn/linear_1", f"{target}.mlp.2")
    return sd


def alignment_heads_dump(heads: list[list[int]], dims: ModelDimensions) -> bytes:
    """openai-whisper's `set_alignment_heads` format: base85 of gzip of a (layers, heads) bool mask."""
    mask = np.zeros((dims.n_text_layer, dims.n_text_head), dtype=bool)
    for layer, head in heads:
        mask[layer, head] = True
    return base64.b85encode(gzip.compress(mask.tobytes(), mtime=0))


def whisper_checkpoint(variables: dict[str, np.ndarray], alignment_heads: list[list[int]]) -> dict:
    """openai-whisper checkpoint dict (dims, model_state_dict, alignment_heads) with the source's float16 tensors."""
    v, dims = variables, model_dimensions(variables)
    sd = {
        "encoder.conv1.weight": v["encoder/conv1/weight"], "encoder.conv1.bias": v["encoder/conv1/bias"],
        "encoder.conv2.weight": v["encoder/conv2/weight"], "encoder.conv2.bias": v["encoder/conv2/bias"],
        "encoder.positional_embedding": v["encoder/position_encodings/encodings"],
        "decoder.token_embedding.weight": v["decoder/embeddings/weight"],
        "decoder.positional_embedding": v["decoder/position_encodings/encodings"],
    }
    sd |= layer_norm(v, "encoder/layer_norm", "encoder.ln_post")
    sd |= layer_norm(v, "decoder/layer_norm", "decoder.ln")
    for i in range(dims.n_audio_layer):
        sd |= attention_block(v, f"encoder/layer_{i}", f"encoder.blocks.{i}", cross_attention=False)
    for i in range(dims.n_text_layer):
        sd |= attention_block(v, f"decoder/layer_{i}", f"decoder.blocks.{i}", cross_attention=True)
    return {
        "dims": asdict(dims),
        "model_state_dict": {name: torch.from_numpy(array.copy()) for name, array in sd.items()},
        "alignment_heads": alignment_heads_dump(alignment_heads, dims),
    }


def convert_base() -> dict:
    model_bin = b"".join(source_bytes(*part) for part in BASE_MODEL_PARTS)
    return whisper_checkpoint(read_ctranslate2(model_bin), base_config()["alignment_heads"])


def base_checkpoint_path() -> Path:
    """The converted base checkpoint, converting it if the cache lacks it or it fails its recorded sha256.

    torch.save embeds a random id, so the checkpoint's sha256 differs between conversions; it is recorded in a
    sidecar at conversion time and checked on every load. The path also works with the `whisper` command line."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = directory / f"base-{BASE_VERSION}-c{CONVERTER_VERSION}.pt"
    sidecar = checkpoint.with_suffix(".sha256")
    with open(directory / ".lock", "w") as lock:  # one converter at a time; the others then find its result
        fcntl.flock(lock, fcntl.LOCK_EX)
        if checkpoint.exists() and sidecar.exists() and sidecar.read_text().strip() == sha256_file(checkpoint):
            return checkpoint
        buffer = io.BytesIO()
        torch.save(convert_base(), buffer)
        data = buffer.getvalue()
        write_bytes_atomic(checkpoint, data)
        write_bytes_atomic(sidecar, hashlib.sha256(data).hexdigest().encode())
    return checkpoint
