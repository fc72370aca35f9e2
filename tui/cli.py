"""``asynclm-chat``: the command line.

Every user error (a bad flag, a missing or broken model, a bad script) ends in one clear sentence on
stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from asynclm.core.transcript import TranscriptWriter
    from asynclm.tools.registry import Registry
    from .config import Settings


class UsageError(Exception):
    """A problem the user can fix; the message is one sentence."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asynclm-chat",
        description="A terminal assistant that never blocks on its tools.",
    )
    p.add_argument("--model", metavar="PATH|NAME",
                   help="a GGUF model file, a named model (see --models) or hf:OWNER/REPO/FILE.gguf "
                        "(default: the embedded demonstration model, asynclm-tiny)")
    p.add_argument("--models", action="store_true", help="list the named models, whether each is here, and their sizes")
    p.add_argument("--extra-buffers", choices=["auto", "on", "off"], default=None,
                   help="llama.cpp's extra CPU buffer types (faster decoding; auto: on, unless this CPU has AMX and "
                        "a probe of the model crashes)")
    p.add_argument("--turn-timeout", type=float, default=None, metavar="SECONDS",
                   help="end an answer that takes longer than this, waits included (default 300; 0: no limit)")
    p.add_argument("--mode", choices=["async", "sync", "sync-parallel"], default=None,
                   help="how calls and decoding interleave (default: async)")
    p.add_argument("--dialect", choices=["auto", "native", "text", "chat", "tools"], default=None,
                   help="how calls and interrupts are written (default: from the model: native, else tools where "
                        "its chat template has a tool-call format, else chat where it has tool messages, else text)")
    p.add_argument("--n-ctx", type=int, default=None, metavar="N", help="context window in tokens (default: the model's own, up to 8192)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="llama.cpp threads (default: half the cores to decode, all of them for prompts)")
    p.add_argument("--temperature", type=float, default=None,
                   help="0 is greedy (default: 0 for the embedded model, with --repeat-penalty 1; else 0.7)")
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--min-p", type=float, default=None)
    p.add_argument("--repeat-penalty", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help="end an answer after this many generated tokens")
    p.add_argument("--payload-limit", type=int, default=None, metavar="TOKENS",
                   help="cut a tool result the model reads to this many tokens (default 1000; less where the "
                        "free context is less)")
    p.add_argument("--copy-bias", type=float, default=None, metavar="LOGITS",
                   help="steer call argument values toward words and numbers the conversation holds "
                        "(0: off, inf: only those; default: on for the embedded model only)")
    p.add_argument("--complete-calls", action=argparse.BooleanOptionalAction, default=None,
                   help="where the model stops writing calls or would repeat one, draft another and write it if "
                        "it asks for something the calls have not; do not open a call that could not run; in "
                        "async mode, write ready calls longest estimate first (native dialect; default: on for "
                        "the embedded model only)")
    p.add_argument("--break-loops", action=argparse.BooleanOptionalAction, default=None,
                   help="where the answer would write a word or phrase a fourth time in a row, take the model's "
                        "likeliest punctuation instead (default: on for the embedded model only)")
    p.add_argument("--tools", action="append", default=[], metavar="FILE",
                   help="also load the tool functions of this Python file (repeatable)")
    p.add_argument("--allow-shell", action="store_true", default=None,
                   help="offer the shell tool (each run still asks for confirmation)")
    p.add_argument("--root", metavar="DIR", default=None,
                   help="the folder file tools may use (default: the current folder)")
    p.add_argument("--headless", action="store_true", help="no terminal UI: print the answer")
    p.add_argument("--prompt", help="with --headless: the message to answer")
    p.add_argument("--json", action="store_true", help="with --headless: print every event as JSON")
    p.add_argument("--session", metavar="PATH", help="write the session's events to this file")
    p.add_argument("--no-session", action="store_true", help="do not write a session file")
    p.add_argument("--resume", nargs="?", const="latest", metavar="SESSION",
                   help="reopen a session (a file, or a name in the sessions folder; default: the newest)")
    p.add_argument("--config", metavar="PATH", help="settings file (default: ~/.config/asynclm/config.toml)")
    p.add_argument("--demo", nargs="?", const="", metavar="NAME|PATH",
                   help="play a scripted demo (a built-in name or a TOML file); without a name, list them")
    p.add_argument("--screenshot", metavar="PATH", help="with --demo: save an SVG of the screen at its end")
    p.add_argument("--script", metavar="CML",
                   help="force the model's output (CML text, or @FILE with one turn per line)")
    return p


def apply_settings(args: argparse.Namespace) -> "Settings":
    """Fill every option not given on the command line from the config file (or its defaults)."""
    from .config import ConfigError, load_settings

    try:
        settings = load_settings(Path(args.config).expanduser() if args.config else None)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    for name in ("model", "mode", "dialect", "n_ctx", "threads", "max_tokens", "turn_timeout", "extra_buffers",
                 "payload_limit",
                 "copy_bias", "complete_calls", "break_loops", "allow_shell", "root"):
        if getattr(args, name) is None:
            setattr(args, name, getattr(settings, name))
    args.tools = list(settings.tools) + list(args.tools)
    if not args.model:
        from asynclm import EMBEDDED_MODEL

        if not EMBEDDED_MODEL.is_file():
            raise UsageError(f"No model given and the embedded model is missing ({EMBEDDED_MODEL}): "
                             "pass --model PATH to a GGUF file.")
        args.model = str(EMBEDDED_MODEL)
    args.model = str(resolve_model(args.model))
    if not args.turn_timeout >= 0:
        raise UsageError(f"--turn-timeout must be 0 (no limit) or more seconds, not {args.turn_timeout}.")
    if args.max_tokens < 1:
        raise UsageError(f"--max-tokens must be at least 1 (the most tokens an answer may have), not {args.max_tokens}.")
    if args.payload_limit < 1:
        raise UsageError(f"--payload-limit must be at least 1 (the tokens of a result the model reads), "
                         f"not {args.payload_limit}.")
    from asynclm.core.profiles import profile_for

    profile = args.profile = profile_for(args.model)
    for name, value in profile.engine_settings(scripted=bool(args.script)).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "seed"):
        if getattr(args, name) is None:
            given = name in settings.sampling_given or name not in profile.sampling
            setattr(args, name, getattr(settings.sampling, name) if given else profile.sampling[name])
    if not args.copy_bias >= 0:
        raise UsageError(f"--copy-bias must be 0 (off) or more, not {args.copy_bias}.")
    from asynclm.core.llama import available_cores

    cores = available_cores()
    if args.threads and not 0 < args.threads <= cores:
        raise UsageError(f"--threads must be from 1 to {cores}, the cores this process may use "
                         f"(more only make llama.cpp's threads wait for each other), not {args.threads}.")
    return settings


