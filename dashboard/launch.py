"""`glucover dashboard`: serve dashboard/app.py with Streamlit."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from glucover.config import Settings

APP = Path(__file__).with_name("server.py")  # the app with its session-cookie routes


def command(port: int, address: str) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(APP), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            # No developer toolbar ("Deploy", rerun, settings) for the people using it.
            "--client.toolbarMode", "minimal"]


def dashboard_cli(args: argparse.Namespace, settings: Settings) -> int:
    """Become the Streamlit server (exec), so signals meant for the dashboard reach it."""
    settings.require_database_url()
    argv = command(args.port, settings.dashboard_address)
    os.execv(argv[0], argv)  # noqa: S606 - our own interpreter and arguments
    return 0  # not reached
