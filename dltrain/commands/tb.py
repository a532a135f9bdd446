"""``dltrain tb``: TensorBoard's own server on the runs, on 127.0.0.1 only, until Ctrl-C (or
SIGTERM, or SIGHUP when the terminal or ssh connection goes away)."""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from pathlib import Path

from dltrain.console import console
from dltrain.errors import DltrainError

# TensorBoard's program in the child, which also ends when dltrain ends however it ends (even
# SIGKILL): the end of its stdin, the pipe dltrain holds, asks TensorBoard to exit as its own
# SIGTERM handler does (TensorBoard stops its data server the same way, --die-after-stdin).
_CHILD = """
import os, signal, sys, threading

def exit_when_dltrain_ends():
    sys.stdin.buffer.read()
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=exit_when_dltrain_ends, daemon=True).start()
sys.argv[0] = "tensorboard"
from tensorboard.main import run_main
run_main()
"""


class Server:
    """TensorBoard's own program in a child process, serving on 127.0.0.1 only (nothing beyond this
    machine can reach it); ``port=0`` lets the system pick a free port. The child runs in its own
    session, so Ctrl-C and a terminal's SIGHUP reach dltrain alone, which then stops it with
    ``stop()``; should dltrain end without doing so, the child ends too (_CHILD)."""

    def __init__(self, logdir: Path, port: int = 0, timeout: float = 90):
        import collections
        import subprocess
        import sys
        import threading

        # One word, absolute: a folder named like a flag (-x) stays a folder.
        command = [sys.executable, "-c", _CHILD, f"--logdir={Path(logdir).resolve()}",
                   "--host=127.0.0.1", f"--port={port}", "--window_title=dltrain"]
        self._process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
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
        try:
            ready.wait(timeout)
            if self.url is None:
                said = " ".join(line for line in self._lines if line.strip())[-300:]
                raise DltrainError(f"TensorBoard did not start on 127.0.0.1 port {port or 'any'}: "
                                   f"{said or 'it printed nothing'}")
        except BaseException:  # also Ctrl-C or a signal during the start
            self.stop()
            raise

    def stop(self) -> None:
        import subprocess

        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process.stdin.close()


_URL = re.compile(r"http://127\.0\.0\.1:\d+/")


def wait_for_interrupt(server: Server) -> None:
    """Block until Ctrl-C (the server answers from its own thread meanwhile)."""
    while True:
        time.sleep(1)


@contextmanager
def _ending_on(*signal_numbers):
    """SIGTERM and SIGHUP end dltrain as an exception does (exit 128 + the signal's number), so
    that what it started is stopped on the way out."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signal_number, frame):
        raise SystemExit(128 + signal_number)

    previous = {number: signal.signal(number, end) for number in signal_numbers}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def serve(logdir: Path, port: int = 0, out=console) -> None:
    """``dltrain tb``: serve ``logdir`` until Ctrl-C (exit 0), SIGTERM (143) or SIGHUP (129);
    TensorBoard stops with it in every case."""
    import signal

    logdir = Path(logdir)
    if not logdir.is_dir():
        raise DltrainError(f"There is no folder '{logdir}' to show; run dltrain fit first, or pass "
                           f"the folder that holds your runs (dltrain tb PATH).")
    if not any(logdir.glob("**/events.out.tfevents.*")):
        out.print(f"[yellow]note:[/yellow] no TensorBoard events under {logdir} yet (runs with "
                  f"logger=none write none); TensorBoard will show runs as they appear.")
    hangup = getattr(signal, "SIGHUP", None)  # none on Windows
    with _ending_on(signal.SIGTERM, *([hangup] if hangup else [])):
        server = Server(logdir, port)
        try:
            out.print(f"TensorBoard for {logdir.resolve()} at [bold]{server.url}[/bold]  (Ctrl-C to stop)")
            wait_for_interrupt(server)
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    out.print("TensorBoard stopped.")