def resolve_model(spec: str) -> Path:
    """The GGUF file ``--model`` names; a named model is assembled into the cache on first use, with a
    progress bar."""
    from asynclm.core.catalog import NAMED_MODELS, resolve
    from asynclm.core.llama import ModelError

    bar = None
    if spec in NAMED_MODELS:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

        bar = Progress(TextColumn(f"preparing {spec}"), BarColumn(), DownloadColumn(), transient=True,
                       console=Console(stderr=True))
    try:
        if bar is None:
            return resolve(spec)
        with bar:
            task = bar.add_task("", total=NAMED_MODELS[spec].size)
            return resolve(spec, lambda done, total: bar.update(task, completed=done, total=total))
    except ModelError as exc:
        raise UsageError(str(exc)) from None


def _load_script(arg: str) -> list[str]:
    """The turns of ``--script``, each checked against the block grammar."""
    from asynclm.core.policy import ScriptViolation, check_script

    turns = [arg]
    if arg.startswith("@"):
        path = Path(arg[1:]).expanduser()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror or exc if isinstance(exc, OSError) else "it is not a UTF-8 text file"
            raise UsageError(f"Cannot read the script file {path}: {why}.") from None
        turns = [line for line in lines if line.strip()]
    for n, turn in enumerate(turns, 1):
        try:
            check_script(turn)
        except ScriptViolation as exc:
            where = f" (turn {n})" if len(turns) > 1 else ""
            raise UsageError(f"The script breaks the call protocol{where}: {exc}.") from None
    return turns


def build_tools(args: argparse.Namespace) -> tuple["Registry", list[str]]:
    """The built-in tools, package tools and the user's tool files; problems as sentences."""
    from asynclm.tools.builtins import default_registry
    from asynclm.tools.loader import load_entry_points, load_tool_file

    if args.root is not None and not Path(args.root).expanduser().is_dir():
        raise UsageError(f"--root {args.root} is not a folder.")
    registry = default_registry(root=args.root, allow_shell=args.allow_shell)
    problems = load_entry_points(registry)
    for path in args.tools:
        problems += load_tool_file(path, registry)
    return registry, problems


