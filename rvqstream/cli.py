"""The ``rvqstream`` command: ``serve`` runs the server (extra ``server``); ``compress``,
``decompress``, ``publish`` (``--stream``: text streamed as it arrives), ``subscribe``, ``follow``
and ``models`` are clients of a running one (``--tls*``, ``--token``); ``token`` makes a bearer
token and its access-file entry."""

from __future__ import annotations

import argparse
import codecs
import json
import logging
import os
import sys


def _serve(args: argparse.Namespace) -> None:
    try:
        import asyncio

        from rvqstream.server.app import serve
        from rvqstream.server.config import ServerConfig
    except ImportError as e:
        missing = e.name or str(e)
        raise SystemExit(f"rvqstream serve needs the server extra ({missing} is missing): "
                         "pip install 'rvqstream[server]'") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(ServerConfig.from_args(args)))


def _add_serve_flags(parser: argparse.ArgumentParser) -> None:
    from rvqstream.server.config import ServerConfig  # stdlib only: works without the extra

    ServerConfig.add_arguments(parser)


def _read_input(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as f:
        return f.read()


def _client(args: argparse.Namespace):
    from rvqstream.client import Client, TLSConfig

    tls = (TLSConfig(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key, server_name=args.tls_server_name)
           if args.tls or args.tls_ca or args.tls_cert else False)
    return Client(args.target, tls=tls, token=args.token or None, cache_dir=args.cache_dir)


def _token(args: argparse.Namespace) -> None:
    """Prints a new token and, on stderr, the access-file entry that holds its hash."""
    from rvqstream.server.access import new_token, token_entry

    token = new_token()
    sys.stderr.write("# add this entry to the access file (--auth-tokens); the token itself is not kept:\n")
    sys.stderr.write(token_entry(args.name, token, args.publish, args.subscribe, args.admin))
    print(token)


def _compress(args: argparse.Namespace) -> None:
    text = _read_input(args.file).decode("utf-8")
    with _client(args) as client:
        blob = client.compress(text, stage_count=args.stage_count)
    sys.stdout.buffer.write(blob)


def _decompress(args: argparse.Namespace) -> None:
    blob = _read_input(args.file)
    with _client(args) as client:
        sys.stdout.write(client.decompress(blob))


def _publish(args: argparse.Namespace) -> None:
    if args.stream:
        _publish_stream(args)
        return
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    with stream, _client(args) as client:
        lines = (line.rstrip("\n") for line in stream)
        for offset in client.publish(args.channel, lines):
            print(offset)


def _publish_stream(args: argparse.Namespace) -> None:
    """Streams the input as it arrives (every read, however short, goes out at once); each line
    break ends a message (``--message-end eof``: the whole input is one message). Prints each
    message's offset once it is durable."""
    fd = sys.stdin.fileno() if args.file == "-" else os.open(args.file, os.O_RDONLY)
    utf8 = codecs.getincrementaldecoder("utf-8")()
    with _client(args) as client, client.open_stream(args.channel,
                                                     max_delay_ms=args.max_delay_ms) as writer:
        open_text = False          # the current message holds text
        while True:
            data = os.read(fd, 1 << 16)
            text = utf8.decode(data, final=not data)
            pieces = text.split("\n") if args.message_end == "line" else [text]
            for i, piece in enumerate(pieces):
                if i:
                    print(writer.end_message(), flush=True)
                    open_text = False
                if piece:
                    writer.write(piece)
                    open_text = True
            if not data:
                break
        if open_text or args.message_end == "eof":
            print(writer.end_message(), flush=True)


def _follow(args: argparse.Namespace) -> None:
    """Prints text as it arrives: each message starts on a new line with its offset and a tab;
    a message that another interrupts goes on after a new line with its offset again."""
    current = None
    with _client(args) as client:
        for d in client.follow(args.channel, args.from_offset):
            if d.offset != current:
                if current is not None:
                    sys.stdout.write("\n")
                sys.stdout.write(f"{d.offset}\t")
                current = d.offset
            sys.stdout.write(d.text)
            if d.done:
                sys.stdout.write(" [aborted]\n" if d.aborted else "\n")
                current = None
            sys.stdout.flush()


def _subscribe(args: argparse.Namespace) -> None:
    with _client(args) as client:
        for n, msg in enumerate(client.subscribe(args.channel, args.from_offset), 1):
            if args.json:
                print(json.dumps({"offset": msg.offset, "text": msg.text,
                                  "compressed_bytes": msg.compressed_bytes}, ensure_ascii=False))
            else:
                print(f"{msg.offset}\t{msg.text}")
            sys.stdout.flush()
            if args.limit and n >= args.limit:
                return


def _search(args: argparse.Namespace) -> None:
    """The server's best messages for a query: "offset<TAB>score<TAB>text" a line, best first."""
    with _client(args) as client:
        for hit in client.search(args.channel, args.query, args.k):
            text = client.fetch(args.channel, hit.offset).text if args.text else ""
            print(f"{hit.offset}\t{hit.score:.3f}\t{text}".rstrip("\t"))


def _models(args: argparse.Namespace) -> None:
    with _client(args) as client:
        for m in client.models():
            print(f"{m.model_id}\t{m.size_bytes}\t{'default' if m.is_default else ''}".rstrip())


def _selfcheck(args: argparse.Namespace) -> None:
    """Runs the shipped integer model's step graph on fixed inputs and compares the tables with the
    golden hash its bundle carries: exit status 1 on any mismatch."""
    from rvqstream.models import Codec

    codec = Codec.load(args.bundle, device=args.device)
    results = codec.selfcheck()
    for mode, ok in results.items():
        print(f"{mode}\t{'ok' if ok else 'MISMATCH'}")
    print(f"model {codec.model_id[:12]} on {args.device}: "
          f"{'tables match the golden hash' if all(results.values()) else 'TABLES DIFFER: do not code with it'}")
    if not all(results.values()):
        raise SystemExit(1)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rvqstream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server (needs the server extra)")
    _add_serve_flags(serve)
    serve.set_defaults(run=_serve)

    def client_command(name: str, run, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--target", default=os.environ.get("RVQSTREAM_TARGET", "127.0.0.1:50051"),
                       help="server HOST:PORT (env RVQSTREAM_TARGET)")
        p.add_argument("--cache-dir", default=None, help="model cache (env RVQSTREAM_CACHE_DIR)")
        p.add_argument("--tls", action="store_true", help="connect with TLS (system roots unless --tls-ca)")
        p.add_argument("--tls-ca", default=None, help="PEM roots that sign the server's certificate")
        p.add_argument("--tls-cert", default=None, help="PEM client certificate chain (mTLS)")
        p.add_argument("--tls-key", default=None, help="PEM key of --tls-cert")
        p.add_argument("--tls-server-name", default=None,
                       help="the name the server's certificate carries, when not the target's host")
        p.add_argument("--token", default=os.environ.get("RVQSTREAM_TOKEN"),
                       help="bearer token (env RVQSTREAM_TOKEN)")
        p.set_defaults(run=run)
        return p

    p = client_command("compress", _compress, "compress text (file or stdin) into a blob on stdout")
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--stage-count", type=int, default=0)
    p = client_command("decompress", _decompress, "decompress a blob (file or stdin), locally")
    p.add_argument("file", nargs="?", default="-")
    p = client_command("publish", _publish, "publish each line of a file (or stdin) as a message")
    p.add_argument("channel")
    p.add_argument("file", nargs="?", default="-")
    p.add_argument("--stream", action="store_true",
                   help="stream the input as it arrives (pipe an LLM's output in): followers see it "
                        "within the latency budget; each line break ends a message")
    p.add_argument("--message-end", choices=["line", "eof"], default="line",
                   help="with --stream: a line break ends a message (default), or only the input's end")
    p.add_argument("--max-delay-ms", type=int, default=200, help="with --stream: the latency budget")
    p = client_command("subscribe", _subscribe, "print a channel's messages, replayed then live")
    p.add_argument("channel")
    p.add_argument("--from-offset", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="stop after this many messages (0: never)")
    p.add_argument("--json", action="store_true", help="one JSON object per message")
    p = client_command("follow", _follow, "print a channel's text as it arrives, replayed then live")
    p.add_argument("channel")
    p.add_argument("--from-offset", type=int, default=0)
    p = client_command("search", _search, "search a channel by meaning: offsets and scores, best first")
    p.add_argument("channel")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=10, help="results (1-1000)")
    p.add_argument("--text", action="store_true", help="also fetch and print each message's text")
    client_command("models", _models, "list the server's models")
    p = sub.add_parser("token", help="make a bearer token: the token on stdout, its access-file entry "
                                     "(which keeps only its hash) on stderr")
    p.add_argument("name", help="who the token is for (logs name it)")
    p.add_argument("--publish", action="append", default=[], metavar="PATTERN",
                   help="channel-name pattern it may publish to (repeatable; * matches anything)")
    p.add_argument("--subscribe", action="append", default=[], metavar="PATTERN",
                   help="channel-name pattern it may subscribe to (repeatable)")
    p.add_argument("--admin", action="store_true", help="every channel and server operations")
    p.set_defaults(run=_token)
    p = sub.add_parser("selfcheck", help="check that this machine computes the integer model's tables "
                                         "bit for bit (against the bundle's golden hash)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="execution provider (cuda needs the gpu extra)")
    p.add_argument("--bundle", default=None, help="bundle directory (default: the shipped one)")
    p.set_defaults(run=_selfcheck)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "token", "selfcheck"):
        from rvqstream.client import RvqstreamError

        try:
            args.run(args)
        except RvqstreamError as e:
            raise SystemExit(f"rvqstream {args.command}: {e}") from None
        except BrokenPipeError:
            sys.stderr.close()
        return
    args.run(args)


if __name__ == "__main__":
    main()
