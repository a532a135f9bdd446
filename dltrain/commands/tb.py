"""``dltrain tb``: TensorBoard's own server on the runs, on 127.0.0.1 only, until Ctrl-C."""

from __future__ import annotations

import re
import time
from pathlib import Path

from dltrain.console import console
from dltrain.errors import DltrainError

class Server:
    """TensorBoard's own program in a child process, serving on 127.0.0.1 only (nothing beyond this
    machine can reach it); ``port=0`` lets the system pick a free port. The child runs in its own
    session, so Ctrl-C reaches dltrain alone, which then stops it with ``stop()``: no thread or
    process of TensorBoard outlives it."""

    def __init__(self, logdir: Path, port: int = 0, timeout: float = 90):
        import collections
        import subprocess
        import sys
        import threading

        command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                   "--host", "127.0.0.1", "--port", str(port), "--window_title", "dltrain"]
        self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.url: str | None = None
        self._lines: collections.deque = collections.deque(maxlen=20)
        ready = threading.Event()

        def read_log() -> None:  # also keeps the pipe drained while the server runs
            for line in self._process.stderr:
                self._lines.append(line.rstrip())
                match = _URL.search(line)
                if match and self.url is None:
                    self.url = match.group(0)
                    ready.set()
            ready.set()

        threading.Thread(target=read_log, name="TensorBoard log", daemon=True).start()
        ready.wait(timeout)
        if self.url is None:
            self.stop()
            said = " ".join(line for line in self._lines if line.strip())[-300:]
            raise DltrainError(f"TensorBoard did not start on 127.0.0.1 port {port or 'any'}: "
                               f"{said or 'it printed nothing'}")

    def stop(self) -> None:
        import subprocess

        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


_URL = re.compile(r"http://127\.0\.0\.1:\d+/")


def wait_for_interrupt(server: Server) -> None:
    """Block until Ctrl-C (the server answers from its own thread meanwhile)."""
    while True:
        time.sleep(1)


def serve(logdir: Path, port: int = 0, out=console) -> None:
    """``dltrain tb``: serve ``logdir`` until Ctrl-C."""
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise DltrainError(f"There is no folder '{logdir}' to show; run dltrain fit first, or pass "
                           f"the folder that holds your runs (dltrain tb PATH).")
    if not any(logdir.glob("**/events.out.tfevents.*")):
        out.print(f"[yellow]note:[/yellow] no TensorBoard events under {logdir} yet (runs with "
                  f"logger=none write none); TensorBoard will show runs as they appear.")
    server = Server(logdir, port)
    out.print(f"TensorBoard for {logdir.resolve()} at [bold]{server.url}[/bold]  (Ctrl-C to stop)")
    try:
        wait_for_interrupt(server)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    out.print("TensorBoard stopped.")

