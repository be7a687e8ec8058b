"""Ideogram 4 pipelines: loading and generation (``ideogram4``), the random-weight plumbing model (``tiny``)."""

# The two transformer copies of an Ideogram 4 pipeline: classifier-free guidance's conditional and unconditional
# branches. Quantization and calibration work on both.
BRANCHES = ("transformer", "unconditional_transformer")
