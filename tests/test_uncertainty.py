"""Tests for autodeuq.uncertainty against closed forms, scipy and scoringrules."""

import pickle
import warnings

import numpy as np
import pytest
import scoringrules as sr
from scipy import integrate, stats

from autodeuq.uncertainty import (
    NormalMixture,
    PredictiveUncertainty,
    calibrated_levels,
    calibration_curve,
    calibration_error,
    coverage,
    crps,
    fit_std_scale,
    gaussian_nll,
    interval_width,
    mixture_moments,
    nll,
    regression_report,
    rmse,
    transfer_pits,
)


def _random_mixture(rng, n_components=5, n_samples=50, spread=3.0):
    means = rng.normal(scale=spread, size=(n_components, n_samples))
    stds = rng.uniform(0.2, 2.0, size=(n_components, n_samples))
    weights = rng.uniform(0.1, 1.0, size=n_components)
    return NormalMixture(means, stds, weights)


def _separated_mixture(n_samples=40):
    rng = np.random.default_rng(1)
    means = np.arange(5.0)[:, None] * 50.0 + rng.normal(size=(5, n_samples))
    stds = rng.uniform(0.05, 1.0, size=(5, n_samples))
    return NormalMixture(means, stds, [1.0, 2.0, 3.0, 0.5, 4.0])


def _draw(mix, rng):
    return mix.sample(1, random_state=int(rng.integers(2**31)))[0]


# --------------------------------------------------------------------------- moments


def test_mixture_moments_law_of_total_variance():
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(6, 30)) * 5
    var = rng.uniform(0.1, 3.0, size=(6, 30))
    w = rng.uniform(0, 1, size=6)
    mean, alea, epi = mixture_moments(mu, var, w)
    wn = w / w.sum()
    np.testing.assert_allclose(mean, wn @ mu, rtol=1e-13)
    np.testing.assert_allclose(alea, wn @ var, rtol=1e-13)
    np.testing.assert_allclose(alea + epi, wn @ (var + mu**2) - mean**2, rtol=1e-10)
    assert np.all(epi >= 0)


def test_mixture_moments_uniform_default_and_one_component():
    rng = np.random.default_rng(0)
    mu, var = rng.normal(size=(4, 10)), rng.uniform(1, 2, size=(4, 10))
    uniform, ones = mixture_moments(mu, var), mixture_moments(mu, var, [1.0] * 4)
    for got, want in zip(uniform, ones, strict=True):
        np.testing.assert_allclose(got, want)
    mean, alea, epi = mixture_moments(mu[0], var[0])
    np.testing.assert_array_equal(mean, mu[0])
    np.testing.assert_array_equal(alea, var[0])
    assert np.all(epi == 0.0)


def test_total_variance_matches_sample_variance():
    mix = _random_mixture(np.random.default_rng(2), n_samples=4)
    draws = mix.sample(200_000, random_state=0)
    assert draws.shape == (200_000, 4)
    np.testing.assert_allclose(draws.mean(axis=0), mix.mean, atol=0.05 * mix.std.max())
    np.testing.assert_allclose(draws.var(axis=0), mix.var, rtol=0.03)


def test_huge_weights_are_normalised_not_overflowed():
    # Their sum overflowed to inf, and every weight became 0 (a mean of 0, an NLL of inf).
    mix = NormalMixture([[0.0], [1.0]], [[1.0], [1.0]], [1e308, 1e308])
    np.testing.assert_array_equal(mix.weights, [0.5, 0.5])
    np.testing.assert_array_equal(mix.mean, [0.5])


@pytest.mark.parametrize(("means", "stds", "message"), [
    ([1.0], [1e-200], r"stds must lie in \[1e-154, 1e\+153\] \(their squares, the variances, "
                      r"must stay finite and nonzero in float64\); got values from 1e-200"),
    ([0.0], [1e200], r"stds must lie in \[1e-154, 1e\+153\]"),
    ([[1e200], [-1e200]], [[1.0], [1.0]], r"means must have every \|value\| <= 1e\+153"),
])
def test_stds_and_means_whose_squares_leave_float64_are_refused(means, stds, message):
    # They gave a total std of 0 (or inf), and a later call blamed "stds must be > 0".
    with pytest.raises(ValueError, match=message) as info:
        NormalMixture(means, stds)
    assert "Rescale the target, and the predictions, by a power of ten." in str(info.value)
    NormalMixture([1e150], [1e-150]).interval(0.9)  # far, but inside: works


