"""Desktop notifications in a real terminal: what the notification server gets when a run xtui watches fails.

Two parts, run as docs/benchmarks.md ("Desktop notifications in a real terminal") shows:
  `serve`: a stand-in notification server on the session bus that prints each Notify call as a JSON line
           (needs jeepney, kept out of the project: `python -m venv /tmp/nvenv; /tmp/nvenv/bin/pip install jeepney`);
  `fail`:  run inside the terminal under test: xtui watches a fixture run that is still training, then the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def serve() -> None:
    """Own org.freedesktop.Notifications on the session bus; print every Notify call, answer it like a real server."""
    from jeepney import HeaderFields, MessageType, new_method_return
    from jeepney.bus_messages import message_bus
    from jeepney.io.blocking import open_dbus_connection

    conn = open_dbus_connection(bus="SESSION")
    conn.send_and_get_reply(message_bus.RequestName("org.freedesktop.Notifications"))
    print(json.dumps({"ready": os.environ["DBUS_SESSION_BUS_ADDRESS"]}), flush=True)
    replies = {
        "GetCapabilities": ("as", (["body", "actions"],)),
        "GetServerInformation": ("ssss", ("check", "xtui", "1", "1.2")),
    }
    count = 0
    while True:
        msg = conn.receive()
        if msg.header.message_type != MessageType.method_call:
            continue
        member = msg.header.fields.get(HeaderFields.member)
        if member == "Notify":
            count += 1
            app, _, _, summary, body, *_ = msg.body
            print(json.dumps({"n": count, "app": app, "summary": summary, "body": body}), flush=True)
            conn.send(new_method_return(msg, "u", (count,)))
        elif member in replies:
            conn.send(new_method_return(msg, *replies[member]))


def fail(settle: float, linger: float) -> None:
    """xtui on a fixture run whose trainer (this process) is alive; after `settle` s the log gets a CUDA OOM traceback,
    xtui stays `linger` s more (time for a screenshot), then ends."""
    import psutil

    sys.path.insert(0, str(ROOT / "tests"))
    from tui_fakes import fixture_run

    from engine.runs import manifest as mf

    work_dir = fixture_run(Path(tempfile.mkdtemp(prefix="xtui-notify-")))
    log = next(work_dir.glob("*/*.log"))
    full = log.read_text()
    log.write_text(full[: full.rindex("\n", 0, full.index("Iter(train) [20/40]")) + 1])  # still training
    me = psutil.Process()  # this process stands in for the live trainer
    launch = mf.Launch(["python"], {}, me.pid, me.create_time(), time.time(), 0, "cfg.py", ".")
    mf.write_manifest(work_dir, mf.Manifest(str(work_dir), "here", [launch]))
    env = dict(os.environ, XTUI_CONFIG=str(work_dir.parent / "settings.json"))
    xtui = subprocess.Popen([str(Path(sys.executable).with_name("xtui")), str(work_dir)], env=env)
    time.sleep(settle)
    with log.open("a") as fh:
        fh.write("Traceback (most recent call last):\ntorch.OutOfMemoryError: CUDA out of memory.\n")
    time.sleep(linger)
    xtui.terminate()
    xtui.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["serve", "fail"])
    parser.add_argument("--settle", type=float, default=10.0, help="seconds xtui watches the running run")
    parser.add_argument("--linger", type=float, default=10.0, help="seconds xtui stays after the failure")
    args = parser.parse_args()
    if args.part == "serve":
        serve()
    else:
        fail(args.settle, args.linger)
