"""asynclm: asynchronous function calling on local llama.cpp models."""

__version__ = "0.1.0"