def test_weights_are_respected():
    rng = np.random.default_rng(3)
    mu, sd = rng.normal(size=(2, 20)), rng.uniform(0.5, 2, size=(2, 20))
    first = NormalMixture(mu[0], sd[0])
    zero = NormalMixture(mu, sd, [1.0, 0.0])
    y = rng.normal(size=20) * 3
    np.testing.assert_array_equal(zero.mean, first.mean)
    np.testing.assert_array_equal(zero.var, first.var)
    assert np.all(zero.epistemic_var == 0)
    np.testing.assert_allclose(zero.logpdf(y), first.logpdf(y), rtol=1e-14)
    np.testing.assert_allclose(zero.cdf(y), first.cdf(y), rtol=1e-14)
    np.testing.assert_allclose(zero.ppf(0.3), first.ppf(0.3), rtol=1e-14)
    assert crps(y, zero) == pytest.approx(crps(y, first), rel=1e-12)

    dup = NormalMixture(mu[[0, 0, 1]], sd[[0, 0, 1]])
    doubled = NormalMixture(mu, sd, [2.0, 1.0])
    np.testing.assert_allclose(doubled.weights, [2 / 3, 1 / 3])
    for attr in ("mean", "aleatoric_var", "epistemic_var"):
        np.testing.assert_allclose(getattr(dup, attr), getattr(doubled, attr), rtol=1e-12)
    np.testing.assert_allclose(dup.logpdf(y), doubled.logpdf(y), rtol=1e-12)
    np.testing.assert_allclose(dup.ppf(0.8), doubled.ppf(0.8), rtol=1e-9)
    assert crps(y, dup) == pytest.approx(crps(y, doubled), rel=1e-12)


def test_one_component_has_zero_epistemic_variance():
    rng = np.random.default_rng(4)
    mix = NormalMixture(rng.normal(size=(1, 15)) * 1e3, rng.uniform(1, 2, size=(1, 15)), [7.0])
    assert np.all(mix.epistemic_var == 0.0)
    np.testing.assert_array_equal(mix.var, mix.stds[0] ** 2)
    np.testing.assert_array_equal(mix.mean, mix.means[0])


def test_properties_and_uncertainty_tuple():
    mix = _random_mixture(np.random.default_rng(5), n_components=3, n_samples=7)
    assert (mix.n_components, mix.n_samples) == (3, 7)
    assert repr(mix) == "NormalMixture(n_components=3, n_samples=7)"
    np.testing.assert_allclose(mix.var, mix.aleatoric_var + mix.epistemic_var)
    np.testing.assert_allclose(mix.std**2, mix.var)
    np.testing.assert_allclose(mix.aleatoric_std**2, mix.aleatoric_var)
    np.testing.assert_allclose(mix.epistemic_std**2, mix.epistemic_var)
    res = mix.uncertainty()
    assert isinstance(res, PredictiveUncertainty)
    mean, total, _, epi = res
    np.testing.assert_allclose(mean, mix.mean)
    np.testing.assert_allclose(total, mix.std)
    np.testing.assert_allclose(res.total_var, res.aleatoric_var + res.epistemic_var)
    np.testing.assert_allclose(res.epistemic_var, epi**2)
    assert all(a.shape == (7,) for a in res)


def test_arrays_are_read_only_copies():
    means = np.zeros((2, 3))
    mix = NormalMixture(means, np.ones((2, 3)), [1, 3])
    means[0, 0] = 5.0
    assert mix.means[0, 0] == 0.0
    np.testing.assert_allclose(mix.weights, [0.25, 0.75])
    for arr in (mix.means, mix.stds, mix.weights, mix.mean):
        assert arr.dtype == np.float64
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 1.0
    with pytest.raises(AttributeError):
        mix.means = means
    clone = pickle.loads(pickle.dumps(mix))
    np.testing.assert_array_equal(clone.means, mix.means)
    assert not clone.means.flags.writeable


# --------------------------------------------------------------------------- densities


def test_logpdf_one_component_matches_scipy():
    rng = np.random.default_rng(6)
    mu, sd, y = rng.normal(size=30), rng.uniform(0.1, 3, size=30), rng.normal(size=30) * 4
    mix = NormalMixture(mu, sd)
    np.testing.assert_allclose(mix.logpdf(y), stats.norm.logpdf(y, mu, sd), rtol=1e-13)
    np.testing.assert_allclose(mix.pdf(y), stats.norm.pdf(y, mu, sd), rtol=1e-13)
    np.testing.assert_allclose(mix.cdf(y), stats.norm.cdf(y, mu, sd), rtol=1e-13)


def test_logpdf_mixture_matches_direct_sum():
    rng = np.random.default_rng(7)
    mix = _random_mixture(rng)
    y = rng.normal(size=mix.n_samples) * 3
    dens = mix.weights @ stats.norm.pdf(y, mix.means, mix.stds)
    np.testing.assert_allclose(mix.logpdf(y), np.log(dens), rtol=1e-12)
    np.testing.assert_allclose(mix.logpdf(1.5), mix.logpdf(np.full(mix.n_samples, 1.5)))
    cdf = mix.weights @ stats.norm.cdf(y, mix.means, mix.stds)
    np.testing.assert_allclose(mix.cdf(y), cdf, rtol=1e-12)


