"""`mheval dashboard [RUN_DIR...]`: serve the Streamlit dashboard on a port, headless.

The command line lives here and launches the app by path, so that nothing in `mheval` imports `dashboards` (the
layers above it read mheval, never the other way round). `dashboards/` is installed next to `mheval/`.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

APP = Path(__file__).resolve().parents[1] / "dashboards" / "app.py"


def streamlit_command(run_dirs: list[str], port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.headless", "true",
            "--server.port", str(port), "--server.address", address, "--browser.gatherUsageStats", "false",
            "--", *run_dirs]


def add_dashboard_parser(sub) -> None:
    parser = sub.add_parser(
        "dashboard", help="browse runs in a Streamlit dashboard",
        description="Serve the results dashboard (leaderboard, per-language charts, per-prompt drill-down with "
                    "clips and transcripts, run comparison, speed) for run directories, headless, on a port.",
        epilog="example: mheval dashboard runs/smoke runs/smoke-new --port 8501   (then open http://localhost:8501)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="*", metavar="RUN_DIR",
                        help="run directories, or directories holding runs (default: runs)")
    parser.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    parser.add_argument("--address", default="localhost", help="address to bind (default localhost; 0.0.0.0 for all)")
    parser.set_defaults(handler=cmd_dashboard)


def cmd_dashboard(args: argparse.Namespace) -> NoReturn:
    if not APP.is_file():
        raise FileNotFoundError(f"{APP}: the dashboard app is not installed next to the mheval package")
    print(f"mheval dashboard: http://{args.address}:{args.port}  (Ctrl-C to stop)", flush=True)
    command = streamlit_command(args.run_dirs, args.port, args.address)
    # become the server rather than wrap it, so stopping this process (Ctrl-C, a CI timeout) stops the server too
    os.execv(command[0], command)
