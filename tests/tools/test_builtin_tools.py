"""The built-in tools against real resources: files in temporary folders, a local HTTP server,
real subprocesses, real sleeps."""

import asyncio
import http.server
import os
import threading
import time

import pytest

from asynclm.tools import calc
from asynclm.tools.builtins import calculator, convert_time, current_time, default_registry, wait
from asynclm.tools.files import FileSandbox, SandboxError
from asynclm.tools.shell import ShellDisabled, make_shell
from asynclm.tools.units import convert_units
from asynclm.tools.web import http_get


def test_calculator_is_real_arithmetic_without_eval():
    assert calculator("17*23") == 391
    assert calculator("sqrt(2)**2") == pytest.approx(2)
    assert calculator("log(1000, 10)") == pytest.approx(3)
    assert calculator("2**0.5 * pi") == pytest.approx(4.442882938)
    for bad, msg in [("__import__('os')", "unknown function"), ("x + 1", "unknown name 'x'"),
                     ("1/0", "division by zero"), ("9**99999", "too large"), ("'a' * 3", "unsupported"),
                     ("(1).__class__", "unsupported")]:
        with pytest.raises(calc.CalcError, match=msg):
            calculator(bad)


def test_time_tools_use_real_zones():
    now = current_time("Europe/Oslo")
    assert "Europe/Oslo" in now and now[:4].isdigit()
    assert "America/Lima" in current_time("Lima")
    assert convert_time("2026-01-15 12:00", "UTC", "Asia/Tokyo") == "2026-01-15 21:00 JST (Asia/Tokyo)"
    assert convert_time("2026-07-01 09:30", "Europe/Oslo", "America/New_York").startswith("2026-07-01 03:30 EDT")
    with pytest.raises(ValueError, match="unknown time zone"):
        current_time("Atlantis")


def test_unit_conversion_covers_the_usual_families():
    assert convert_units(100, "km", "mile") == "100 km = 62.1371 mile"
    assert convert_units(212, "degF", "degC") == "212 degF = 100 degC"
    assert convert_units(1, "gallon", "liter") == "1 gallon = 3.78541 liter"
    assert convert_units(10, "m/s", "km/h") == "10 m/s = 36 km/h"
    assert convert_units(1, "GB", "MiB") == "1 GB = 953.674 MiB"
    assert convert_units(1, "lb", "kg") == "1 lb = 0.453592 kg"
    with pytest.raises(ValueError, match="measure different things"):
        convert_units(1, "kg", "m")


def test_wait_is_cancellable_promptly():
    async def go():
        task = asyncio.create_task(wait(30))
        await asyncio.sleep(0.2)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    assert asyncio.run(go()) < 0.5
    assert asyncio.run(wait(0.2)) == "waited 0.2s"


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "notes.txt").write_text("alpha\nbeta gamma\nGamma ray\n")
    (root / "main.py").write_text("print('hello')\n# TODO gamma\n")
    (root / "blob.bin").write_bytes(b"\0\1\2" * 100)
    (root / "latin1.txt").write_bytes(b"caf\xe9 cr\xe8me\n")
    (root / ".hidden").write_text("secret")
    (tmp_path / "outside.txt").write_text("not yours")
    os.symlink(tmp_path / "outside.txt", root / "escape.txt")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "docs" / "notes.txt", root / "inside-link.txt")
    return FileSandbox(root)


def test_file_tools_do_real_work(tree):
    listing = tree.list_dir(".")
    assert listing.splitlines()[0] == "docs/" and "main.py  28 B" in listing and ".hidden" not in listing
    assert ".hidden" in tree.list_dir(".", show_hidden=True)
    assert asyncio.run(tree.read_file("docs/notes.txt")) == "alpha\nbeta gamma\nGamma ray\n"
    assert asyncio.run(tree.read_file("docs/notes.txt", start_line=2, end_line=3)) == "beta gamma\nGamma ray"
    assert asyncio.run(tree.read_file("inside-link.txt", start_line=1, end_line=1)) == "alpha"
    assert "binary file of 300 B" in asyncio.run(tree.read_file("blob.bin"))
    assert asyncio.run(tree.read_file("latin1.txt")) == "caf\ufffd cr\ufffdme\n"
    hits = tree.search_files("gamma")
    assert hits.splitlines() == ["main.py:2: # TODO gamma", "docs/notes.txt:2: beta gamma",
                                 "docs/notes.txt:3: Gamma ray"]
    assert tree.search_files(r"^g\w+ ray$", regex=True) == "docs/notes.txt:3: Gamma ray"
    assert "stopped at 1 matches" in tree.search_files("gamma", max_results=1)
    assert tree.search_files("yours") == "no matches for 'yours'", "links out of the root are not read"
    info = tree.file_info("docs/notes.txt")
    assert info["lines"] == 3 and info["size_bytes"] == 27 and info["kind"] == "file"
    assert tree.file_info(str(tree.root / "docs"))["entries"] == 1  # absolute inside the root is fine


@pytest.mark.parametrize("path, why", [
    ("../outside.txt", "a path outside the allowed folder"),
    ("docs/../../outside.txt", "a path outside the allowed folder"),
    ("/etc/passwd", "a path outside the allowed folder"),
    ("escape.txt", "a symlink that leads outside the allowed folder"),
    ("up/outside.txt", "a symlink that leads outside the allowed folder"),
])
def test_sandbox_refuses_every_way_out(tree, path, why):
    for attempt in (lambda: asyncio.run(tree.read_file(path)), lambda: tree.file_info(path),
                    lambda: tree.list_dir(path), lambda: tree.search_files("x", path=path)):
        with pytest.raises(SandboxError) as exc:
            attempt()
        assert why in str(exc.value)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(2)
        if self.path == "/missing":
            self.send_response(404)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"no such page")
            return
        body = ("x" * 5000 if self.path == "/big" else "héllo from the local server").encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_http_get_against_a_local_server(server):
    r = asyncio.run(http_get(server + "/"))
    assert r == {"url": server + "/", "status": 200, "content_type": "text/plain",
                 "text": "héllo from the local server"}
    big = asyncio.run(http_get(server + "/big", max_bytes=1000))
    assert big["text"].startswith("x" * 1000) and "stopped at 1000 bytes" in big["text"]
    assert asyncio.run(http_get(server + "/missing"))["status"] == 404
    with pytest.raises(TimeoutError):
        asyncio.run(http_get(server + "/slow", timeout=0.5))
    with pytest.raises(ValueError, match="only http and https"):
        asyncio.run(http_get("file:///etc/passwd"))
    with pytest.raises(ConnectionError, match="could not reach"):
        asyncio.run(http_get("http://127.0.0.1:9/"))


def test_shell_refuses_unless_enabled_and_runs_real_commands(tmp_path):
    with pytest.raises(ShellDisabled, match="--allow-shell"):
        asyncio.run(make_shell(False)("echo hi"))
    shell = make_shell(True, cwd=str(tmp_path))
    out = asyncio.run(shell("echo hi; echo err >&2; pwd; exit 3"))
    assert out == {"exit_code": 3, "output": f"hi\nerr\n{tmp_path}\n"}
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="killed after 0.5s"):
        asyncio.run(shell("sleep 30", timeout=0.5))
    assert time.monotonic() - start < 5


def test_shell_is_offered_only_when_allowed_and_is_dangerous():
    assert default_registry().get("shell") is None
    tool = default_registry(allow_shell=True).get("shell")
    assert tool is not None and tool.dangerous
