"""``stream-gate cluster status``: the group's members, and who runs each camera.

Reads the coordination Redis only (no worker is asked): members alive with their
weights, then each camera of the file with the member holding its lease, its epoch,
the state that member last reported, and how long the lease has left. ``--json`` prints
the same as one JSON object, for scripts.
"""

from __future__ import annotations

import argparse
import json
import sys

import redis
import tooz

from stream_gate.config import check_cluster_url, load_settings
from stream_gate.errors import SinkError
from stream_gate.log import redact_url
from stream_gate.service.cluster import camera_rows, coordination_url, member_rows
from stream_gate.stages.publish.connect import connect


def cmd_cluster(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    check_cluster_url(settings)
    url = coordination_url(settings)
    client = connect(settings.redis, url)
    try:
        members = member_rows(settings)
        cameras = list(camera_rows(settings, client))
    except (redis.RedisError, tooz.ToozError) as exc:
        raise SinkError(f"Redis at {redact_url(url)}: {redact_url(str(exc))}") from None
    finally:
        client.close()
    if args.json:
        json.dump({"group": settings.cluster.group, "members": members, "cameras": cameras},
                  sys.stdout, indent=2)
        print()
        return 0
    owned = {m["member_id"]: 0 for m in members}
    for c in cameras:
        if c["owner"] in owned:
            owned[c["owner"]] += 1
    print(f"group {settings.cluster.group}: {len(members)} member(s)")
    print(f"  {'member':<32} {'weight':>6} {'cameras':>7}")
    for m in members:
        print(f"  {m['member_id']:<32} {m['weight']:>6} {owned[m['member_id']]:>7}")
    print(f"{'camera':<24} {'owner':<32} {'epoch':>14} {'state':<13} lease_left_s")
    for c in cameras:
        print(f"{c['stream_id']:<24} {c['owner'] or '-':<32} {c['epoch'] or '-':>14} "
              f"{c['state']:<13} {c['lease_ttl_s'] if c['lease_ttl_s'] is not None else '-'}")
    unowned = [c["stream_id"] for c in cameras if c["owner"] is None]
    return 1 if unowned else 0
