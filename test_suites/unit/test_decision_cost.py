"""The cost-per-decision machinery: planted faults and a no-op control, each judged by a full study and by baseline
+ sequential mode against the baseline of the unfaulted tree, with the images each generated.

Two faults of this test's own (the fault catalogue is quantkit.faults, elsewhere): a Q8_0 scale bug (every block's
``d`` x 1.5, with the codec's version, and so Q8_0's cache keys, changed as an edit would) and a no-op (the version
changed, the code not). Tiny model, FP8 and Q8_0, PSNR and SSIM, two categories of two prompts (two looks).
"""

import contextlib
import dataclasses

import pytest
import torch

from quantkit import faults
from quantkit import generation as cached
from quantkit.baseline import save_baseline
from quantkit.codecs import q8_0
from quantkit.decision_cost import measure, summary
from quantkit.profiles import load_profile
from quantkit.study import Study, StudyConfig

CONFIG = StudyConfig(
    variants=("fp8", "q8_0"), metrics=("psnr", "ssim"), categories=("typography", "posters"), prompt_limit=4
)
SKIPS = ("variant not run", "metric not requested")


@dataclasses.dataclass(frozen=True)
class Q8Fault:
    name: str
    scale: float | None  # None: a no-op control (only the code version changes)

    @contextlib.contextmanager
    def inject(self):
        version, quantize = cached.quantizer_version, q8_0.quantize

        def buggy(w, *, name="tensor"):
            packed = quantize(w, name=name)
            blocks = packed.data.reshape(-1, q8_0.BLOCK_BYTES).clone()
            d = blocks[:, 0:2].contiguous().view(torch.float16).float() * self.scale
            blocks[:, 0:2] = d.half().view(torch.uint8)
            return dataclasses.replace(packed, data=blocks.reshape(packed.data.shape))

        with pytest.MonkeyPatch.context() as patch:
            salted = lambda v=None: version(v) + (f"+{self.name}" if v == "q8_0" else "")  # noqa: E731
            patch.setattr(cached, "quantizer_version", salted)
            if self.scale is not None:
                patch.setattr(q8_0, "quantize", buggy)
            yield


@pytest.mark.slow
def test_faults_and_a_control_get_the_same_verdict_both_ways_for_fewer_images(tmp_path):
    main = Study(dataclasses.replace(CONFIG, cache_dir=str(tmp_path / "main-cache")), progress=False)
    main.score_all()
    baseline = save_baseline(main, tmp_path / "baseline")
    cases = [Q8Fault("q8_0 scale x1.5", 1.5), Q8Fault("no-op q8_0 edit", None)]
    costs = measure(cases, main.config, load_profile("tiny"), baseline, n_resamples=1000, allow_skip=SKIPS)
    print("\n" + summary(costs))
    fault, control = costs
    assert all(c.agree for c in costs)
    assert not fault.full_passed and control.full_passed
    assert fault.full_images == control.full_images == 8  # 2 variants x 4 prompts, from an empty cache
    assert fault.status == {"fp8": "unchanged", "q8_0": "changed"} and 0 < fault.gated_images <= 4
    assert control.status == {"fp8": "unchanged", "q8_0": "unchanged"} and control.gated_images == 4


@dataclasses.dataclass(frozen=True)
class At:
    """A catalogue fault at one severity, as a case."""

    fault: faults.Fault
    severity: float

    @property
    def name(self) -> str:
        return f"{self.fault.name} @ {self.severity:g}"

    def inject(self):
        return self.fault.inject(self.severity)


@dataclasses.dataclass(frozen=True)
class NoOpEdit:
    """A no-op control: ``variants``' code identity changes (as a whitespace edit of their codec would), not their
    behaviour; with no variant, the tree is main's."""

    variants: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"no-op edit of {', '.join(self.variants)}" if self.variants else "unchanged tree"

    def inject(self):
        return faults.salted_identity(self.variants, "no-op") if self.variants else contextlib.nullcontext()


CATALOGUE_CASES = [
    At(faults.CATALOGUE["int8_scale"], 0.5),
    At(faults.CATALOGUE["w8a8_activation_scale"], 0.5),
    At(faults.CATALOGUE["q8_0_scale"], 0.5),
    At(faults.CATALOGUE["q4_k_scale"], 0.5),
    At(faults.CATALOGUE["gguf_bias"], 1.0),
    At(faults.CATALOGUE["nf4_code_table"], 0.2),
    At(faults.CATALOGUE["nf4_nibble_order"], 1.0),
    *(NoOpEdit((name,)) for name in ("int8_w8a8", "q4_k", "q8_0", "nf4")),
    NoOpEdit(("q4_k", "q8_0")),
    NoOpEdit(()),
]


@pytest.mark.slow
def test_the_catalogue_gets_the_same_verdicts_for_a_quarter_of_the_images(tmp_path):
    """Issue 17's cost per decision on the default study (tiny, 10 prompts, every default variant, the tiny profile):
    seven planted faults of the catalogue outside the reference and six no-op controls, each judged by a full study
    from an empty cache and by baseline + sequential mode against main's baseline."""
    config = StudyConfig.for_model("tiny", cache_dir=str(tmp_path / "main-cache"))
    main = Study(config, progress=False)
    main.score_all()
    baseline = save_baseline(main, tmp_path / "baseline")
    costs = measure(CATALOGUE_CASES, config, load_profile("tiny"), baseline, work_dir=tmp_path)
    print("\n" + summary(costs))
    assert all(c.agree for c in costs), [c.name for c in costs if not c.agree]
    assert sum(c.gated_images for c in costs) <= sum(c.full_images for c in costs) / 4
    assert costs[-1].name == "unchanged tree" and costs[-1].gated_images == 0