def build_engine(args: argparse.Namespace, tools, progress=None):
    from asynclm.core.dialect import DialectError
    from asynclm.core.engine import Engine, EngineConfig, Mode
    from asynclm.core.llama import LlamaBackend, ModelError
    from asynclm.core.policy import ScriptedPolicy
    from asynclm.core.promptcache import PromptCache
    from asynclm.core.sampling import SamplingSettings

    if args.n_ctx and args.n_ctx < 64:
        raise UsageError("--n-ctx must be at least 64 tokens (or 0 for the model's own context).")
    try:
        sampling = SamplingSettings(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                    min_p=args.min_p, repeat_penalty=args.repeat_penalty,
                                    seed=args.seed)
    except ValueError as exc:
        raise UsageError(f"Bad sampling setting: {exc}.") from None
    try:
        backend = LlamaBackend(args.model, n_ctx=args.n_ctx, n_threads=args.threads, progress=progress,
                               extra_buffers=args.extra_buffers)
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    policy = ScriptedPolicy(_load_script(args.script)) if args.script else None
    config = EngineConfig(mode=Mode(args.mode), payload_limit=args.payload_limit,
                          max_turn_tokens=args.max_tokens, turn_seconds=args.turn_timeout,
                          copy_bias=args.copy_bias,
                          complete_calls=args.complete_calls, break_loops=args.break_loops)
    try:
        return Engine(backend, tools, policy=policy, dialect=args.dialect,
                      config=config, sampling=sampling, prompt_cache=PromptCache())
    except DialectError as exc:
        raise UsageError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None


def session_path(args: argparse.Namespace) -> Path | None:
    """Where this session is written: --session, a new file in the sessions folder, or nowhere."""
    from asynclm.core.transcript import new_session_path

    if args.no_session:
        return None
    return Path(args.session).expanduser() if args.session else new_session_path()


def open_writer(path: Path) -> "TranscriptWriter":
    from asynclm.core.transcript import TranscriptWriter

    try:
        return TranscriptWriter(path)
    except OSError as exc:
        raise UsageError(f"Cannot write the session file {path}: {exc.strerror or exc}.") from None


def load_demo_args(args: argparse.Namespace):
    """The demo named by --demo, with its model settings filling what the command line left open."""
    from .demo import DemoError, find_demo, load_demo

    try:
        demo = load_demo(find_demo(args.demo))
    except DemoError as exc:
        raise UsageError(str(exc)) from None
    for key, value in demo.model.items():
        if key == "model":
            if args.model is None and value != "embedded":
                args.model = str((demo.path.parent / Path(value).expanduser()).resolve())
        elif getattr(args, key) is None:
            setattr(args, key, value)
    return demo


def start_headless(args: argparse.Namespace, *sinks) -> tuple:
    """The engine for a front end without a screen, started, with ``sinks`` and the session writer;
    with ``--resume``, the engine continues that session and its file."""
    resumed = load_session(args) if args.resume is not None else None
    tools, problems = build_tools(args)
    for problem in problems:
        print(f"asynclm-chat: {problem}", file=sys.stderr)
    engine = build_engine(args, tools)
    for sink in sinks:
        engine.subscribe(sink)
    if resumed is not None:
        path, events = resumed
        continue_session(engine, events, path)
    else:
        path = session_path(args)
    try:
        writer = open_writer(path) if path is not None else None
    except UsageError:
        engine.close()
        engine.backend.close()
        raise
    if writer is not None:
        engine.subscribe(writer)
    engine.executor.confirmer = _headless_confirmer
    engine.start()
    return engine, writer


def stop_headless(engine, writer) -> None:
    """Stop what runs; the stopped turn's last events reach the session file before it closes."""
    engine.stop_and_wait()
    if writer is not None:
        writer.close()
    engine.close()


def run_headless_demo(args: argparse.Namespace, demo) -> int:
    from .demo import play_headless

    engine, writer = start_headless(args)
    print(f"demo {demo.name}: {demo.description}\nmodel {engine.backend.info.name} · "
          f"{engine.dialect.describe()} dialect · {engine.mode.value} mode", file=sys.stderr)
    try:
        recorder = play_headless(demo, engine)
    except KeyboardInterrupt:
        engine.stop()
        return 130
    finally:
        stop_headless(engine, writer)
    print(recorder.summary(demo), file=sys.stderr)
    problems = recorder.check(demo.expect)
    if problems:  # also what holds without an [expect]: every call ended
        print("checks missed: " + "; ".join(problems), file=sys.stderr)
    elif demo.expect:
        print("checks: all met (" + ", ".join(sorted(demo.expect)) + ")", file=sys.stderr)
    if writer is not None:
        print(f"session: {writer.path}", file=sys.stderr)
    return 1 if problems else 0