def test_logpdf_is_stable_far_in_the_tails():
    mix = NormalMixture([[0.0], [1.0]], [[1.0], [2.0]], [0.5, 0.5])
    y = np.array([1e3 * 2.0 + 1.0])
    got = mix.logpdf(y)
    want = np.log(0.5) + stats.norm.logpdf(y, 1.0, 2.0)  # the wide component dominates
    assert np.isfinite(got).all()
    assert got[0] < -1e5
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # A zero-weight component next to y must not swamp the others.
    zero = NormalMixture([[0.0], [1e4]], [[1.0], [1.0]], [1.0, 0.0])
    np.testing.assert_allclose(zero.logpdf(1e4), stats.norm.logpdf(1e4), rtol=1e-12)


# --------------------------------------------------------------------------- quantiles


def test_ppf_one_component_is_exact():
    rng = np.random.default_rng(8)
    mu, sd = rng.normal(size=20), rng.uniform(0.1, 3, size=20)
    mix = NormalMixture(mu, sd)
    q = rng.uniform(size=20)
    np.testing.assert_allclose(mix.ppf(q), stats.norm.ppf(q, mu, sd), rtol=1e-14)
    np.testing.assert_allclose(mix.cdf(mix.ppf(q)), q, rtol=1e-12)


@pytest.mark.parametrize("q", [1e-12, 1e-4, 0.05, 0.3, 0.5, 0.77, 0.95])
def test_ppf_cdf_round_trip_separated_components(q):
    mix = _separated_mixture()
    x = mix.ppf(q)
    np.testing.assert_allclose(mix.cdf(x), q, rtol=1e-9)


def test_ppf_upper_tail_and_array_q():
    mix = _separated_mixture()
    q = 1 - 1e-10
    x = mix.ppf(q)
    z = (x - mix.means) / mix.stds
    survival = mix.weights @ stats.norm.sf(z)
    np.testing.assert_allclose(survival, 1 - q, rtol=1e-8)
    qs = np.linspace(0.01, 0.99, mix.n_samples)
    np.testing.assert_allclose(mix.cdf(mix.ppf(qs)), qs, rtol=1e-9)
    x = mix.means[2] + 0.3
    np.testing.assert_allclose(mix.ppf(mix.cdf(x)), x, rtol=1e-9)


def test_ppf_is_monotone_and_identical_components():
    mix = _random_mixture(np.random.default_rng(9))
    qs = np.linspace(0.01, 0.99, 25)
    xs = np.array([mix.ppf(q) for q in qs])
    assert np.all(np.diff(xs, axis=0) > 0)
    same = NormalMixture(np.full((3, 4), 2.0), np.full((3, 4), 0.5))
    np.testing.assert_allclose(same.ppf(0.9), stats.norm.ppf(0.9, 2.0, 0.5), rtol=1e-12)


def test_ppf_is_exact_where_wide_and_narrow_components_mix():
    # The stopping tolerance was set from the first guess, which a component a million wide
    # threw to 5e4: the answer stopped 4e-11 short, over a million times the float spacing
    # there (the exact value is from a 200-step mpmath bisection).
    means = [[-1.8732420280647817], [0.005309782766499629], [-109.68423906280773],
             [0.124769204858531]]
    stds = [[613923.1912660379], [186240.69736514325], [6.164042386651656e-05],
            [3.0516962905415322e-05]]
    weights = [0.11394722601136593, 0.13702842601473234, 0.29898609184034464,
               0.4500382561335571]
    x = NormalMixture(means, stds, weights).ppf(0.7)[0]
    assert abs(x - 0.12477790616029255) < 1e-15


@pytest.mark.parametrize("level", [0.5, 0.9, 0.99])
def test_interval_contains_level_mass(level):
    mix = _separated_mixture()
    lower, upper = mix.interval(level)
    assert np.all(lower < upper)
    np.testing.assert_allclose(mix.cdf(upper) - mix.cdf(lower), level, rtol=1e-9)
    np.testing.assert_allclose(mix.cdf(lower), (1 - level) / 2, rtol=1e-8)


def test_moment_matched_and_affine():
    rng = np.random.default_rng(10)
    mix = _random_mixture(rng, n_samples=30)
    mm = mix.moment_matched()
    assert mm.n_components == 1
    np.testing.assert_allclose(mm.mean, mix.mean)
    np.testing.assert_allclose(mm.std, mix.std)

    shift, scale = 3.5, 12.0
    y_std = _draw(mix, rng)
    out = mix.affine(shift, scale)
    np.testing.assert_allclose(out.means, shift + scale * mix.means)
    np.testing.assert_allclose(out.stds, scale * mix.stds)
    np.testing.assert_allclose(out.std, scale * mix.std)
    np.testing.assert_allclose(out.epistemic_std, scale * mix.epistemic_std)
    assert nll(shift + scale * y_std, out) == pytest.approx(nll(y_std, mix) + np.log(scale))
    assert crps(shift + scale * y_std, out) == pytest.approx(scale * crps(y_std, mix))


def test_sample_is_reproducible_and_respects_zero_weights():
    mix = NormalMixture([[0.0, 0.0], [100.0, 100.0]], [[1.0, 1.0], [1.0, 1.0]], [1.0, 0.0])
    a = mix.sample(500, random_state=0)
    np.testing.assert_array_equal(a, mix.sample(500, random_state=0))
    assert np.all(np.abs(a) < 10)


