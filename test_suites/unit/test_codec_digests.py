"""The codecs still write their golden bytes: any change to a bit-exact format is caught, even one that would raise
PSNR (golden/codecs.json; rewrite it with quantkit.codec_digests.record() when a change is intended)."""

import json

from quantkit import codec_digests
from quantkit.faults import CATALOGUE


def test_every_codec_reproduces_its_golden_digest():
    assert codec_digests.check() == []


def test_a_codec_fault_that_raises_fidelity_still_changes_the_golden_bytes():
    with CATALOGUE["q4_k_no_refinement"].inject():
        problems = codec_digests.check()
    assert [line.split(":")[0] for line in problems] == ["codec q4_k"]
    assert codec_digests.check() == []


def test_a_missing_or_edited_golden_file_is_reported(tmp_path):
    path = tmp_path / "codecs.json"
    codec_digests.record(path)
    data = json.loads(path.read_text())
    data["digests"]["nf4"] = "0" * 64
    path.write_text(json.dumps(data))
    assert [line.split(":")[0] for line in codec_digests.check(path)] == ["codec nf4"]