def run_headless(args: argparse.Namespace) -> int:
    from .headless import AnswerPrinter, JsonPrinter, TurnRecorder

    if not args.prompt:
        raise UsageError("--headless needs --prompt \"your message\".")
    recorder = TurnRecorder()
    stopping: list = []  # the engine, once started: a reader that goes away stops the answer
    printer = (JsonPrinter if args.json else AnswerPrinter)(on_closed=lambda: [e.stop() for e in stopping])
    engine, writer = start_headless(args, recorder, printer)
    stopping.append(engine)
    try:
        engine.ask(args.prompt)
    except KeyboardInterrupt:
        engine.stop()
    finally:
        stop_headless(engine, writer)
    if printer.closed:  # as a program killed by SIGPIPE; nothing more goes to the closed pipe
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    if not args.json:
        print(recorder.summary(engine.dialect.describe(), engine.mode.value), file=sys.stderr)
        if writer is not None:
            print(f"session: {writer.path}", file=sys.stderr)
    return 0


async def _headless_confirmer(call) -> bool:
    """Ask on the terminal when there is one; without a terminal, dangerous calls are refused."""
    if not sys.stdin.isatty():
        return False
    import asyncio

    answer = await asyncio.to_thread(input, f"\nAllow {call.expr.render()}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def load_session(args: argparse.Namespace) -> tuple[Path, list]:
    """The session named by --resume, read: its path and its events."""
    from asynclm.core.transcript import read_transcript

    path = find_session(args.resume)
    try:
        return path, list(read_transcript(path))
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "it is not a UTF-8 text file"
        raise UsageError(f"Cannot read the session {path}: {reason}.") from None


def continue_session(engine, events: list, path: Path) -> None:
    try:
        engine.resume(events, str(path))
    except ValueError as exc:
        engine.close()
        engine.backend.close()
        raise UsageError(f"Cannot resume {path}: {exc}.") from None


def find_session(name: str) -> Path:
    """A session file by path, by name in the sessions folder, or the newest one ("latest")."""
    from asynclm.core.transcript import sessions_dir

    if name == "latest":
        files = sorted(sessions_dir().glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise UsageError(f"There is no session to resume in {sessions_dir()}.")
        return files[-1]
    for candidate in (Path(name).expanduser(), sessions_dir() / name, sessions_dir() / f"{name}.jsonl"):
        if candidate.is_file():
            return candidate
    raise UsageError(f"No session file {name!r} (looked in the current folder and {sessions_dir()}).")


def run_app(args: argparse.Namespace, settings: "Settings", demo=None) -> int:
    from asynclm.core.llama import ModelError, check_model_file
    from .app import ChatApp

    try:
        check_model_file(args.model)  # the common mistakes, as one sentence, before the screen opens
    except ModelError as exc:
        raise UsageError(str(exc)) from None
    tools, problems = build_tools(args)
    resume_events = None
    if args.resume is not None:  # new events are appended to the resumed file
        path, resume_events = load_session(args)
    else:
        path = session_path(args)
    app: ChatApp

    def make_engine(progress):
        engine = build_engine(args, tools, progress)
        if resume_events is not None:
            continue_session(engine, resume_events, path)
        if path is not None:
            writer = open_writer(path)
            engine.subscribe(writer)
            app.attach_writer(writer)
        return engine

    app = ChatApp(make_engine, session_path=path, show_timeline=settings.timeline,
                  keymap=settings.keymap, theme=settings.theme, notices=problems,
                  history=resume_events or [], demo=demo,
                  screenshot=Path(args.screenshot) if args.screenshot else None,
                  greeting=args.profile.greeting)
    app.run()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        demo = None
        if args.models:
            from asynclm.core.catalog import describe_all

            print(describe_all())
            return 0
        if args.demo == "":
            from .demo import list_demos

            print(list_demos())
            return 0
        if args.demo is not None:
            demo = load_demo_args(args)
        elif args.screenshot:
            raise UsageError("--screenshot goes with --demo.")
        settings = apply_settings(args)
        if demo is not None and args.headless:
            return run_headless_demo(args, demo)
        if args.headless:
            return run_headless(args)
        return run_app(args, settings, demo)
    except UsageError as exc:
        print(f"asynclm-chat: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
