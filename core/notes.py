"""What the engine says: the notes it writes into the model's context, and its sentences to the user
about the context. They name no command-line flag or key; a front end adds its own hints."""

from __future__ import annotations

from .cml import error_payload

# --- into the model's context ---------------------------------------------------------------------

STOPPED = "the user stopped the answer"
NOTHING_PENDING = "nothing is pending: no call is running and no message is waiting"
LOST = error_payload("Lost", "the session stopped before this call returned; call it again if it is still needed")


def estimates_updated(moved: dict[str, str]) -> str:
    """Some tools' shown estimates have moved (``moved``: tool -> estimate as the tool list shows it,
    in tool-list order)."""
    return "updated estimates: " + " | ".join(f"{name} {shown}" for name, shown in moved.items())


# --- to the user ----------------------------------------------------------------------------------

def larger_context(n_ctx: int, n_train: int, lead: str) -> str:
    """``lead`` and how the context could be larger, where the model allows it ("" where not)."""
    return f"{lead}a larger context (up to the model's {n_train} tokens)" if n_train > n_ctx else ""


def session_too_long(path: str, needed: int, n_ctx: int, n_train: int) -> str:
    return (f"The session {path} needs {needed} tokens, more than this context of {n_ctx}; starting a new "
            f"session instead{larger_context(n_ctx, n_train, '; it would fit in ')}.")


def message_held_back(context_full: str) -> str:
    return f"{context_full} Your message was not sent: start a new session and send it again."


def message_too_long(longest: int, n_ctx: int, fresh: int, n_train: int) -> str:
    return (f"Your message is {longest} tokens, more than this context of {n_ctx} holds even in a new session "
            f"({fresh} go to the tool list): it was not sent. Shorten it{larger_context(n_ctx, n_train, ', or use ')}.")


def turn_ended_full(context_full: str) -> str:
    return f"{context_full} The turn ended here; the transcript is kept. Start a new session to go on."
