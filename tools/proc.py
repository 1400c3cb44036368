"""Child processes the one way every host tool and test handles them: where the project
and its executables are, and stopping one. The bottom of tools/: every world uses it."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def which(name):
    """The executable `name` of the project's virtual environment (next to this Python),
    else the one on PATH; None when there is neither."""
    cand = os.path.join(os.path.dirname(sys.executable), name)
    return cand if os.path.exists(cand) else shutil.which(name)


def micropython_bin():
    return which("micropython")


class Started:
    """`with X(...) as x:` for what the tools start and stop (the cloud, the virtual module,
    the simulated world, the virtual board): x = start(), and stop() however the block ends."""

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def read_lines(stream, into, cv, echo=None):
    """Collect a child's output (a binary pipe) line by line, decoded and without the
    newline, into the list `into`, notifying the condition `cv` at each line and at the end;
    echo(line) shows each one live. Returns at end of file (run it in a thread)."""
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        with cv:
            into.append(line)
            cv.notify_all()
        if echo:
            echo(line)
    with cv:
        cv.notify_all()


def stop(proc, grace_s=10):
    """SIGTERM, up to grace_s for it to exit, then SIGKILL. Returns the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
