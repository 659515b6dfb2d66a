"""python -m localhub [serve] --data-dir DIR --port N [--token-file FILE]   (or env LOCALHUB_TOKEN)
   python -m localhub stop [--data-dir DIR]
   python -m localhub bind-space SPACE_ID [--cwd DIR] [--no-http] -- COMMAND...
   python -m localhub seed|demo [--label urgency] [--base-model e5|tiny]
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from . import DEFAULT_DATA_DIR, DEFAULT_URL, LocalHubError, bind_space


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from .server import create_app

    token = read_token(args)
    url = f"http://{args.host}:{args.port}"
    os.umask(0o077)  # repos, logs and the secrets file: the owner's only
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(data_dir, token=token, public_url=url, pid_file=data_dir / "server.pid")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def read_token(args: argparse.Namespace) -> str | None:
    """--token-file, else env LOCALHUB_TOKEN; --token still works but shows in `ps`."""
    if args.token:
        warnings.warn("--token shows in `ps` to every user of this machine and will be removed: "
                      "use --token-file FILE or the LOCALHUB_TOKEN environment variable", FutureWarning, stacklevel=1)
        return args.token
    if args.token_file:
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as error:
            sys.exit(f"--token-file: cannot read {args.token_file}: {error.strerror}")
        if not token:
            sys.exit(f"--token-file: {args.token_file} is empty; write the token into it")
        return token
    return os.environ.get("LOCALHUB_TOKEN") or None


def stop(args: argparse.Namespace) -> None:
    """Stop the detached hub serving DATA_DIR (it stops its Spaces on the way out)."""
    pid_file = Path(args.data_dir) / "server.pid"
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.parent.parent.exists() and b"localhub" not in cmdline.read_bytes():
            raise ProcessLookupError  # a stale pid file: that pid is now another program
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        sys.exit(f"no local hub runs on {args.data_dir} (no live pid in {pid_file}); nothing to stop")
    deadline = time.monotonic() + 30
    while pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_file.exists():
        sys.exit(f"the local hub (pid {pid}) did not stop within 30 s; `kill -9 {pid}` stops it")
    print(f"stopped the local hub (pid {pid}) of {args.data_dir}")


def bind(args: argparse.Namespace) -> None:
    command = args.command
    if not command:
        sys.exit("bind-space: give the command after '--', e.g. -- python app.py")
    try:
        print(bind_space(args.url, args.space_id, command, cwd=args.cwd, serves_http=not args.no_http,
                         token=os.environ.get("LOCALHUB_TOKEN")))
    except LocalHubError as error:
        sys.exit(str(error))


def seed_or_demo(args: argparse.Namespace) -> None:
    from . import ensure_running
    from .seed import demo, seed

    url = ensure_running(args.url, os.environ.get("LOCALHUB_DATA_DIR", DEFAULT_DATA_DIR))
    if args.action == "seed":
        seed(url, [args.label] if args.label else ["department", "urgency"], args.base_model)
    else:
        sys.exit(demo(url, args.label or "urgency", args.base_model))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m localhub", description="Embedded local Hugging Face Hub.")
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("serve", help="serve the hub (Ctrl-C stops it and its Space processes)")
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="where repos live (default: .localhub)")
    p.add_argument("--port", type=int, default=18765)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--token-file", default=None,
                   help="require the token in this file (or in env LOCALHUB_TOKEN); default: open")
    p.add_argument("--token", default=None, help="deprecated: shows in `ps`; use --token-file or LOCALHUB_TOKEN")
    p.set_defaults(run=serve)
    s = sub.add_parser("stop", help="stop the detached hub of a data dir (and its Space processes)")
    s.add_argument("--data-dir", default=os.environ.get("LOCALHUB_DATA_DIR", str(DEFAULT_DATA_DIR)))
    s.set_defaults(run=stop)
    b = sub.add_parser("bind-space", help="bind a Space to the local command its restart runs")
    b.add_argument("space_id")
    b.add_argument("--url", default=os.environ.get("LOCALHUB_URL", DEFAULT_URL))
    b.add_argument("--cwd", default=None)
    b.add_argument("--no-http", action="store_true", help="the app serves no HTTP: RUNNING as soon as it starts")
    b.set_defaults(run=bind)
    for action, text in (("seed", "fill the hub with the sample data, a base model, a first deployed model and "
                                  "the local Spaces (idempotent)"),
                         ("demo", "seed, then restart the retrain Space and follow the job until it pauses itself")):
        d = sub.add_parser(action, help=text, description=text)
        d.add_argument("--label", choices=["department", "urgency"],
                       help="which classifier (seed: default both; demo: default urgency)")
        d.add_argument("--base-model", choices=["e5", "tiny"], default="e5",
                       help="e5: the offline multilingual-e5-small (default); tiny: a 2-layer test model (fast)")
        d.add_argument("--url", default=os.environ.get("LOCALHUB_URL", DEFAULT_URL),
                       help="the local hub (started if nothing answers)")
        d.set_defaults(run=seed_or_demo)
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("serve", "stop", "bind-space", "seed", "demo", "-h", "--help"):
        argv = ["serve", *argv]  # `python -m localhub --data-dir DIR --port N` serves too
    command = argv[argv.index("--") + 1:] if "--" in argv else []
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    args.command = command
    args.run(args)


if __name__ == "__main__":
    main()
