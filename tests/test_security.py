"""Transport security and access control on a real server: TLS, mTLS, the loopback rule, bearer
tokens with per-channel permissions on every RPC, the access file's reload, per-client limits."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path

import grpc
import pytest
import trustme
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from rvqstream._proto import channel_pb2, codec_pb2
from rvqstream.client import Client, RvqstreamError, TLSConfig
from rvqstream.models import Codec
from rvqstream.server import ServerConfig, create_server
from rvqstream.server.access import AccessFileError, AccessRules, token_entry
from rvqstream.server.tls import ListenError
from tests.conftest import ServerProcess, ServerThread

PUBLISHER = "pub-token-0123456789"
READER = "read-token-0123456789"
ADMIN = "admin-token-0123456789"
SECRET_CHANNEL = "secret/plans-x7"


def access_file(path: Path, extra: str = "") -> Path:
    path.write_text(
        token_entry("publisher", PUBLISHER, ["open/*", "both"], ["open/*"], False)
        + token_entry("reader", READER, [], ["open/*", "both"], False)
        + token_entry("admin", ADMIN, [], [], True) + extra)
    return path


@pytest.fixture(scope="module")
def blob() -> bytes:
    return Codec.load().compress("a message", "exact")


def requests_for(channel: str, blob: bytes) -> dict[str, tuple[str, object]]:
    """Every RPC of the two services -> (kind, request or request list) naming ``channel``."""
    def stream(*reqs):
        return list(reqs)

    return {
        "/rvqstream.v1.CodecService/EncodeStream": ("ss", stream(codec_pb2.EncodeStreamRequest(
            config=codec_pb2.EncodeConfig()))),
        "/rvqstream.v1.CodecService/DecodeStream": ("ss", stream(codec_pb2.DecodeStreamRequest(
            config=codec_pb2.DecodeConfig()))),
        "/rvqstream.v1.CodecService/Compress": ("uu", codec_pb2.CompressRequest(text_utf8=b"hi")),
        "/rvqstream.v1.CodecService/Decompress": ("uu", codec_pb2.DecompressRequest(blob=blob)),
        "/rvqstream.v1.CodecService/GetModel": ("us", codec_pb2.GetModelRequest()),
        "/rvqstream.v1.CodecService/ListModels": ("uu", codec_pb2.ListModelsRequest()),
        "/rvqstream.v1.ChannelService/Publish": ("ss", stream(
            channel_pb2.PublishRequest(config=channel_pb2.PublishConfig(channel=channel)),
            channel_pb2.PublishRequest(message=channel_pb2.PublishMessage(text_utf8=b"x", sequence=1)))),
        "/rvqstream.v1.ChannelService/PublishStream": ("ss", stream(
            channel_pb2.PublishStreamRequest(config=channel_pb2.PublishStreamConfig(
                channel=channel, producer_id="p", sequence=1)))),
        "/rvqstream.v1.ChannelService/Subscribe": ("us", channel_pb2.SubscribeRequest(channel=channel)),
        "/rvqstream.v1.ChannelService/FetchMessage": ("uu", channel_pb2.FetchMessageRequest(
            channel=channel)),
        "/rvqstream.v1.ChannelService/Search": ("uu", channel_pb2.SearchRequest(channel=channel, text="x")),
        "/rvqstream.v1.ChannelService/SyncCodes": ("us", channel_pb2.SyncCodesRequest(channel=channel)),
    }


CHANNEL_RPCS = {"Publish": "publish", "PublishStream": "publish", "Subscribe": "subscribe",
                "FetchMessage": "subscribe", "Search": "subscribe", "SyncCodes": "subscribe"}


def call(ch: grpc.Channel, method: str, kind: str, request, token: str | None) -> grpc.StatusCode:
    """Makes one call -> its status code (OK when it ran; a stream is read to its end or 1 s)."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    ident = bytes
    try:
        if kind == "uu":
            ch.unary_unary(method, ident, ident)(request.SerializeToString(), metadata=metadata,
                                                  timeout=10)
        elif kind == "us":
            for _ in ch.unary_stream(method, ident, ident)(request.SerializeToString(),
                                                           metadata=metadata, timeout=1):
                pass
        else:
            for _ in ch.stream_stream(method, ident, ident)(
                    iter([r.SerializeToString() for r in request]), metadata=metadata, timeout=1):
                pass
    except grpc.RpcError as e:
        if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK     # a live stream that was let run: it was admitted
        return e.code(), e.details()
    return grpc.StatusCode.OK


