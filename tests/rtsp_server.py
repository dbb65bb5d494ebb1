#!/usr/bin/python3
"""A loopback RTSP server for tests: serves MP4 files (H.264) as live cameras.

Runs under Debian's own Python (it needs python3-gi and GStreamer's RTSP server:
Debian packages gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-{base,good,bad}).
Usage: rtsp_server.py PORT NAME=FILE [NAME=FILE ...]; prints "READY <port>" once
listening on 127.0.0.1. Each mount restarts its file for every new client.
"""

import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    port = sys.argv[1]
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    mounts = server.get_mount_points()
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f"( filesrc location={path} ! qtdemux ! h264parse config-interval=-1 "
            "! rtph264pay name=pay0 pt=96 )"
        )
        factory.set_shared(False)
        mounts.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{port}", file=sys.stderr, flush=True)
        sys.exit(1)
    print(f"READY {port}", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
