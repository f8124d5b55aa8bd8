"""The ``rvqstream`` command against a real server."""

from __future__ import annotations

import json
import subprocess
import sys

CLI = [sys.executable, "-m", "rvqstream.cli"]


def run(*args, input=None, check=True):
    return subprocess.run([*CLI, *args], input=input, capture_output=True, check=check, timeout=120)


def test_compress_then_decompress(server, cache_dir):
    text = "A line for the command line — ünïcode included.\n".encode()
    common = ["--target", server.target, "--cache-dir", str(cache_dir)]
    blob = run("compress", *common, input=text).stdout
    assert 0 < len(blob) < len(text)
    assert run("decompress", *common, input=blob).stdout == text


def test_publish_subscribe_and_models(server, cache_dir, tmp_path, registry):
    common = ["--target", server.target, "--cache-dir", str(cache_dir)]
    lines = tmp_path / "lines.txt"
    lines.write_text("first line\nsecond line\nthird line\n")
    assert run("publish", *common, "notes", str(lines)).stdout.split() == [b"0", b"1", b"2"]
    out = run("subscribe", *common, "notes", "--from-offset", "1", "--limit", "2", "--json").stdout
    got = [json.loads(line) for line in out.splitlines()]
    assert [(g["offset"], g["text"]) for g in got] == [(1, "second line"), (2, "third line")]
    models = run("models", *common).stdout.decode().split()
    assert models[0] == registry.default.model_id and "default" in models


def test_client_errors_are_one_line(server, cache_dir):
    result = run("subscribe", "--target", server.target, "--cache-dir", str(cache_dir), "missing",
                 check=False)
    assert result.returncode != 0
    assert result.stderr.decode().strip().startswith("rvqstream subscribe: NOT_FOUND")


def test_serve_names_the_extra_when_its_packages_are_missing():
    code = ("import sys; sys.modules['grpc_health.v1'] = None; "
            "from rvqstream.cli import main; main(['serve'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode != 0
    assert "pip install 'rvqstream[server]'" in result.stderr


def test_serve_help_lists_flags_and_env_vars():
    out = run("serve", "--help").stdout.decode()
    assert "--listen" in out and "RVQSTREAM_DATA_DIR" in out and "--max-delay-ms" in out


def test_publish_stream_and_follow(server, cache_dir):
    import time

    common = ["--target", server.target, "--cache-dir", str(cache_dir)]
    publisher = subprocess.Popen([*CLI, "publish", *common, "--stream", "--max-delay-ms", "50", "live"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    publisher.stdin.write("first streamed line — ü\nsecond, ".encode())
    publisher.stdin.flush()
    assert publisher.stdout.readline() == b"0\n"          # durable before the input ends
    follower = subprocess.Popen([*CLI, "follow", *common, "live"], stdout=subprocess.PIPE)
    assert follower.stdout.readline().decode() == "0\tfirst streamed line — ü\n"
    time.sleep(0.3)
    publisher.stdin.write(b"written in two pieces\nunfinished at EOF")
    publisher.stdin.close()
    assert publisher.stdout.read().split() == [b"1", b"2"]
    assert publisher.wait(30) == 0
    assert follower.stdout.readline().decode() == "1\tsecond, written in two pieces\n"
    assert follower.stdout.readline().decode() == "2\tunfinished at EOF\n"
    follower.kill()
    follower.wait()
    out = run("subscribe", *common, "live", "--limit", "3").stdout.decode().splitlines()
    assert out == ["0\tfirst streamed line — ü", "1\tsecond, written in two pieces", "2\tunfinished at EOF"]


def test_search_prints_offsets_scores_and_text(server, cache_dir, tmp_path):
    common = ["--target", server.target, "--cache-dir", str(cache_dir)]
    lines = tmp_path / "lines.txt"
    lines.write_text("The server crashed at noon and restarted.\nBake the bread for forty minutes.\n")
    run("publish", *common, "ops", str(lines))
    out = run("search", *common, "ops", "a machine went down", "-k", "2", "--text").stdout.decode().splitlines()
    offset, score, text = out[0].split("\t")
    assert (offset, text) == ("0", "The server crashed at noon and restarted.") and -1 <= float(score) <= 1
    assert len(out) == 2 and out[1].split("\t")[0] == "1"
