"""Stopping a child process the one way every host tool and test does it."""
import subprocess


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
