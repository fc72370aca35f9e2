"""``shell``: run a command with a timeout and capture its output. Dangerous: off unless enabled,
and every run needs the user's confirmation (the executor asks before it starts)."""

from __future__ import annotations

import asyncio
import os
import signal

OUTPUT_LIMIT = 100_000


class ShellDisabled(PermissionError):
    pass


def make_shell(enabled: bool, cwd: str | None = None):
    async def shell(command: str, timeout: float = 30.0) -> dict:
        """Run a shell command in the working folder; returns its exit code and output.

        Args:
            command: the command line, run by /bin/sh.
            timeout: kill the command after this many seconds.
        """
        if not enabled:
            raise ShellDisabled("the shell tool is disabled; start asynclm-chat with --allow-shell to enable it")
        proc = await asyncio.create_subprocess_shell(
            command, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            _kill(proc)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise TimeoutError(f"the command was killed after {timeout:g}s") from None
        text = out.decode("utf-8", errors="replace")
        if len(text) > OUTPUT_LIMIT:
            text = text[:OUTPUT_LIMIT] + f"\n…[output cut at {OUTPUT_LIMIT} of {len(text)} chars]"
        return {"exit_code": proc.returncode, "output": text}

    return shell


def _kill(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