def refusal(client: Client) -> str:
    """The status code with which ``client.models()`` fails ("OK" when it does not)."""
    try:
        client.models()
    except RvqstreamError as e:
        return e.code
    return "OK"


def code_of(result) -> grpc.StatusCode:
    return result[0] if isinstance(result, tuple) else result


@pytest.fixture
def secured(tmp_path, registry):
    config = ServerConfig(data_dir=tmp_path / "data", auth_tokens=str(access_file(tmp_path / "access.toml")))
    srv = ServerThread(config, registry).start()
    with Client(srv.target, token=ADMIN, cache_dir=tmp_path / "cache") as admin:
        admin.publish("open/a", ["first"])
        admin.publish("both", ["first"])
        admin.publish(SECRET_CHANNEL, ["classified"])
    yield srv
    srv.close()


def test_every_rpc_is_in_the_table(blob):
    methods = {f"/{s.full_name}/{m.name}" for mod, name in ((codec_pb2, "CodecService"),
                                                            (channel_pb2, "ChannelService"))
               for s in [mod.DESCRIPTOR.services_by_name[name]] for m in s.methods}
    assert methods == set(requests_for("x", blob))


@pytest.mark.parametrize("method", sorted(requests_for("x", b"")))
def test_unauthenticated_and_wrong_token_refused(secured, blob, method):
    kind, request = requests_for(SECRET_CHANNEL, blob)[method]
    with grpc.insecure_channel(secured.target) as ch:
        for token in (None, "not-a-token", PUBLISHER[:-1]):
            code, details = call(ch, method, kind, request, token)
            assert code == grpc.StatusCode.UNAUTHENTICATED, (token, details)
            assert SECRET_CHANNEL not in details and "plans" not in details


@pytest.mark.parametrize("method", sorted(requests_for("x", b"")))
def test_permissions_per_rpc(secured, blob, method):
    """A channel outside the token's patterns -> PERMISSION_DENIED naming no channel; inside, or
    any codec call with a valid token, the call runs."""
    name = method.rsplit("/", 1)[1]
    with grpc.insecure_channel(secured.target) as ch:
        if name not in CHANNEL_RPCS:
            for token in (PUBLISHER, READER, ADMIN):
                kind, request = requests_for("open/a", blob)[method]
                assert code_of(call(ch, method, kind, request, token)) == grpc.StatusCode.OK
            return
        allowed = PUBLISHER if CHANNEL_RPCS[name] == "publish" else READER
        denied = READER if CHANNEL_RPCS[name] == "publish" else PUBLISHER
        kind, request = requests_for(SECRET_CHANNEL, blob)[method]
        for token in (PUBLISHER, READER):
            code, details = call(ch, method, kind, request, token)
            assert code == grpc.StatusCode.PERMISSION_DENIED
            assert SECRET_CHANNEL not in details and "plans" not in details
        kind, request = requests_for("both", blob)[method]
        code, details = call(ch, method, kind, request, denied)
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "both" not in details
        assert code_of(call(ch, method, kind, request, allowed)) == grpc.StatusCode.OK
        kind, request = requests_for(SECRET_CHANNEL, blob)[method]
        assert code_of(call(ch, method, kind, request, ADMIN)) == grpc.StatusCode.OK


