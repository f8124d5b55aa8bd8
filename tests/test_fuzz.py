"""Short runs of the fuzzers (bench/fuzz.py, bench/fuzz_grpc.py) with fixed seeds: the parsers meet a
few thousand mutated and random inputs (blobs of every mode and readable version, frame batch
sequences, the channel log API, the tokenizer) with no crash, no untyped error and no broken
contract, over both shipped models (the integer default's exact-tier and fallback forms, the float
model's RVQ-coded forms and the retired semantic tier's data it reads, each decoded by the model
that made it, and each model's blobs given to the other); a real server (holding both) answers
some hundreds of adversarial calls with a status each, never UNKNOWN or INTERNAL, none past its
deadline, refuses every call that asks to write in the retired semantic tier, and stays up. The
long run is ``python bench/fuzz.py`` (``make bench-fuzz``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from conftest import ServerProcess

from rvqstream.models import Codec
from rvqstream.models.bundle import SEMANTIC_DIR

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from fuzz import material
from fuzz_blobs import BLOB_FORMS, form_role, form_versions
from fuzz_grpc import grpc_fuzz
from fuzz_grpc_server import SERVE_ARGS, access_file
from fuzz_parsers import SPLIT_CLAIM, ParserFuzz


@pytest.fixture(scope="module")
def parsers(tmp_path_factory) -> ParserFuzz:
    """The parser fuzzer over the shipped models (the integer default, the float model of the RVQ
    forms), after a counted run (300 inputs per fast target)."""
    fuzz = ParserFuzz(Codec.load(), Codec.load(SEMANTIC_DIR), tmp_path_factory.mktemp("fuzz-log"))
    try:
        fuzz.run(examples=300, seed=0)
    finally:
        fuzz.store.close()
    return fuzz


def test_parsers_fail_only_with_their_own_errors(parsers):
    s = parsers.summary()
    assert s["inputs"] >= 2000
    for name, t in s["targets"].items():
        assert t["inputs"] > 0, name
        assert t["crashes"] == 0, (name, t["crash_list"])
        assert t["untyped"] == 0, (name, t["untyped_by_message"])
        assert t["hangs"] == 0, (name, t["hang_list"])


def test_each_form_is_decoded_by_the_model_that_made_it(parsers):
    """Exact-tier and fallback seeds come from the integer model, the RVQ-coded ones (exact with
    stages, and the retired semantic tier's, made as its encoder made them) from the float model,
    and the mutants of both reach their model's decoder."""
    codec, rvq = parsers.codec, parsers.rvq
    assert codec.parts.stages == 0 and rvq.parts.stages > 0
    assert parsers.summary()["models"] == {"intlm": codec.model_id, "float": rvq.model_id}
    for form in BLOB_FORMS:
        made_by = parsers.codecs[form_role(form)]
        seeds = parsers.blobs.seeds[form]
        assert seeds and all(s.blob[1] == made_by.tag for s in seeds), form
        assert all(made_by.decompress(s.blob, legacy=True) == s.text for s in seeds), form
    assert {s.codec for s in parsers.batches.sequences["exact"]} == {"exact"}
    assert {s.codec for s in parsers.batches.sequences["exact-rvq"]} == {"rvq"}
    assert {s.codec for s in parsers.batches.sequences["semantic"]} == {"rvq"}
    rows = parsers.summary()["wrong_results"]
    for form in ("blob/exact-v4", "blob/exact-v3", "blob/exact-rvq-v4", "blob/exact-rvq-v3", "blob/semantic-v3",
                 "batch/exact,", "batch/exact-rvq,", "batch/semantic"):
        assert sum(v["mutants"] for k, v in rows.items() if k.startswith(form)) > 0, form


def test_forms_cover_every_readable_version(parsers):
    """Blobs are made in format version 4 (the semantic tier's were made in 3, its last); each form
    is fuzzed in every readable version up to the one it is made in, each seed's header naming its
    form's version, and no version-4 semantic form exists."""
    assert form_versions("exact") == form_versions("zstd") == form_versions("exact-rvq") == (4, 3, 2)
    assert form_versions("semantic") == (3, 2)
    assert "semantic-v4" not in BLOB_FORMS
    assert (parsers.codec.compress("hello world")[0] >> 2) & 0x07 == 4
    for form in BLOB_FORMS:
        version = int(form.rsplit("-v", 1)[1])
        assert all((s.blob[0] >> 2) & 0x07 == version for s in parsers.blobs.seeds[form]), form


def test_blobs_of_one_model_fail_on_the_other(parsers):
    """``blob/cross``: as made, a blob names its model's tag and the other model refuses it (a
    ``CodecError``; that it never decodes is a contract, checked with the others); retagged, the
    exact-tier ones fail their check or earlier."""
    t = parsers.summary()["targets"]["blob/cross"]
    assert t["expected"].get("UnknownModelError", 0) > 0, t
    rows = {k: v for k, v in parsers.summary()["wrong_results"].items() if k.startswith("blob/cross")}
    assert any(v["mutants"] for k, v in rows.items() if k.startswith("blob/cross: exact-v")), rows
    assert all(v["wrong"] == 0 for v in rows.values()), rows


def test_parsers_keep_their_contracts(parsers):
    """The log matches its reference model, no batch decodes after its message failed, and the
    tokenizer round-trips every text (``split_final``'s claim is reported by the long run)."""
    for name, t in parsers.summary()["targets"].items():
        broken = {k: v for k, v in t["violation_list"].items() if k != SPLIT_CLAIM}
        assert not broken, (name, broken)


def test_checked_forms_reject_their_mutants(parsers):
    """The short run is far too small to see a check pass by chance (2^-12 and less)."""
    for name, row in parsers.summary()["wrong_results"].items():
        if row["check_bits"]:
            assert row["wrong"] == 0, (name, row["examples"])


def _server(tmp_path: Path) -> tuple[ServerProcess, dict[str, str]]:
    tokens = access_file(tmp_path / "access.toml")
    args = (*SERVE_ARGS, "--auth-tokens", str(tmp_path / "access.toml"))
    server = ServerProcess(tmp_path / "data", args=args)
    return server.start(), tokens


def _fuzz(parsers: ParserFuzz, tmp_path: Path, malformed: float) -> dict:
    server, tokens = _server(tmp_path)
    try:
        return asyncio.run(grpc_fuzz(server.target, server.proc.pid, server.log, tokens, material(parsers),
                                     parsers.codec.model_id, requests=500, seed=0, concurrency=16,
                                     malformed=malformed))
    finally:
        server.close()


def test_grpc_calls_end_with_a_handled_status(parsers, tmp_path):
    r = _fuzz(parsers, tmp_path, malformed=0.0)
    assert r["requests"] == 500
    assert r["unknown_or_internal"] == 0, r["findings"]
    assert r["hangs"] == 0, r["hang_list"]
    assert r["server_alive"] and r["health"] == "SERVING" and r["round_trip"] is True, r
    assert set(r["statuses_by_method"]) == {"Compress", "Decompress", "EncodeStream", "DecodeStream",
                                            "GetModel", "ListModels", "Publish", "PublishStream", "Subscribe",
                                            "FetchMessage"}
    retired = r["retired_tier_writes"]
    assert retired.get("INVALID_ARGUMENT", 0) > 0 and "OK" not in retired, retired


def test_grpc_undecodable_requests_get_a_handled_status(parsers, tmp_path):
    r = _fuzz(parsers, tmp_path, malformed=1.0)
    assert r["server_alive"] and r["hangs"] == 0, r
    assert r["unknown_or_internal"] == 0, r["findings"]
