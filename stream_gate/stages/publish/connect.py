"""Connecting to Redis as sites run it: credentials, TLS, and errors that say which failed."""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stream_gate.config import RedisConfig
from stream_gate.errors import SinkError
from stream_gate.log import redact_url


def make_client(cfg: RedisConfig, url: str, timeout_s: float | None = None) -> redis.Redis:
    """A client for ``url`` with the config's credentials, TLS files and timeouts
    (``timeout_s``: instead of ``connect_timeout_s``).

    Without redis-py's own retries (by default it tries a failed call ten more times,
    seconds in all): each caller has its cadence (the sink's backoff and spool, the
    member's heartbeat), and a call that waits out retries holds up what comes after it
    (the publisher fell seconds behind in an outage, the member past its leases)."""
    timeout = cfg.connect_timeout_s if timeout_s is None else timeout_s
    tls: dict[str, str] = {k: str(v) for k, v in (
        ("ssl_ca_certs", cfg.ssl_ca_certs), ("ssl_certfile", cfg.ssl_certfile),
        ("ssl_keyfile", cfg.ssl_keyfile)) if v is not None}
    return redis.Redis.from_url(
        url, username=cfg.username, password=cfg.secret(),
        socket_connect_timeout=timeout, socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0), **tls)


class Unreachable(SinkError):
    """Redis does not answer at all (as opposed to refusing the credentials)."""


def connect(cfg: RedisConfig, url: str | None = None) -> redis.Redis:
    """A client for ``url`` (default ``redis.url``) with the config's credentials and
    TLS files, checked to answer; one SinkError saying what failed otherwise (the
    credentials, the server's certificate, or the connection: :class:`Unreachable`),
    never the secret."""
    url = url or cfg.url
    client = make_client(cfg, url)
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise SinkError(f"Redis at {redact_url(url)} refused the credentials: {exc} (check "
                        "redis.username and redis.password or password_file)") from None
    except redis.RedisError as exc:
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            raise SinkError(f"Redis at {redact_url(url)}: its TLS certificate is not trusted "
                            "(set redis.ssl_ca_certs to the CA that signed it): "
                            f"{redact_url(text)}") from None
        if "NOAUTH" in text or "WRONGPASS" in text:
            raise SinkError(f"Redis at {redact_url(url)} refused the credentials: {text} "
                            "(check redis.username and redis.password)") from None
        raise Unreachable(f"Redis at {redact_url(url)} is unreachable: {redact_url(text)}"
                          ) from None
    return client