def test_health_open_and_reflection_off(secured):
    with grpc.insecure_channel(secured.target) as ch:
        resp = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        code = code_of(call(ch, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "ss",
                            [], ADMIN))
        assert code == grpc.StatusCode.UNIMPLEMENTED


def test_reflection_on_needs_admin(tmp_path, registry):
    from grpc_reflection.v1alpha import reflection_pb2
    config = ServerConfig(data_dir=tmp_path / "data", reflection=True,
                          auth_tokens=str(access_file(tmp_path / "access.toml")))
    srv = ServerThread(config, registry).start()
    try:
        req = [reflection_pb2.ServerReflectionRequest(list_services="")]
        method = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
        with grpc.insecure_channel(srv.target) as ch:
            assert code_of(call(ch, method, "ss", req, READER)) == grpc.StatusCode.PERMISSION_DENIED
            assert code_of(call(ch, method, "ss", req, None)) == grpc.StatusCode.UNAUTHENTICATED
            assert code_of(call(ch, method, "ss", req, ADMIN)) == grpc.StatusCode.OK
    finally:
        srv.close()


def test_sdk_with_token(secured, tmp_path):
    with Client(secured.target, token=PUBLISHER, cache_dir=tmp_path / "cache") as pub:
        (offset,) = pub.publish("open/a", ["hello"])
        with pytest.raises(RvqstreamError) as e:
            pub.publish(SECRET_CHANNEL, ["nope"])
        assert e.value.code == "PERMISSION_DENIED"
    with Client(secured.target, token=READER, cache_dir=tmp_path / "cache") as reader:
        msgs = [m.text for m in itertools.islice(reader.subscribe("open/a", 0), offset + 1)]
        assert msgs[-1] == "hello"
    with Client(secured.target, cache_dir=tmp_path / "cache", reconnect_timeout_s=1) as anon:
        assert refusal(anon) == "UNAUTHENTICATED"


def test_token_never_sent_in_plaintext_off_loopback():
    with pytest.raises(RvqstreamError) as e:
        Client("10.1.2.3:50051", token="secret")
    assert e.value.code == "INVALID_ARGUMENT" and "secret" not in e.value.message


def test_access_file_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[token]]\nname = "x"\nsha256 = "abc"\n')
    with pytest.raises(AccessFileError, match="64 hex"):
        AccessRules.load(bad)
    bad.write_text('[[token]]\nname = "x"\nsha256 = "' + "a" * 64 + '"\npublish = "*"\n')
    with pytest.raises(AccessFileError, match="list"):
        AccessRules.load(bad)
    rules = AccessRules.load(access_file(tmp_path / "ok.toml"))
    assert "publisher" == rules.by_token(PUBLISHER).name and rules.by_token("x") is None
    assert PUBLISHER not in (tmp_path / "ok.toml").read_text()    # only hashes are stored


def test_sighup_reloads_the_access_file(tmp_path):
    path = access_file(tmp_path / "access.toml")
    proc = ServerProcess(tmp_path / "data", args=("--auth-tokens", str(path))).start()
    try:
        late = "late-token-0123456789"
        with Client(proc.target, token=late, cache_dir=tmp_path / "cache", reconnect_timeout_s=1) as c:
            assert refusal(c) == "UNAUTHENTICATED"
            access_file(path, token_entry("late", late, [], ["*"], False))
            proc.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert c.models()
                    break
                except RvqstreamError:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            path.write_text("[[token]] this is not toml")   # a broken file keeps the rules
            proc.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            assert c.models()
    finally:
        proc.close()


