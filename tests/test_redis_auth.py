"""Redis as sites run it: a password, an ACL user, TLS with the site's own CA, against real
redis-server processes started here (certificates made here with openssl)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from stream_gate.config import RedisConfig, load_settings
from stream_gate.errors import SinkError
from stream_gate.stages.publish import RedisSink

from .conftest import free_port, run_cli, wait_answers
from .test_publish import emission

PASSWORD = "s3cret-Pw-1"  # the default user's
ALICE = ("alice", "al1ce-Pw-2")  # an ACL user
KEY = "stream_gate:auth-test"


@dataclass
class Server:
    """A private redis-server: plain port, TLS port, the CA that signed its certificate."""

    port: int
    tls_port: int
    ca: Path
    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--tls-port", str(self.tls_port), "--tls-cert-file", str(self.dir / "server.crt"),
             "--tls-key-file", str(self.dir / "server.key"),
             "--tls-ca-cert-file", str(self.ca), "--tls-auth-clients", "no",
             "--requirepass", PASSWORD, "--user", ALICE[0], "on", f">{ALICE[1]}", "~*", "&*",
             "+@all", "--save", "", "--appendonly", "yes", "--appendfsync", "always",
             "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_answers(redis.Redis(port=self.port, password=PASSWORD))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def entries(self) -> list[bytes]:
        client = redis.Redis(port=self.port, password=PASSWORD)
        return [f[b"emit_id"] for _, f in client.xrange(KEY)]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(folder: Path, name: str) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it; returns the CA file."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name} CA", "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.crt", cwd=folder)
    if name == "site":
        (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                 "-keyout", "server.key", "-out", "server.csr", cwd=folder)
        _openssl("x509", "-req", "-in", "server.csr", "-CA", "site-ca.crt", "-CAkey",
                 "site-ca.key", "-CAcreateserial", "-days", "2", "-extfile", "san.ext",
                 "-out", "server.crt", cwd=folder)
    return folder / f"{name}-ca.crt"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    if shutil.which("redis-server") is None or shutil.which("openssl") is None:
        pytest.skip("redis-server and openssl are needed (scripts/install-system-deps)")
    ca = make_certificates(tmp_path, "site")
    srv = Server(free_port(), free_port(), ca, tmp_path)
    srv.start()
    yield srv
    srv.stop()


def test_password_and_acl_user_publish_and_wrong_ones_say_so(server: Server,
                                                             tmp_path: Path) -> None:
    url = f"redis://127.0.0.1:{server.port}/0"
    sink = RedisSink(RedisConfig(url=url, key=KEY, password=PASSWORD))
    sink.publish([emission(0)])
    sink.close()
    secret = tmp_path / "redis-password"
    secret.write_text(f"{ALICE[1]}\n")
    sink = RedisSink(RedisConfig(url=url, key=KEY, username=ALICE[0], password_file=secret))
    sink.publish([emission(1)])
    sink.close()
    assert server.entries() == [b"id0", b"id1"]
    for cfg in (RedisConfig(url=url, key=KEY, password="not-it"),
                RedisConfig(url=url, key=KEY, username=ALICE[0], password="not-it"),
                RedisConfig(url=url, key=KEY)):
        with pytest.raises(SinkError, match=r"refused the credentials") as err:
            RedisSink(cfg)
        assert "not-it" not in str(err.value) and PASSWORD not in str(err.value)


def test_the_password_can_come_from_the_environment(server: Server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_GATE__REDIS__PASSWORD", PASSWORD)
    settings = load_settings(None, {"redis": {"url": f"redis://127.0.0.1:{server.port}/0",
                                              "key": KEY}})
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.model_dump_json()
    sink = RedisSink(settings.redis)
    sink.publish([emission(2)])
    sink.close()
    assert server.entries() == [b"id2"]


def test_tls_with_the_site_ca_and_an_untrusted_certificate(server: Server,
                                                          tmp_path: Path) -> None:
    url = f"rediss://127.0.0.1:{server.tls_port}/0"
    sink = RedisSink(RedisConfig(url=url, key=KEY, password=PASSWORD, ssl_ca_certs=server.ca))
    sink.publish([emission(3)])
    sink.close()
    assert server.entries() == [b"id3"]
    other = make_certificates(tmp_path, "other")  # a CA that did not sign the server's
    with pytest.raises(SinkError, match=r"TLS certificate is not trusted.*redis\.ssl_ca_certs"):
        RedisSink(RedisConfig(url=url, key=KEY, password=PASSWORD, ssl_ca_certs=other))


def test_the_outage_spool_works_over_tls(server: Server, tmp_path: Path) -> None:
    cfg = RedisConfig(url=f"rediss://127.0.0.1:{server.tls_port}/0", key=KEY,
                      password=PASSWORD, ssl_ca_certs=server.ca, connect_timeout_s=0.5,
                      spool_dir=tmp_path / "spool")
    sink = RedisSink(cfg)
    sink.publish([emission(4)])
    server.stop()
    sink.publish([emission(5), emission(6)])  # Redis is down: they wait on disk
    assert sink.down and sink.backlog == 2
    server.start()
    time.sleep(1.0)  # past the first retry's backoff (0.5 s)
    sink.publish([emission(7)])
    sink.close()
    assert server.entries() == [b"id4", b"id5", b"id6", b"id7"]


def test_a_wrong_password_stops_start_up_with_one_line_and_no_secret(
        server: Server, tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[redis]
url = "redis://127.0.0.1:{server.port}/0"
password = "hunter2-wrong"
[[streams]]
id = "cam"
url = "rtsp://user:camsecret@127.0.0.1:{free_port()}/cam"
""")
    res = run_cli("run", "--config", str(cfg), timeout=60)
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("stream-gate: error:")]
    assert len(lines) == 1 and "refused the credentials" in lines[0], res.stderr
    res = run_cli("doctor", "--config", str(cfg), timeout=60)
    assert "FAIL  redis:" in res.stdout and "refused the credentials" in res.stdout
    for out in (res.stdout, res.stderr):
        assert "hunter2-wrong" not in out and "camsecret" not in out
