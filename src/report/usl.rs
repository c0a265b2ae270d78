//! The Universal Scalability Law fitted to a concurrency sweep: X(N) = λN / (1 + σ(N−1) + κN(N−1)), by
//! least squares (λ in closed form for each σ, κ; σ and κ by a shrinking pattern search from a grid), with
//! the concurrency of peak throughput and how well the curve fits. Pure arithmetic, no I/O.
//!
//! The `usl` crate (Coda Hale's) was not used: it panics when fewer than six points are given or when its
//! solver fails, and reports no goodness of fit.

use serde::{Deserialize, Serialize};

/// Below this R², the fit is said to be poor.
pub const GOOD_R_SQUARED: f64 = 0.9;
/// Fewer levels than this make any three-parameter fit a guess.
pub const ENOUGH_LEVELS: usize = 4;

/// The fitted law.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UslFit {
    /// Contention (σ): the share of the work that is serialized.
    pub sigma: f64,
    /// Coherency (κ): the cost of keeping the publishers in step, growing with N².
    pub kappa: f64,
    /// Throughput of one publisher (λ), publishes per second.
    pub lambda: f64,
    /// Coefficient of determination of the fitted throughputs against the measured ones.
    pub r_squared: f64,
    /// The concurrency of peak throughput, √((1−σ)/κ); `None` when κ is 0 (throughput never falls).
    pub peak_concurrency: Option<f64>,
    /// The throughput at `peak_concurrency`.
    pub peak_throughput: Option<f64>,
}

impl UslFit {
    /// Throughput the law predicts at concurrency `n`.
    pub fn throughput(&self, n: f64) -> f64 {
        model(self.sigma, self.kappa, self.lambda, n)
    }

    /// Why the fit should not be trusted, if it should not: too few levels, or R² below 0.9.
    pub fn warning(&self, levels: usize) -> Option<String> {
        if levels < ENOUGH_LEVELS {
            Some(format!(
                "only {levels} levels: a fit of three coefficients needs at least {ENOUGH_LEVELS}; \
                 sweep more levels before trusting it"
            ))
        } else if self.r_squared < GOOD_R_SQUARED || !self.r_squared.is_finite() {
            Some(format!(
                "poor fit (R² {:.3} < {GOOD_R_SQUARED}): the throughputs do not follow the law (noise, \
                 errors, or a limit the law does not describe); do not trust σ, κ or the peak",
                self.r_squared
            ))
        } else {
            None
        }
    }
}

fn model(sigma: f64, kappa: f64, lambda: f64, n: f64) -> f64 {
    lambda * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0))
}

/// The best λ for σ and κ (least squares has it in closed form: X is linear in λ) and the squared error.
fn best_lambda(points: &[(f64, f64)], sigma: f64, kappa: f64) -> (f64, f64) {
    let g = |n: f64| model(sigma, kappa, 1.0, n);
    let gg: f64 = points.iter().map(|&(n, _)| g(n) * g(n)).sum();
    let gx: f64 = points.iter().map(|&(n, x)| g(n) * x).sum();
    let lambda = if gg > 0.0 { gx / gg } else { 0.0 };
    let sse = points
        .iter()
        .map(|&(n, x)| (x - lambda * g(n)).powi(2))
        .sum();
    (lambda, sse)
}