# --------------------------------------------------------------------------- scores


def test_crps_gaussian_matches_scoringrules():
    rng = np.random.default_rng(11)
    mu, sd, y = rng.normal(size=40), rng.uniform(0.1, 3, size=40), rng.normal(size=40) * 3
    want = sr.crps_normal(y, mu, sd, backend="numpy")
    assert crps(y, NormalMixture(mu, sd)) == pytest.approx(np.mean(want), rel=1e-12)


def test_crps_mixture_matches_scoringrules():
    rng = np.random.default_rng(12)
    mix = _random_mixture(rng)
    y = _draw(mix, rng)
    w = np.broadcast_to(mix.weights, (mix.n_samples, mix.n_components))
    # scoringrules puts the mixture components on the last axis by default.
    want = sr.crps_mixnorm(y, mix.means.T, mix.stds.T, w, backend="numpy")
    assert crps(y, mix) == pytest.approx(np.mean(want), rel=1e-12)
    for j in range(3):
        one = NormalMixture(mix.means[:, [j]], mix.stds[:, [j]], mix.weights)
        assert crps(y[[j]], one) == pytest.approx(want[j], rel=1e-12)


def test_crps_mixture_matches_numerical_integration():
    rng = np.random.default_rng(13)
    mix = _random_mixture(rng, n_components=3, n_samples=3)
    y = np.array([-1.0, 0.5, 4.0])
    for j in range(3):
        one = NormalMixture(mix.means[:, [j]], mix.stds[:, [j]], mix.weights)

        def cdf(x, one=one):
            return one.cdf(x)[0]

        lo, hi = one.ppf(1e-12)[0], one.ppf(1 - 1e-12)[0]
        lo, hi = min(lo, y[j]), max(hi, y[j])
        left = integrate.quad(lambda x, f=cdf: f(x) ** 2, lo - 10, y[j], limit=200)[0]
        right = integrate.quad(lambda x, f=cdf: (f(x) - 1) ** 2, y[j], hi + 10, limit=200)[0]
        assert crps(y[[j]], one) == pytest.approx(left + right, rel=1e-6)


def test_crps_chunking_does_not_change_result(monkeypatch):
    from autodeuq.uncertainty import _metrics

    rng = np.random.default_rng(14)
    mix = _random_mixture(rng, n_components=4, n_samples=37)
    y = _draw(mix, rng)
    full = crps(y, mix)
    monkeypatch.setattr(_metrics, "_CRPS_CHUNK_ELEMENTS", 16 * 5)
    assert crps(y, mix) == pytest.approx(full, rel=1e-14)


def test_nll_matches_scoringrules_log_score():
    rng = np.random.default_rng(15)
    mu, sd, y = rng.normal(size=40), rng.uniform(0.1, 3, size=40), rng.normal(size=40) * 3
    want = np.mean(sr.logs_normal(y, mu, sd, backend="numpy"))
    assert nll(y, NormalMixture(mu, sd)) == pytest.approx(want, rel=1e-12)
    assert gaussian_nll(y, mu, sd) == pytest.approx(want, rel=1e-12)
    assert gaussian_nll(y, 0.0, 1.0) == pytest.approx(-np.mean(stats.norm.logpdf(y)))

    mix = _random_mixture(rng)
    y = _draw(mix, rng)
    w = np.broadcast_to(mix.weights, (mix.n_samples, mix.n_components))
    want = np.mean(sr.logs_mixnorm(y, mix.means.T, mix.stds.T, w, backend="numpy"))
    assert nll(y, mix) == pytest.approx(want, rel=1e-10)


def test_rmse_accepts_mixture_or_point_predictions():
    y = np.array([1.0, 2.0, 3.0])
    pred = np.array([1.0, 2.0, 5.0])
    want = np.sqrt(4 / 3)
    assert rmse(y, pred) == pytest.approx(want)
    mix = NormalMixture(np.stack([pred - 1, pred + 1]), np.ones((2, 3)))
    assert rmse(y, mix) == pytest.approx(want)
    assert isinstance(rmse(y, mix), float)


def test_coverage_and_calibration_of_correct_and_overconfident_models():
    rng = np.random.default_rng(16)
    mix = _random_mixture(rng, n_components=4, n_samples=20_000, spread=0.5)
    y = _draw(mix, rng)
    for level in (0.5, 0.9):
        assert coverage(y, mix, level) == pytest.approx(level, abs=0.015)
    expected, observed = calibration_curve(y, mix)
    np.testing.assert_allclose(expected, np.linspace(0.05, 0.95, 19))
    np.testing.assert_allclose(observed, expected, atol=0.02)
    assert calibration_error(y, mix) < 0.01
    assert calibration_error(y, mix, norm="l2") < 0.015

    overconfident = NormalMixture(mix.means, mix.stds / 2, mix.weights)
    assert calibration_error(y, overconfident) > 0.1
    assert coverage(y, overconfident, 0.9) < 0.85

    exp2, obs2 = calibration_curve(y, mix, levels=[0.5, 0.9])
    np.testing.assert_allclose(exp2, [0.5, 0.9])
    np.testing.assert_allclose(obs2, [coverage(y, mix, 0.5), coverage(y, mix, 0.9)])


