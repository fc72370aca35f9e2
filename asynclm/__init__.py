"""asynclm: asynchronous function calling on local llama.cpp models."""

from pathlib import Path

__version__ = "0.1.0"

# The embedded demonstration model (see docs/model-card.md), used when no --model is given; what the
# engine does for it is its profile (asynclm.core.profiles).
EMBEDDED_MODEL = Path(__file__).resolve().parent / "models" / "asynclm-tiny.gguf"
