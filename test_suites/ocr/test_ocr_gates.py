"""Gates on text rendering (PP-OCR exact match and edit distance): one test per gate of the active profile (`--gates`).

A failure prints the gate's verdict line, e.g. `metric: variant - reference = diff [95% CI lo, hi] (n, method,
adjustment) ...: gate kind failed`. Gates whose metric could not be measured here are skipped with the reason.
"""

GATE_FAMILY = "text"


def test_gate(quantkit_gate):
    quantkit_gate()
