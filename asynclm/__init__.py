"""asynclm: asynchronous function calling on local llama.cpp models."""

from pathlib import Path

__version__ = "0.1.0"

# The embedded demonstration model (see docs/model-card.md), used when no --model is given.
EMBEDDED_MODEL = Path(__file__).resolve().parent / "models" / "asynclm-tiny.gguf"
# Its argument values are steered toward the conversation's words (core/copying.py): the model picks
# the right tools but often makes values up. Measured in docs/model-card.md.
EMBEDDED_COPY_BIAS = 8.0
# Where it stops writing calls or would repeat one, the engine drafts another and writes it if it asks
# for something the answer's calls have not (core/completion.py): it often leaves a request's last task out.
EMBEDDED_COMPLETE_CALLS = True
# Where its answer would write a word a fourth time in a row, its likeliest punctuation comes instead
# (core/engine.py, ``starts_loop``): it sometimes loops on a word of a result until the answer is cut short.
EMBEDDED_BREAK_LOOPS = True
# It decodes greedily unless told otherwise: the sampler's defaults (temperature 0.7, a repetition
# penalty that also lowers the numbers and names it should copy again) make it worse at everything
# measured (docs/model-card.md).
EMBEDDED_SAMPLING = {"temperature": 0.0, "repeat_penalty": 1.0}
# What the app shows atop a new session on it: the model takes every message as a request for its
# tools, so it is best told what it does well (docs/model-card.md, "Everyday requests").
EMBEDDED_GREETING = (
    "asynclm-tiny, the embedded demonstration model, takes every message as a request for the built-in "
    "tools and does best with one or two at a time: what time is it in Paris · how many liters is 3 gallons · "
    "what is 12*34 and what time is it in Berlin · wait 3 seconds. It often gets folder and file names "
    "wrong. For real work, run any GGUF with --model PATH."
)