def test_calls_per_client_limit(tmp_path, registry):
    config = ServerConfig(data_dir=tmp_path / "data", max_calls_per_client=2)
    srv = ServerThread(config, registry).start()
    try:
        with grpc.insecure_channel(srv.target) as ch:
            ident = bytes
            sub = ch.unary_stream("/rvqstream.v1.ChannelService/Subscribe", ident, ident)
            Client(srv.target).publish("c", ["x"])
            req = channel_pb2.SubscribeRequest(channel="c").SerializeToString()
            open_calls = [sub(req, timeout=30) for _ in range(2)]
            for c in open_calls:
                next(c)
            with pytest.raises(grpc.RpcError) as e:
                next(sub(req, timeout=30))
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            info = [d for d in rpc_status.from_call(e.value).details
                    if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
            assert info, "a busy refusal tells the client when to retry"
            for c in open_calls:
                c.cancel()
            time.sleep(0.3)
            assert next(sub(req, timeout=30)) is not None    # the slots came back
    finally:
        srv.close()


# -- TLS ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA with a server certificate for 127.0.0.1, a client certificate, and a second CA."""
    d = tmp_path_factory.mktemp("pki")
    ca, other = trustme.CA(), trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("device-17@example.com", common_name="device-17")
    stranger = other.issue_cert("stranger@example.com", common_name="stranger")
    paths = {}
    for name, blob in (("ca", ca.cert_pem.bytes()), ("other_ca", other.cert_pem.bytes()),
                       ("server_cert", server_cert.cert_chain_pems[0].bytes()),
                       ("server_key", server_cert.private_key_pem.bytes()),
                       ("client_cert", client_cert.cert_chain_pems[0].bytes()),
                       ("client_key", client_cert.private_key_pem.bytes()),
                       ("stranger_cert", stranger.cert_chain_pems[0].bytes()),
                       ("stranger_key", stranger.private_key_pem.bytes())):
        paths[name] = d / f"{name}.pem"
        paths[name].write_bytes(blob)
    return paths


def tls_server(tmp_path, registry, pki, **extra) -> ServerThread:
    config = ServerConfig(data_dir=tmp_path / "data", tls_cert=str(pki["server_cert"]),
                          tls_key=str(pki["server_key"]), **extra)
    return ServerThread(config, registry).start()


def test_tls(tmp_path, registry, pki):
    srv = tls_server(tmp_path, registry, pki)
    try:
        with Client(srv.target, tls=TLSConfig(ca=pki["ca"]), cache_dir=tmp_path / "c") as client:
            assert client.models()
        with Client(srv.target, cache_dir=tmp_path / "c", reconnect_timeout_s=1) as plain:
            assert refusal(plain) == "UNAVAILABLE"
        with Client(srv.target, tls=TLSConfig(ca=pki["other_ca"]), cache_dir=tmp_path / "c",
                    reconnect_timeout_s=1) as wrong_ca:
            assert refusal(wrong_ca) == "UNAVAILABLE"
    finally:
        srv.close()


def test_a_health_only_listener_serves_plaintext_probes_of_a_tls_server(tmp_path, registry, pki):
    """--health-listen: plaintext grpc.health.v1 (for the kubelet's probe) beside a TLS-only
    service; that listener serves nothing else."""
    from conftest import free_port
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from rvqstream._proto import codec_pb2, codec_pb2_grpc

    health_at = f"127.0.0.1:{free_port()}"
    srv = tls_server(tmp_path, registry, pki, health_listen=health_at)
    try:
        with grpc.insecure_channel(health_at) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for service in ("", "rvqstream.v1.CodecService", "rvqstream.v1.ChannelService"):
                assert stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status == \
                    health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as err:
                codec_pb2_grpc.CodecServiceStub(ch).ListModels(codec_pb2.ListModelsRequest(), timeout=10)
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
        with Client(srv.target, cache_dir=tmp_path / "c", reconnect_timeout_s=1) as plain:
            assert refusal(plain) == "UNAVAILABLE"           # the service itself stays TLS-only
    finally:
        srv.close()


def test_mtls_identity_and_wrong_ca(tmp_path, registry, pki):
    rules = tmp_path / "access.toml"
    rules.write_text("")          # no identity yet
    srv = tls_server(tmp_path, registry, pki, tls_client_ca=str(pki["ca"]), auth_tokens=str(rules))
    try:
        def client(cert: str, key: str) -> Client:
            return Client(srv.target, tls=TLSConfig(ca=pki["ca"], cert=pki[cert], key=pki[key]),
                          cache_dir=tmp_path / "c", reconnect_timeout_s=1)

        with client("client_cert", "client_key") as device:   # a valid cert the rules do not know
            assert refusal(device) == "UNAUTHENTICATED"
        subject = _subject_of(srv, pki)
        rules.write_text(f'[[client]]\nsubject = "{subject}"\npublish = ["dev/*"]\n')
        assert srv.server.gate.reload()
        with client("client_cert", "client_key") as device:
            assert device.publish("dev/x", ["from the device"]) == [0]
            with pytest.raises(RvqstreamError) as e:
                device.publish("other", ["no"])
            assert e.value.code == "PERMISSION_DENIED"
        with client("stranger_cert", "stranger_key") as stranger:   # signed by another CA
            assert refusal(stranger) == "UNAVAILABLE"
        with Client(srv.target, tls=TLSConfig(ca=pki["ca"]), cache_dir=tmp_path / "c",
                    reconnect_timeout_s=1) as no_cert:
            assert refusal(no_cert) == "UNAVAILABLE"
    finally:
        srv.close()


def _subject_of(srv: ServerThread, pki) -> str:
    """The subject the server sees for the client certificate (as its access file names it)."""
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(pki["client_cert"].read_bytes())
    return cert.subject.rfc4514_string()


async def test_plaintext_refused_off_loopback(tmp_path, registry, pki):
    config = ServerConfig(data_dir=tmp_path / "data")
    with pytest.raises(ListenError, match="--insecure"):
        create_server("0.0.0.0:0", config, registry)
    _, port = create_server("0.0.0.0:0", ServerConfig(data_dir=tmp_path / "d2", insecure=True), registry)
    assert port
    _, port = create_server("0.0.0.0:0", ServerConfig(
        data_dir=tmp_path / "d3", tls_cert=str(pki["server_cert"]), tls_key=str(pki["server_key"])), registry)
    assert port


def test_cli_refuses_plaintext_off_loopback(tmp_path):
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "rvqstream.cli", "serve", "--listen", "0.0.0.0:0",
                          "--data-dir", str(tmp_path / "d")], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "--insecure" in out.stderr


