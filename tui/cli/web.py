"""`xtui web`: a local web chat over a model folder (merged, or base + adapter), reached through an SSH tunnel."""

from __future__ import annotations

import argparse
import time

from tui.cli.common import existing_dir
from tui.terminal_text import printable


def register(sub: argparse._SubParsersAction) -> None:
    """Add `web` to the subcommands."""
    p = sub.add_parser("web", help="a web chat on 127.0.0.1 over a model folder (needs pip install 'xtui[web]')")
    p.add_argument("model", help="a model folder: merged or exported, or the base under --adapter")
    p.add_argument("--adapter", help="a LoRA adapter folder on the model")
    p.add_argument("--template", help="prompt template name (default: the one the folder carries, else internlm2_chat)")
    p.add_argument("--port", type=int, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Serve the chat page until Ctrl-C, after printing its address and the SSH tunnel to reach it."""
    from engine.chat.web import serve, tunnel_command, web_spec

    adapter = existing_dir(args.adapter) if args.adapter else None
    spec = web_spec(existing_dir(args.model), adapter, args.template, args.device)
    page = serve(spec, args.port, say=lambda line: print(printable(line, newlines=False), flush=True))
    print(f"web chat on {page.url} (template {spec.template or 'none'}); Ctrl-C stops it", flush=True)
    print(f"from your own machine: {tunnel_command(page.port)}, then open {page.url}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        page.close()