def test_coverage_agrees_with_interval():
    rng = np.random.default_rng(17)
    mix = _random_mixture(rng, n_samples=500)
    y = _draw(mix, rng)
    lower, upper = mix.interval(0.8)
    inside = np.mean((lower <= y) & (y <= upper))
    assert coverage(y, mix, 0.8) == pytest.approx(inside)
    assert interval_width(mix, 0.8) == pytest.approx(np.mean(upper - lower))


def test_interval_width_gaussian_closed_form():
    sd = np.array([1.0, 2.0, 3.0])
    mix = NormalMixture(np.zeros(3), sd)
    want = np.mean(2 * stats.norm.ppf(0.95) * sd)
    assert interval_width(mix, 0.9) == pytest.approx(want, rel=1e-13)


def test_fit_std_scale_recovers_the_missing_factor():
    rng = np.random.default_rng(3)
    means = rng.normal(size=(3, 20_000)) * 0.1
    y = means.mean(axis=0) + 2.0 * rng.normal(size=20_000)
    mix = NormalMixture(means, np.ones_like(means))  # the truth has std 2, not 1
    scale = fit_std_scale(y, mix)
    assert scale == pytest.approx(2.0, rel=0.03)
    assert nll(y, NormalMixture(means, scale * np.ones_like(means))) < nll(y, mix)
    # Already calibrated: the factor stays (near) 1.
    calibrated = NormalMixture(means, 2.0 * np.ones_like(means))
    assert fit_std_scale(y, calibrated) == pytest.approx(1.0, abs=0.02)
    with pytest.raises(TypeError, match="NormalMixture"):
        fit_std_scale(y, means)


def test_fit_std_scale_warns_at_its_bound():
    # The factor is searched in [e^-3, e^3]; at the bound it was returned without a word.
    y = np.random.default_rng(0).normal(size=500)
    far = NormalMixture(np.zeros(500), np.full(500, 0.01))  # a hundred times too narrow
    with pytest.warns(UserWarning, match=r"at or beyond its bound, e\^3 = 20\.1"):
        assert fit_std_scale(y, far) == pytest.approx(np.exp(3.0), rel=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_std_scale(y, NormalMixture(np.zeros(500), np.full(500, 0.5)))  # inside: silent


def test_fit_std_scale_widen_only_never_narrows():
    rng = np.random.default_rng(4)
    means = rng.normal(size=(3, 5_000)) * 0.1
    y = means.mean(axis=0) + 0.5 * rng.normal(size=5_000)
    overstated = NormalMixture(means, np.ones_like(means))  # the truth has std 0.5
    assert fit_std_scale(y, overstated) == pytest.approx(0.5, rel=0.05)
    assert fit_std_scale(y, overstated, widen_only=True) == 1.0
    understated = NormalMixture(means, 0.25 * np.ones_like(means))
    assert fit_std_scale(y, understated, widen_only=True) == pytest.approx(
        fit_std_scale(y, understated))
    assert fit_std_scale(y, understated, widen_only=True) == pytest.approx(2.0, rel=0.05)
    with pytest.raises(TypeError, match="widen_only must be a bool"):
        fit_std_scale(y, understated, widen_only="yes")


def test_regression_report():
    rng = np.random.default_rng(18)
    mix = _random_mixture(rng, n_samples=200)
    y = _draw(mix, rng)
    report = regression_report(y, mix, level=0.8)
    assert set(report) == {
        "nll",
        "nll_moment_matched",
        "rmse",
        "crps",
        "coverage",
        "interval_width",
        "calibration_error",
    }
    assert all(isinstance(v, float) for v in report.values())
    assert report["nll"] == pytest.approx(nll(y, mix))
    assert report["nll_moment_matched"] == pytest.approx(nll(y, mix.moment_matched()))
    assert report["coverage"] == pytest.approx(coverage(y, mix, 0.8))
    assert report["interval_width"] == pytest.approx(interval_width(mix, 0.8))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"means": np.zeros((2, 3)), "stds": np.ones((2, 4))}, "stds must have the same shape"),
        ({"means": np.zeros((2, 3)), "stds": -0.1 * np.ones((2, 3))}, "stds must be > 0.*-0.1"),
        ({"means": np.zeros(3), "stds": np.zeros(3)}, "stds must be > 0"),
        ({"means": np.zeros(3), "stds": [1.0, np.nan, 1.0]}, "stds must be finite"),
        ({"means": [0.0, np.inf, 0.0], "stds": np.ones(3)}, "means must be finite"),
        ({"means": 0.0, "stds": 1.0}, "means must have shape"),
        ({"means": np.zeros((0, 3)), "stds": np.zeros((0, 3))}, "means must have shape"),
        ({"means": np.zeros((2, 3, 1)), "stds": np.ones((2, 3, 1))}, "means must have shape"),
        ({"means": ["a", "b"], "stds": [1.0, 1.0]}, "means must be array-like"),
        ({"means": [[0.0, 1.0], [0.0]], "stds": [1.0, 1.0]},
         r"means must be array-like of real numbers; got list \(setting an array element "
         r"with a sequence.*every row of the same length"),
        ({"means": [1j, 1j], "stds": [1.0, 1.0]}, "not 'complex'"),
        ({"weights": [1.0]}, r"weights must have shape \(2,\)"),
        ({"weights": [1.0, -1.0]}, "weights must be >= 0"),
        ({"weights": [0.0, 0.0]}, "weights must have a positive sum"),
        ({"weights": [1.0, np.nan]}, "weights must be finite"),
    ],
)
def test_normal_mixture_validation(kwargs, match):
    args = {"means": np.zeros((2, 3)), "stds": np.ones((2, 3)), "weights": None}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        NormalMixture(args["means"], args["stds"], args["weights"])


