"""The output folder of a training run: never silently reused, and held by one run at a time.

transformers' convention (`--overwrite_output_dir`): a folder that already holds files is refused unless the run
resumes from one of its checkpoints or the user asks to overwrite it. While a run is going, a lock file names it
(host, pid, start time); a second run into the same folder fails at once and says who holds it. A lock left by a
process that has died (same host, pid gone) is stale and taken over with a warning.

File locks (`fcntl.flock`) would vanish with the process, but they are advisory only on the local machine and do
not say who holds them; a lock file with the holder's identity is what `git` and `pip` use, and it can be read.
"""

import json
import logging
import os
import shutil
import socket
import time

from ..errors import UserError

logger = logging.getLogger(__name__)

LOCK_FILE = ".distilxlsr.lock"


class OutputDirError(UserError, RuntimeError):
    pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class OutputDirLock:
    """A lock file in the output folder, created atomically (O_EXCL) and removed by `release`."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_FILE)
        self.held = False

    def acquire(self):
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                if holder.get("host") == me["host"] and isinstance(holder.get("pid"), int):
                    if not _pid_alive(holder["pid"]):
                        logger.warning("removing a stale lock of a process that is gone: %s", holder)
                        os.remove(self.path)
                        continue
                raise OutputDirError(
                    f"{os.path.dirname(self.path)} is in use by another run ({_describe(holder)}). Wait for it to "
                    f"finish, or pick another --output_dir. If that run is dead on another machine, remove "
                    f"{self.path}."
                ) from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return
        raise OutputDirError(f"Could not take the lock {self.path}.")

    def _read_holder(self) -> dict:
        try:
            with open(self.path) as f:
                holder = json.load(f)
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self):
        if self.held:
            self.held = False
            try:
                os.remove(self.path)
            except FileNotFoundError:
                pass


def _describe(holder: dict) -> str:
    if not holder:
        return "unreadable lock file"
    return f"pid {holder.get('pid')} on {holder.get('host')}, started {holder.get('started')}"


def claim_output_dir(folder: str, resuming: bool, overwrite: bool, checkpoint_subdir: str = "checkpoints"):
    """Checks that this run may write into `folder`, takes its lock, and tidies it. Returns the `OutputDirLock`.

    - a folder holding files is refused unless `resuming` (a checkpoint of it will be loaded) or `overwrite`;
    - with `overwrite`, the previous run's checkpoints are removed (said in the log), so that neither rotation nor
      `--resume_from_checkpoint latest` can ever mistake them for this run's;
    - `*.partial` checkpoint folders left by a run killed while saving are removed, with a note."""
    os.makedirs(folder, exist_ok=True)
    lock = OutputDirLock(folder)
    lock.acquire()
    try:
        contents = sorted(name for name in os.listdir(folder) if name != LOCK_FILE)
        if contents and not (resuming or overwrite):
            shown = ", ".join(contents[:6]) + (", ..." if len(contents) > 6 else "")
            raise OutputDirError(
                f"--output_dir {folder} already holds files ({shown}). Pass --resume_from_checkpoint latest to "
                "continue that run, --overwrite_output_dir to replace it, or choose another folder."
            )
        checkpoint_dir = os.path.join(folder, checkpoint_subdir)
        if overwrite and not resuming and os.path.isdir(checkpoint_dir):
            logger.warning("--overwrite_output_dir: removing the previous run's checkpoints in %s", checkpoint_dir)
            shutil.rmtree(checkpoint_dir)
        if os.path.isdir(checkpoint_dir):
            for name in sorted(os.listdir(checkpoint_dir)):
                if name.endswith(".partial"):
                    logger.warning("removing %s: a checkpoint left half-written by a killed run", name)
                    shutil.rmtree(os.path.join(checkpoint_dir, name), ignore_errors=True)
    except BaseException:
        lock.release()
        raise
    return lock