/// Fits the law to `(concurrency, throughput)` points, with σ in [0, 1] and κ ≥ 0. `None` with fewer than
/// three distinct concurrencies or a throughput that is not a positive number.
pub fn fit(points: &[(f64, f64)]) -> Option<UslFit> {
    let mut distinct: Vec<f64> = points.iter().map(|p| p.0).collect();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() < 3
        || points
            .iter()
            .any(|&(n, x)| !(n >= 1.0 && n.is_finite() && x > 0.0 && x.is_finite()))
    {
        return None;
    }
    let sse = |s: f64, k: f64| best_lambda(points, s, k).1;
    // A coarse grid (κ on a log scale) picks the basin; a pattern search that halves its steps refines it.
    let mut best = (0.0, 0.0, sse(0.0, 0.0));
    for i in 0..=20 {
        let s = f64::from(i) / 20.0;
        for j in 0..=40 {
            let k = if j == 0 {
                0.0
            } else {
                10f64.powf(-8.0 + f64::from(j) * 0.2)
            };
            let e = sse(s, k);
            if e < best.2 {
                best = (s, k, e);
            }
        }
    }
    let (mut s, mut k, mut e) = best;
    let (mut ds, mut dk) = (0.05, k.max(1e-8));
    for _ in 0..20_000 {
        let mut moved = false;
        for (ts, tk) in [(s + ds, k), (s - ds, k), (s, k + dk), (s, k - dk)] {
            let (ts, tk) = (ts.clamp(0.0, 1.0), tk.max(0.0));
            let te = sse(ts, tk);
            if te < e {
                (s, k, e, moved) = (ts, tk, te, true);
            }
        }
        if !moved {
            ds /= 2.0;
            dk /= 2.0;
            if ds < 1e-12 && dk < 1e-15 {
                break;
            }
        }
    }
    let (lambda, sse) = best_lambda(points, s, k);
    let mean = points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64;
    let total: f64 = points.iter().map(|p| (p.1 - mean).powi(2)).sum();
    let r_squared = if total > 0.0 { 1.0 - sse / total } else { 1.0 };
    let peak_concurrency = (k > 0.0 && s < 1.0).then(|| ((1.0 - s) / k).sqrt());
    Some(UslFit {
        sigma: s,
        kappa: k,
        lambda,
        r_squared,
        peak_concurrency,
        peak_throughput: peak_concurrency.map(|n| model(s, k, lambda, n)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(sigma: f64, kappa: f64, lambda: f64, levels: &[f64]) -> Vec<(f64, f64)> {
        levels
            .iter()
            .map(|&n| (n, model(sigma, kappa, lambda, n)))
            .collect()
    }

    fn close(a: f64, b: f64, tolerance: f64) -> bool {
        (a - b).abs() <= tolerance * b.abs().max(1e-12)
    }

    #[test]
    fn recovers_known_coefficients_from_exact_points() {
        for (sigma, kappa, lambda) in [
            (0.05, 0.0002, 1000.0),
            (0.2, 0.01, 52_000.0),
            (0.02, 0.0, 800.0),
            (0.5, 0.001, 12.5),
        ] {
            let points = synthetic(
                sigma,
                kappa,
                lambda,
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            );
            let f = fit(&points).unwrap();
            assert!(close(f.sigma, sigma, 1e-3), "σ {} vs {sigma}", f.sigma);
            assert!(
                (f.kappa - kappa).abs() <= 1e-3 * kappa.max(1e-6),
                "κ {} vs {kappa}",
                f.kappa
            );
            assert!(close(f.lambda, lambda, 1e-3), "λ {} vs {lambda}", f.lambda);
            assert!(f.r_squared > 0.999_999, "R² {}", f.r_squared);
            assert_eq!(f.warning(7), None);
        }
    }

    #[test]
    fn the_peak_is_where_the_law_says() {
        let (sigma, kappa, lambda) = (0.1, 0.005, 2000.0);
        let f = fit(&synthetic(
            sigma,
            kappa,
            lambda,
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0],
        ))
        .unwrap();
        let n = ((1.0 - sigma) / kappa).sqrt();
        assert!(close(f.peak_concurrency.unwrap(), n, 1e-3));
        assert!(close(
            f.peak_throughput.unwrap(),
            model(sigma, kappa, lambda, n),
            1e-3
        ));
        let linear = fit(&synthetic(0.0, 0.0, 100.0, &[1.0, 2.0, 4.0, 8.0])).unwrap();
        assert_eq!(linear.peak_concurrency, None, "no coherency: no peak");
    }

    #[test]
    fn recovers_coefficients_from_noisy_points() {
        let (sigma, kappa, lambda) = (0.08, 0.002, 5000.0);
        let noise = [1.01, 0.99, 1.005, 0.995, 1.01, 0.99, 1.0];
        let points: Vec<(f64, f64)> = synthetic(
            sigma,
            kappa,
            lambda,
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
        )
        .into_iter()
        .zip(noise)
        .map(|((n, x), e)| (n, x * e))
        .collect();
        let f = fit(&points).unwrap();
        assert!(close(f.sigma, sigma, 0.3), "σ {}", f.sigma);
        assert!(close(f.kappa, kappa, 0.3), "κ {}", f.kappa);
        assert!(close(f.lambda, lambda, 0.05), "λ {}", f.lambda);
        assert!(f.r_squared > 0.99);
    }

    #[test]
    fn warns_on_a_poor_fit_and_on_too_few_levels() {
        let zigzag = [
            (1.0, 100.0),
            (2.0, 900.0),
            (4.0, 150.0),
            (8.0, 1000.0),
            (16.0, 120.0),
        ];
        let f = fit(&zigzag).unwrap();
        assert!(f.r_squared < GOOD_R_SQUARED, "R² {}", f.r_squared);
        assert!(f.warning(5).unwrap().contains("poor fit"));
        let three = fit(&synthetic(0.1, 0.01, 100.0, &[1.0, 2.0, 4.0])).unwrap();
        assert!(three.warning(3).unwrap().contains("only 3 levels"));
    }

    #[test]
    fn refuses_what_cannot_be_fitted() {
        assert_eq!(fit(&[(1.0, 10.0), (2.0, 20.0)]), None);
        assert_eq!(fit(&[(1.0, 10.0), (1.0, 11.0), (2.0, 20.0)]), None);
        assert_eq!(fit(&[(1.0, 10.0), (2.0, 0.0), (4.0, 30.0)]), None);
        assert_eq!(fit(&[(1.0, 10.0), (2.0, f64::NAN), (4.0, 30.0)]), None);
    }
}
