"""Model profiles: which of the engine's steering, and which sampling defaults, a model gets.

The steering exists for the embedded model, a 5M model trained here (docs/model-card.md measures
each piece); any other model runs plain. A setting the user gives wins over the profile's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from asynclm import EMBEDDED_MODEL

@dataclass(frozen=True)
class ModelProfile:
    name: str
    copy_bias: float = 0.0  # argument values steered toward the conversation's words (core/copying.py)
    complete_calls: bool = False  # calls the model leaves out are drafted and written (core/completion.py)
    break_loops: bool = False  # a piece written a fourth time in a row gives way (core/steering.py, LoopBreaker)
    sampling: Mapping[str, float] = field(default_factory=dict)  # the sampler's defaults, replaced
    greeting: str | None = None  # what the app shows atop a new, empty session

    def engine_settings(self, scripted: bool = False) -> dict[str, Any]:
        """The ``EngineConfig`` fields this profile sets. Under a script, which decides every token,
        nothing is written for the model."""
        return {"copy_bias": self.copy_bias, "complete_calls": self.complete_calls and not scripted,
                "break_loops": self.break_loops and not scripted}


PLAIN = ModelProfile("plain")

# The embedded model picks the right tools but often makes values up, leaves a request's last task
# out, and sometimes loops on a word of a result; the sampler's defaults (temperature 0.7, a
# repetition penalty that also lowers the numbers and names it should copy) make it worse at
# everything measured. It takes every message as a request for its tools, so the app says what it
# does well.
EMBEDDED = ModelProfile(
    "embedded",
    copy_bias=8.0,
    complete_calls=True,
    break_loops=True,
    sampling=MappingProxyType({"temperature": 0.0, "repeat_penalty": 1.0}),
    greeting=(
        "asynclm-tiny, the embedded demonstration model, takes every message as a request for the built-in "
        "tools and does best with one or two at a time: what time is it in Paris · how many liters is 3 gallons · "
        "what is 12*34 and what time is it in Berlin · wait 3 seconds. It often gets folder and file names "
        "wrong. For real work, run any GGUF with --model PATH."
    ),
)


def profile_for(model: str | Path) -> ModelProfile:
    """The embedded model's profile for its file, the plain one for any other."""
    return EMBEDDED if Path(model).expanduser().resolve() == EMBEDDED_MODEL else PLAIN
