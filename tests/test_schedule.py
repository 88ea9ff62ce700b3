"""The LogitNormal schedule and presets against the golden table of docs/MODEL.md §5.5 and against diffusers."""

from __future__ import annotations

import numpy as np
import pytest

from ideogram_trt.core.errors import InputError
from ideogram_trt.core.schedule import (
    PRESETS,
    T_MAX,
    PresetName,
    Terminal,
    get_preset,
    logit_normal_schedule,
    preset_schedule,
)

# docs/MODEL.md §5.5, V4_DEFAULT_20 at 1024x1024: (t fed to the DiT, its bf16 rounding, s, dt, guidance). The bf16
# column is what the bf16 DiT graphs compute from t (test_tensorrt_build.py).
GOLDEN_DEFAULT_20 = [
    (0.00012339, 0.00012302, 0.02734114, 0.02721775, 7),
    (0.02734114, 0.02734375, 0.05040897, 0.02306783, 7),
    (0.05040897, 0.05029297, 0.07537547, 0.02496650, 7),
    (0.07537547, 0.07519531, 0.10284696, 0.02747148, 7),
    (0.10284696, 0.10302734, 0.13313678, 0.03028982, 7),
    (0.13313678, 0.13281250, 0.16647092, 0.03333414, 7),
    (0.16647092, 0.16601562, 0.20303087, 0.03655995, 7),
    (0.20303087, 0.20312500, 0.24296267, 0.03993180, 7),
    (0.24296267, 0.24316406, 0.28637519, 0.04341252, 7),
    (0.28637519, 0.28710938, 0.33333334, 0.04695815, 7),
    (0.33333334, 0.33398438, 0.38384968, 0.05051634, 7),
    (0.38384968, 0.38476562, 0.43787524, 0.05402556, 7),
    (0.43787524, 0.43750000, 0.49529105, 0.05741581, 7),
    (0.49529105, 0.49609375, 0.55590367, 0.06061262, 7),
    (0.55590367, 0.55468750, 0.61944896, 0.06354529, 7),
    (0.61944896, 0.62109375, 0.68561327, 0.06616431, 7),
    (0.68561327, 0.68750000, 0.75410205, 0.06848878, 7),
    (0.75410205, 0.75390625, 0.82485133, 0.07074928, 7),
    (0.82485133, 0.82421875, 0.89892590, 0.07407457, 3),
    (0.89892590, 0.89843750, 0.99944723, 0.10052133, 3),
]
GOLDEN_TURBO_12_T = [
    0.00012339, 0.02625259, 0.05284324, 0.08521558, 0.12488961, 0.17344631,
    0.23269653, 0.30472502, 0.39189005, 0.49680251, 0.62242186, 0.77330929,
]  # fmt: skip


def test_default_20_matches_golden_table() -> None:
    s = preset_schedule(PresetName.V4_DEFAULT_20, 1024, 1024)
    golden = np.array(GOLDEN_DEFAULT_20, dtype=np.float64)
    np.testing.assert_allclose(s.t, golden[:, 0], rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.t_next, golden[:, 2], rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.dt, golden[:, 3], rtol=0, atol=1e-7)
    np.testing.assert_array_equal(s.guidance, golden[:, 4])
    assert s.t.dtype == s.dt.dtype == np.float32


def test_turbo_12_matches_golden_table() -> None:
    s = preset_schedule(PresetName.V4_TURBO_12, 1024, 1024)
    np.testing.assert_allclose(s.t, GOLDEN_TURBO_12_T, rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.t_next[-1], 0.99944723, rtol=0, atol=1e-7)
    assert s.guidance.tolist() == [7.0] * 11 + [3.0]


def test_quality_48_at_2048_matches_golden_start_and_end() -> None:
    s = preset_schedule(PresetName.V4_QUALITY_48, 2048, 2048)
    np.testing.assert_allclose(s.t[:4], [0.00012339, 0.01164061, 0.01827472, 0.02442366], rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.t[-1], 0.84143668, rtol=0, atol=1e-7)


@pytest.mark.parametrize("name", list(PresetName))
@pytest.mark.parametrize("size", [(1024, 1024), (512, 512), (768, 1344), (2048, 2048)])
def test_schedule_equals_diffusers_sigmas(name: PresetName, size: tuple[int, int]) -> None:
    """diffusers' own _logit_normal_sigmas (float64 grid) is an independent implementation of docs/MODEL.md §5.1."""
    from diffusers.pipelines.ideogram4.pipeline_ideogram4 import _logit_normal_sigmas, _resolution_aware_mu

    preset = get_preset(name)
    h, w = size
    s = preset_schedule(preset, h, w, terminal=Terminal.ZERO)
    sigmas = _logit_normal_sigmas(preset.steps, _resolution_aware_mu(h, w, preset.mu), std=preset.std)
    t_diffusers = 1.0 - sigmas.double().numpy()
    np.testing.assert_allclose(s.t, t_diffusers, rtol=0, atol=1e-7)
    np.testing.assert_allclose(s.t_next[:-1], t_diffusers[1:], rtol=0, atol=1e-7)
    assert s.t_next[-1] == 1.0


def test_terminal_changes_only_the_last_step() -> None:
    a = preset_schedule(PresetName.V4_QUALITY_48, 1024, 1024, terminal=Terminal.T_MAX)
    b = preset_schedule(PresetName.V4_QUALITY_48, 1024, 1024, terminal=Terminal.ZERO)
    np.testing.assert_array_equal(a.dt[:-1], b.dt[:-1])
    # docs/MODEL.md §5.2: QUALITY_48 @1024²: last step 0.085556 (t_max) vs 0.086108 (to 1), larger by 1 - t_max.
    np.testing.assert_allclose([a.dt[-1], b.dt[-1]], [0.085556, 0.086108], atol=1e-6)
    np.testing.assert_allclose(b.dt[-1] - a.dt[-1], 1.0 - T_MAX, atol=1e-7)


def test_presets_are_the_published_recipes() -> None:
    table = {p.value: (PRESETS[p].steps, PRESETS[p].mu, PRESETS[p].std) for p in PresetName}
    assert table == {
        "V4_QUALITY_48": (48, 0.0, 1.5),
        "V4_DEFAULT_20": (20, 0.0, 1.75),
        "V4_TURBO_12": (12, 0.5, 1.75),
        "V4_FAST_20": (20, 0.0, 1.75),
        "V4_INSTANT_8": (8, 0.0, 1.75),
    }
    # Chronological order: the polish steps (guidance 3) come last; distilled presets run cond-only.
    assert PRESETS[PresetName.V4_QUALITY_48].guidance == (7.0,) * 45 + (3.0,) * 3
    assert PRESETS[PresetName.V4_DEFAULT_20].guidance == (7.0,) * 18 + (3.0,) * 2
    assert not PRESETS[PresetName.V4_FAST_20].needs_unconditional
    assert not PRESETS[PresetName.V4_INSTANT_8].needs_unconditional
    assert PRESETS[PresetName.V4_TURBO_12].needs_unconditional


def test_preset_lookup_is_case_insensitive_and_unknown_names_are_refused() -> None:
    assert get_preset("v4_turbo_12").steps == 12
    with pytest.raises(InputError, match=r"unknown preset 'V5'.*V4_DEFAULT_20"):
        get_preset("V5")


def test_guidance_length_must_match_steps() -> None:
    with pytest.raises(InputError, match="3 values for 4 steps"):
        logit_normal_schedule(4, 0.0, 1.0, 512, 512, guidance=[1.0, 2.0, 3.0])
