"""The corpus script's pure parts: seeded generators, the held-out exclusion rules, the text cutters.

Fast and offline: nothing here installs a package or reads one."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from models import corpus
from models.corpus_exclude import excluded, license_boilerplate
from models.corpus_synthetic import GENERATORS
from models.corpus_text import (
    MAX_BYTES,
    MIN_BYTES,
    html_paragraphs,
    line_chunks,
    markdown_blocks,
    nbytes,
    pack_varied,
)

N = 400


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_is_deterministic_for_a_seed(name):
    gen = GENERATORS[name]
    first = list(itertools.islice(gen(0), N))
    assert first == list(itertools.islice(gen(0), N))
    assert first != list(itertools.islice(gen(1), N))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_generator_messages_are_in_the_size_window_and_varied(name):
    msgs = list(itertools.islice(GENERATORS[name](7), N))
    assert all(MIN_BYTES <= nbytes(m) <= MAX_BYTES for m in msgs)
    assert len(set(msgs)) > 0.95 * N


def test_logs_have_several_formats_and_one_to_eight_lines():
    msgs = list(itertools.islice(GENERATORS["logs"](0), 2000))
    assert all(1 <= m.count("\n") + 1 <= 8 for m in msgs)
    text = "\n".join(msgs)
    for marker in ("Traceback (most recent call last):", '"GET ', "sshd[", '"level', "level=", "\tat com."):
        assert marker in text, marker


def test_records_are_json():
    for m in itertools.islice(GENERATORS["records"](0), N):
        if m.lstrip().startswith(("{", "[")) and "\n{" not in m:
            json.loads(m)
        else:                                        # JSON lines
            for line in m.splitlines():
                json.loads(line)


def test_chat_has_turns_and_markdown_answers():
    text = "\n".join(itertools.islice(GENERATORS["chat"](0), 1000))
    assert "`" in text and "\n- " in text and "**" in text
    assert any(line.startswith("[") and "] " in line for line in text.splitlines())


@pytest.mark.parametrize("path", [
    "/usr/share/doc/git/changelog.Debian.gz",
    "/usr/share/doc/linux-doc-6.1/changelog.gz",
    "/usr/share/go-1.19/src/ChangeLog",
    "/usr/share/doc/nodejs/README.md",
    "/usr/share/doc/git/README.Debian",
    "/usr/share/doc/linux-doc-6.1/Documentation/ABI/README.gz",
    "/usr/share/go-1.19/LICENSE",
    "/usr/share/go-1.19/src/vendor/golang.org/x/net/LICENSE",
    "/usr/share/doc/foo/COPYING.gz",
    "/usr/share/doc/foo/copyright",
    "/usr/share/common-licenses/GPL-3",
    "/usr/share/common-licenses/Apache-2.0",
    "/usr/share/perl/5.36.0/pod/perlgpl.pod",
    "/usr/share/perl/5.36.0/pod/perlartistic.pod",
    "/usr/share/dictd/jargon.dict.dz",
    "/usr/share/dictd/devil.index",
    "/usr/share/dictd/foldoc.dict.dz",
    "/usr/lib/python3/dist-packages/requests/api.py",
    "/work/main/.venv/lib/python3.11/site-packages/numpy-2.1.0.dist-info/METADATA",
    "/usr/local/lib/python3.11/site-packages/pkg/data.json",
    "/usr/lib/python3.11/json/__init__.py",
    "/root/.pyenv/versions/3.11.9/lib/python3.11/asyncio/tasks.py",
    "/var/log/syslog",
    "/var/log/apt/history.log",
    "/work/main/.venv/lib/python3.11/site-packages/chatterbot_corpus/README.md",
])
def test_exclusion_rejects_held_out_paths(path):
    assert excluded(path), path


@pytest.mark.parametrize("path", [
    "/usr/share/doc/linux-doc-6.1/Documentation/process/coding-style.rst.gz",
    "/usr/share/doc/linux-doc-6.1/Documentation/ABI/testing/sysfs-class-net.gz",
    "/usr/share/go-1.19/src/net/http/server.go",
    "/usr/share/doc/nodejs/api/fs.md.gz",
    "/usr/share/doc/nodejs/api/fs.json.gz",
    "/usr/share/perl/5.36.0/pod/perlretut.pod",
    "/usr/share/doc/git-doc/user-manual.txt",
    "/usr/share/doc/python-django-doc/html/topics/db/models.html",
    "/usr/share/doc/python3.11-doc/html/_sources/tutorial/index.rst.txt",
    # the one exception inside site-packages: chatterbot-corpus's YAML is the dialog corpus itself
    "/work/main/.venv/lib/python3.11/site-packages/chatterbot_corpus/data/english/ai.yml",
])
def test_exclusion_accepts_ordinary_doc_paths(path):
    assert excluded(path) is None, path


def test_license_boilerplate_is_recognised():
    assert license_boilerplate("// Permission is hereby granted, free of charge, to any person obtaining a copy")
    assert license_boilerplate(" * but WITHOUT ANY WARRANTY; without even the implied warranty of")
    assert license_boilerplate("# Licensed under the Apache License, Version 2.0 (the \"License\");")
    assert not license_boilerplate("func (fd *FD) Read(p []byte) (int, error) {\n\treturn 0, nil\n}")
    assert not license_boilerplate("The kernel is licensed under the GPLv2; see the process docs.")


def test_sources_keep_the_first_six_first_and_cap_only_the_new():
    assert list(corpus.SOURCES)[:6] == list(corpus.FIRST_SOURCES)
    assert set(corpus.CAPS) == set(corpus.SOURCES) - set(corpus.FIRST_SOURCES)
    assert {"kernel", "gosrc", "nodedoc", "dialog", "logs", "records", "chat"} <= set(corpus.SOURCES)


def test_split_is_a_function_of_the_text():
    assert corpus.split_of("hello world, this is a message") == corpus.split_of("hello world, this is a message")
    splits = [corpus.split_of(f"message number {i}") for i in range(5000)]
    assert 0.90 < splits.count("train") / len(splits) < 0.98


def test_line_chunks_cut_whole_lines_within_bounds():
    code = "\n\n".join("\n".join(f"\tx{i}_{j} := f({j})" for j in range(random.Random(i).randint(1, 60)))
                       for i in range(40))
    chunks = line_chunks(code, random.Random(0), 200, 1000)
    assert "\n\n".join(chunks).replace("\n\n", "\n") == code.replace("\n\n", "\n")
    assert all(nbytes(c) <= 1000 for c in chunks)
    one_block = "\n".join(f'  "key{i}": {i},' for i in range(500))      # JSON: no blank lines
    chunks = line_chunks(one_block, random.Random(0), 200, 1000)
    assert "\n".join(chunks) == one_block and all(nbytes(c) <= 1000 for c in chunks)


def test_pack_varied_keeps_order_and_content():
    pieces = [f"paragraph {i} " * random.Random(i).randint(1, 20) for i in range(100)]
    out = pack_varied(pieces, random.Random(0), 150, 500, "\n\n")
    assert "\n\n".join(out) == "\n\n".join(pieces)


def test_markdown_blocks_keep_fenced_code_whole():
    md = "# Title\n\nSome text\nmore.\n\n```js\nconst a = 1;\n\nconst b = 2;\n```\n\nEnd."
    assert markdown_blocks(md) == ["# Title", "Some text\nmore.", "```js\nconst a = 1;\n\nconst b = 2;\n```", "End."]


def test_html_paragraphs_take_the_content_div_only():
    html = ('<html><div class="nav">menu</div><div class="yui-g" id="x"><h1>Models<a class="headerlink">¶</a>'
            '</h1><p>A model is the <code>single</code>\n source.</p><div class="highlight"><pre>x = 1\n\ny = 2'
            '</pre></div><ul><li>one</li><li>two</li></ul></div><div id="ft">footer</div></html>')
    assert html_paragraphs(html, "yui-g") == ["Models", "A model is the single source.", "x = 1\n\ny = 2",
                                              "- one", "- two"]
