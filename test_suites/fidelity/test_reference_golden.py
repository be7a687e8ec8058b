"""The FP8 reference that every variant is compared with still draws its golden images.

If the reference drifts (a diffusers upgrade, a change in the FP8 path, a new sampler default), every fidelity number
silently changes meaning; this test catches it. In the environment that recorded the set (same library versions,
same CPU dispatch) the images must be pixel-identical; elsewhere they must stay within the gate profile's
``[golden]`` tolerance, and the test says in one line what changed. ``--quantkit-update-golden`` rewrites the set
from this run and prints what changed, an explicit step that shows up in review.
"""

import warnings

import pytest

from quantkit import golden as workflow
from quantkit.pytest_plugin import gate_profile, option
from quantkit.store import golden


def test_reference_reproduces_its_golden_images(pytestconfig, quantkit_study, quantkit_golden):
    config = quantkit_study.config
    if option(pytestconfig, "--quantkit-update-golden"):
        change = workflow.update(quantkit_golden, config)
        print(f"updated {quantkit_golden}: {change.summary()}")
    if not (quantkit_golden.dir / golden.MANIFEST).exists():
        pytest.fail(f"no {quantkit_golden}: record it with pytest --quantkit-update-golden", pytrace=False)
    manifest = golden.verify(quantkit_golden)
    recorded = manifest["settings"]["runtime"]["device"]
    if recorded != config.device.split(":")[0]:
        pytest.skip(f"{quantkit_golden} was recorded on {recorded}; this run is on {config.device}")
    images = {pid: g.image for pid, g in quantkit_study.images(config.reference).items()}
    check = golden.compare(quantkit_golden, images, tolerance=gate_profile(pytestconfig).golden_tolerance)
    assert check.passed, (
        f"the {config.reference} reference no longer reproduces {quantkit_golden} ({check.summary()}):\n"
        + "\n".join(check.problems)
    )
    if check.changes:
        warnings.warn(f"{quantkit_golden}: {check.summary()}", stacklevel=1)
