"""quantkit: post-training quantization of Ideogram 4 with a pytest quality-regression harness."""

__version__ = "0.1.0"
