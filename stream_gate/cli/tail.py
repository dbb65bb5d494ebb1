"""``stream-gate tail``: read published entries back from Redis (and save their crops)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import redis

from stream_gate.config import load_settings
from stream_gate.errors import ConfigError, SinkError
from stream_gate.log import redact_url
from stream_gate.stages.publish.connect import connect
from stream_gate.stages.publish.schema import crop_stem


def cmd_tail(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    url = args.url or settings.redis.url
    key = args.key or settings.redis.key
    if url == "embedded":
        raise ConfigError("redis.url: 'embedded' lives only inside a running demo; give --url")
    client = connect(settings.redis, url)
    try:
        entries: Any = client.xrevrange(key, count=args.count)
    except redis.RedisError as exc:
        raise SinkError(f"Redis at {redact_url(url)} is unreachable: {exc}") from None
    entries = list(reversed(entries))
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
    last: Any = entries[-1][0] if entries else "$"
    while True:
        for entry_id, fields in entries:
            _print_entry(entry_id, fields, args.save)
            last = entry_id
        if not args.follow:
            return 0
        try:
            got: Any = client.xread({key: last}, block=1000)
        except redis.RedisError as exc:
            raise SinkError(f"Redis at {redact_url(url)} went away: {exc}") from None
        entries = got[0][1] if got else []


def _print_entry(entry_id: bytes, fields: dict[bytes, bytes], save: Path | None) -> None:
    text = {k.decode(): v.decode() for k, v in fields.items() if k != b"crop"}
    crop = fields.get(b"crop", b"")
    print(f"{entry_id.decode()} stream={text.get('stream_id')} track={text.get('track_id')} "
          f"q={text.get('quality')} reason={text.get('reason')} rank={text.get('rank')} "
          f"crop={len(crop)}B emit_id={text.get('emit_id')}", flush=True)
    if save is not None and crop:
        stem = crop_stem(text.get("stream_id", ""), int(text.get("track_id") or 0),
                         text.get("emit_id", ""))
        (save / f"{stem}.jpg").write_bytes(crop)