def test_mixture_moments_validation():
    with pytest.raises(ValueError, match="variances must have the same shape"):
        mixture_moments(np.zeros((2, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="variances must be >= 0"):
        mixture_moments(np.zeros(3), -np.ones(3))
    with pytest.raises(ValueError, match="weights must have shape"):
        mixture_moments(np.zeros((2, 3)), np.ones((2, 3)), [1.0, 2.0, 3.0])


def test_method_validation():
    mix = NormalMixture(np.zeros((2, 3)), np.ones((2, 3)))
    for bad in (0.0, 1.0, -0.5, np.nan, [0.2, 1.2, 0.5]):
        with pytest.raises(ValueError, match="q must lie in the open interval"):
            mix.ppf(bad)
    with pytest.raises(ValueError, match=r"q must be a scalar or have shape \(3,\)"):
        mix.ppf([0.5, 0.5])
    with pytest.raises(ValueError, match="y must be a scalar or have shape"):
        mix.logpdf(np.zeros(4))
    # A length-1 array is a slip (y[:1]), not a scalar: refused by every per-point method.
    for method in (mix.cdf, mix.logpdf, mix.pdf, mix.ppf):
        with pytest.raises(ValueError, match=r"must be a scalar or have shape \(3,\), one "
                           r"value per point; got shape \(1,\)"):
            method(np.array([0.5]))
    with pytest.raises(ValueError, match=r"shift must be a scalar or have shape \(3,\)"):
        mix.affine([1.0])
    np.testing.assert_array_equal(mix.cdf(np.float64(0.0)), [0.5, 0.5, 0.5])  # a scalar is
    np.testing.assert_array_equal(mix.cdf(np.array(0.0)), [0.5, 0.5, 0.5])  # for every point
    single = NormalMixture(np.zeros((2, 1)), np.ones((2, 1)))
    np.testing.assert_array_equal(single.cdf(np.array([0.0])), [0.5])  # one point, one value
    for bad in (0, 1, 1.5, "0.9", [0.9]):
        with pytest.raises(ValueError, match="level must be a float"):
            mix.interval(bad)
    with pytest.raises(ValueError, match="scale must be finite and > 0"):
        mix.affine(0.0, 0.0)
    with pytest.raises(ValueError, match="shift must be finite"):
        mix.affine(np.nan, 1.0)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="n_draws must be an int >= 1"):
            mix.sample(bad)


def test_metric_validation():
    mix = NormalMixture(np.zeros((2, 3)), np.ones((2, 3)))
    y = np.zeros(3)
    with pytest.raises(ValueError, match=r"y_true must have one value per predicted point \(3\)"):
        nll(np.zeros(4), mix)
    with pytest.raises(ValueError, match="y_true must be 1-D"):
        crps(np.zeros((3, 1)), mix)
    with pytest.raises(ValueError, match="y_true must be finite"):
        coverage([0.0, np.nan, 0.0], mix)
    with pytest.raises(TypeError, match="y_pred must be a NormalMixture"):
        crps(y, np.zeros(3))
    with pytest.raises(ValueError, match="y_pred must be 1-D"):
        rmse(y, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="y_true must have one value per predicted point"):
        rmse(np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match="must contain at least one value"):
        rmse([], [])
    with pytest.raises(ValueError, match="level must be a float"):
        coverage(y, mix, level=1.0)
    with pytest.raises(ValueError, match="level must be a float"):
        interval_width(mix, level=0.0)
    with pytest.raises(ValueError, match="level must be a float"):
        regression_report(y, mix, level=-1)
    for bad in (0, 2.0, "19"):
        with pytest.raises(ValueError, match="n_levels must be an int >= 1"):
            calibration_curve(y, mix, n_levels=bad)
    with pytest.raises(ValueError, match="levels must be a non-empty 1-D array"):
        calibration_curve(y, mix, levels=[0.5, 1.0])
    with pytest.raises(ValueError, match="norm must be"):
        calibration_error(y, mix, norm="l3")
    with pytest.raises(ValueError, match="std must be > 0"):
        gaussian_nll(y, 0.0, [1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match=r"mean must be a scalar or have shape \(3,\)"):
        gaussian_nll(y, np.zeros(2), 1.0)


# -- calibrated intervals --------------------------------------------------------------------


def _calibrated_interval(model, pits, coverage):
    lower, upper = calibrated_levels(pits, coverage)
    n = model.n_samples
    return model.ppf(np.full(n, lower)), model.ppf(np.full(n, upper))


def test_calibrated_levels_of_uniform_pits_are_the_nominal_ones():
    pits = np.arange(1, 1000) / 1000  # n = 999: ranks 50 and 950
    assert calibrated_levels(pits, 0.9) == pytest.approx((0.05, 0.95))
    assert calibrated_levels(pits[::-1].copy(), 0.5) == pytest.approx((0.25, 0.75))


@pytest.mark.parametrize(("what", "scale", "skew"), [
    ("too wide", 3.0, False), ("too narrow", 0.5, False), ("skewed errors", 1.0, True)])
def test_calibrated_intervals_hold_their_coverage_where_the_model_is_wrong(what, scale, skew):
    # The model says N(0, scale^2); the truth is N(0, 1) or a skewed law of mean 0, sd 1.
    rng = np.random.default_rng(0)

    def draw(n):
        return rng.exponential(size=n) - 1.0 if skew else rng.normal(size=n)

    def model(n):
        return NormalMixture(np.zeros((1, n)), np.full((1, n), scale))

    held_out, new = draw(2000), draw(50_000)
    pits = model(held_out.size).cdf(held_out)
    raw = coverage(new, model(new.size), 0.9)
    lower, upper = _calibrated_interval(model(new.size), pits, 0.9)
    inside = np.mean((new >= lower) & (new <= upper))
    assert inside == pytest.approx(0.9, abs=0.015), what
    if skew:  # the interval follows the errors' shape: further out above than below
        assert upper[0] > -lower[0] + 0.5
    else:  # the model's own interval is far off
        assert abs(raw - 0.9) > 0.09


@pytest.mark.parametrize(("n", "expected"), [(19, 18 / 20), (56, 52 / 57)])
def test_calibrated_levels_hold_coverage_on_average_over_held_out_draws(n, expected):
    # Split conformal's guarantee: a calibrated model's PITs are uniform, and a new value
    # falls between the l-th and h-th smallest of n with probability (h - l) / (n + 1).
    # n = 19: the 1st to the 19th, 0.9 exactly. n = 56 (UCI yacht's validation part): 52 of
    # the 57 places reach 0.9, the 5 left out split 2 below and 3 above (rounding each tail
    # on its own kept 53, 0.930).
    rng = np.random.default_rng(n)
    inside = []
    for _ in range(20_000):
        lower, upper = calibrated_levels(rng.uniform(size=n), 0.9)
        new = rng.uniform()
        inside.append(lower <= new <= upper)
    assert np.mean(inside) == pytest.approx(expected, abs=0.006)


def test_calibrated_levels_leave_out_as_many_ranks_as_the_guarantee_allows():
    pits = np.arange(1, 57) / 57
    assert calibrated_levels(pits, 0.9) == pytest.approx((2 / 57, 54 / 57))
    pits = np.arange(1, 20) / 20
    assert calibrated_levels(pits, 0.9) == pytest.approx((1 / 20, 19 / 20))


def test_calibrated_levels_are_nested_and_open_where_the_sample_is_too_small():
    pits = np.random.default_rng(2).uniform(size=300)
    for narrow, wide in ((0.5, 0.8), (0.8, 0.9), (0.9, 0.99)):
        (a, b), (c, d) = calibrated_levels(pits, narrow), calibrated_levels(pits, wide)
        assert c <= a < b <= d
    # 5 points cannot resolve a 90% interval: levels at the edge, quantiles still finite.
    lower, upper = calibrated_levels(np.linspace(0, 1, 5), 0.9)
    assert 0 < lower < 1e-11
    assert 1 - 1e-11 < upper < 1
    model = NormalMixture(np.zeros((1, 3)), np.ones((1, 3)))
    assert np.all(np.isfinite(_calibrated_interval(model, np.linspace(0, 1, 5), 0.9)))


def test_a_tiny_coverage_keeps_one_rank_inside():
    # ceil((n + 1) * 1e-11) was 0 ranks: an empty interval, below the coverage it promised.
    lower, upper = calibrated_levels(np.linspace(0.05, 0.95, 10), 1e-11)
    assert upper > lower


@pytest.mark.parametrize(("pits", "coverage", "message"), [
    (np.array([0.2, 1.5]), 0.9, r"pits must lie in \[0, 1\]; got values from 0.2 to 1.5"),
    (np.array([0.2, np.nan]), 0.9, r"pits must lie in \[0, 1\]; got 1 NaN value\(s\)"),
    (["a", "b"], 0.9, r"pits must be numbers in \[0, 1\]; got list with a value that is not "
                      r"one"),
    (np.array([0.5]), 0.9, r"pits must be a 1-D array of at least 2 values; got shape \(1,\)"),
    (np.full((3, 2), 0.5), 0.9, r"at least 2 values; got shape \(3, 2\)"),
    (np.full(10, 0.5), 1.0, r"coverage must be a float in \(0, 1\); got 1.0"),
    (np.full(10, 0.5), True, r"coverage must be a float in \(0, 1\); got True"),
])
def test_calibrated_levels_refuse_bad_input(pits, coverage, message):
    with pytest.raises(ValueError, match=message):
        calibrated_levels(pits, coverage)


def test_the_mean_s_squared_error_is_the_members_errors_less_their_spread():
    # The identity transfer_pits rests on, at every point, to float precision.
    rng = np.random.default_rng(3)
    mix = _random_mixture(rng)
    y = rng.normal(scale=3.0, size=mix.n_samples)
    members = mix.weights @ (y - mix.means) ** 2
    np.testing.assert_allclose((y - mix.mean) ** 2, members - mix.epistemic_var,
                               rtol=1e-10, atol=1e-10)


def _ensemble(rng, n, k, std_factor=1.0, rho=0.3):
    """``k`` networks whose mean errors share a part (correlation ``rho``) and whose stds are
    ``std_factor`` times calibrated: y ~ N(0, 1), each mean off by N(0, 1)."""
    y = rng.normal(size=n)
    shared = rng.normal(scale=np.sqrt(rho), size=n)
    means = shared + rng.normal(scale=np.sqrt(1 - rho), size=(k, n))
    return y, NormalMixture(means, np.full((k, n), np.sqrt(2.0) * std_factor))


@pytest.mark.parametrize(("held_networks", "networks", "std_factor"), [
    (1, 20, 1.0), (2, 20, 0.7), (2, 10, 1.4), (20, 2, 1.0), (20, 2, 0.7)])
def test_transferred_pits_calibrate_an_ensemble_of_more_or_fewer_networks(
        held_networks, networks, std_factor):
    # PITs measured on an ensemble of few networks calibrate one of many badly: the more
    # networks, the more their means average out their errors, while the mixture keeps
    # every network's variance and adds their spread. Moved by the spread, they hold.
    rng = np.random.default_rng(0)
    y_held, held = _ensemble(rng, 3000, held_networks, std_factor)
    _, target = _ensemble(rng, 2000, networks, std_factor)  # other points, no targets
    y_new, new = _ensemble(rng, 50_000, networks, std_factor)
    pits = held.cdf(y_held)
    moved = transfer_pits(pits, y_held, held, target)
    assert np.all(np.diff(moved) >= 0)
    raw = np.mean(_inside(y_new, _calibrated_interval(new, pits, 0.9)))
    inside = np.mean(_inside(y_new, _calibrated_interval(new, moved, 0.9)))
    assert inside == pytest.approx(0.9, abs=0.015)
    # Without the move, the levels were the held ensemble's (0.93-0.98 with fewer held
    # networks, 0.80-0.83 with more).
    assert abs(raw - 0.9) > max(0.03, 2 * abs(inside - 0.9))


def _inside(y, interval):
    return (y >= interval[0]) & (y <= interval[1])


def test_transfer_pits_leaves_an_ensemble_s_own_pits_where_they_are():
    rng = np.random.default_rng(4)
    y, held = _ensemble(rng, 500, 5)
    pits = held.cdf(y)
    np.testing.assert_allclose(transfer_pits(pits, y, held, held), np.sort(pits), rtol=1e-9)
    # narrow_only: towards fewer networks the PITs would move outwards; they stay.
    _, fewer = _ensemble(rng, 500, 1)
    assert np.mean(np.abs(transfer_pits(pits, y, held, fewer) - 0.5)) > np.mean(
        np.abs(pits - 0.5))
    np.testing.assert_allclose(transfer_pits(pits, y, held, fewer, narrow_only=True),
                               np.sort(pits), rtol=1e-9)


@pytest.mark.parametrize(("change", "error", "message"), [
    ({"held": "no"}, TypeError, "held must be a NormalMixture; got str"),
    ({"target": np.zeros(3)}, TypeError, "target must be a NormalMixture; got ndarray"),
    ({"y_held": np.zeros(7)}, ValueError, "got 10 PITs, 7 targets and 10 predictions"),
    ({"pits": np.full(10, 1.5)}, ValueError, r"pits must lie in \[0, 1\]"),
    ({"y_held": np.full(10, np.nan)}, ValueError, "y_held must be finite"),
    ({"narrow_only": "yes"}, TypeError, "narrow_only must be a bool; got 'yes'"),
])
def test_transfer_pits_refuses_bad_input(change, error, message):
    rng = np.random.default_rng(5)
    y, held = _ensemble(rng, 10, 3)
    args = {"pits": held.cdf(y), "y_held": y, "held": held, "target": held, **change}
    with pytest.raises(error, match=message):
        transfer_pits(**args)
