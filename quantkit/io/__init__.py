"""Checkpoint files: GGUF (``quantkit.io.gguf``) and safetensors (``quantkit.io.safetensors``) of Packed tensors."""

from quantkit.atomic import replacing

__all__ = ["replacing"]