def test_sighup_reloads_the_tls_certificate(tmp_path, registry):
    """A rotated certificate is used for new connections once the server reloads (SIGHUP calls
    ``RvqServer.reload``); unreadable files leave the old certificate in use."""
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"

    def issue(ca: trustme.CA) -> Path:
        leaf = ca.issue_cert("127.0.0.1")
        cert.write_bytes(leaf.cert_chain_pems[0].bytes())
        key.write_bytes(leaf.private_key_pem.bytes())
        (path := tmp_path / f"ca-{id(ca)}.pem").write_bytes(ca.cert_pem.bytes())
        return path

    old_roots = issue(old_ca)
    srv = ServerThread(ServerConfig(data_dir=tmp_path / "d", tls_cert=str(cert), tls_key=str(key)),
                       registry).start()
    try:
        def works(roots: Path) -> bool:
            with Client(srv.target, tls=TLSConfig(ca=roots), cache_dir=tmp_path / "c",
                        reconnect_timeout_s=0.5) as client:
                try:
                    return bool(client.models())
                except RvqstreamError:
                    return False

        assert works(old_roots)
        new_roots = issue(new_ca)
        assert not works(new_roots)          # not reloaded yet
        srv.server.reload()
        assert works(new_roots) and not works(old_roots)
        key.write_text("not a key")
        srv.server.reload()                  # logged, and the new certificate stays in use
        assert works(new_roots)
    finally:
        srv.close()
