//! Per-packet mixing delay (SPEC §7: independent U[30 ms, 150 ms] per relay), with an
//! exponential ("Poisson mixing") option, plus the Kolmogorov–Smirnov statistic used to check
//! sampled and measured delays. Randomness is always an argument.

use rand_core::RngCore;
use std::time::Duration;

use crate::error::MixError;

/// The delay distribution a relay draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayDist {
    /// Uniform on `[min, max]`.
    Uniform {
        /// Lower bound.
        min: Duration,
        /// Upper bound.
        max: Duration,
    },
    /// Exponential with `mean` (memoryless, Poisson mixing), truncated at `cap`.
    Exponential {
        /// Mean delay.
        mean: Duration,
        /// Hard cap (keeps a path's total added delay bounded; SPEC §7 allows ≤ 600 ms total).
        cap: Duration,
    },
}

impl Default for DelayDist {
    fn default() -> Self {
        DelayDist::Uniform {
            min: Duration::from_millis(30),
            max: Duration::from_millis(150),
        }
    }
}

/// A uniform f64 in [0, 1) with 53 random bits.
fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

impl DelayDist {
    /// Checked constructor for the uniform case.
    pub fn uniform(min: Duration, max: Duration) -> Result<Self, MixError> {
        if min > max {
            return Err(MixError::BadDelayConfig("min delay exceeds max delay"));
        }
        if max > Duration::from_secs(2) {
            return Err(MixError::BadDelayConfig(
                "max delay above 2 s (relays buffer nothing longer than 2 s)",
            ));
        }
        Ok(DelayDist::Uniform { min, max })
    }

    /// Checked constructor for the exponential case.
    pub fn exponential(mean: Duration, cap: Duration) -> Result<Self, MixError> {
        if mean.is_zero() || cap < mean {
            return Err(MixError::BadDelayConfig(
                "exponential needs 0 < mean <= cap",
            ));
        }
        if cap > Duration::from_secs(2) {
            return Err(MixError::BadDelayConfig(
                "delay cap above 2 s (relays buffer nothing longer than 2 s)",
            ));
        }
        Ok(DelayDist::Exponential { mean, cap })
    }

    /// Draws one delay.
    pub fn sample(&self, rng: &mut impl RngCore) -> Duration {
        match *self {
            DelayDist::Uniform { min, max } => {
                let lo = min.as_nanos() as u64;
                let span = (max.as_nanos() as u64).saturating_sub(lo).saturating_add(1);
                // Lemire's multiply-shift: bias < span / 2^64, negligible.
                let off = ((u128::from(rng.next_u64()) * u128::from(span)) >> 64) as u64;
                Duration::from_nanos(lo + off)
            }
            DelayDist::Exponential { mean, cap } => {
                let u = unit(rng);
                let d = -mean.as_secs_f64() * (1.0 - u).ln();
                Duration::from_secs_f64(d.min(cap.as_secs_f64()))
            }
        }
    }

    /// Cumulative distribution function at `x` (seconds), for KS tests.
    pub fn cdf(&self, x_secs: f64) -> f64 {
        match *self {
            DelayDist::Uniform { min, max } => {
                let (a, b) = (min.as_secs_f64(), max.as_secs_f64());
                if x_secs < a {
                    0.0
                } else if x_secs >= b || b <= a {
                    1.0
                } else {
                    (x_secs - a) / (b - a)
                }
            }
            DelayDist::Exponential { mean, cap } => {
                if x_secs < 0.0 {
                    0.0
                } else if x_secs >= cap.as_secs_f64() {
                    1.0
                } else {
                    1.0 - (-x_secs / mean.as_secs_f64()).exp()
                }
            }
        }
    }
}

/// The one-sample Kolmogorov–Smirnov statistic `D_n` of `samples` against `cdf`.
pub fn ks_statistic(samples: &[f64], cdf: impl Fn(f64) -> f64) -> f64 {
    let mut s: Vec<f64> = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mut d: f64 = 0.0;
    for (i, x) in s.iter().enumerate() {
        let f = cdf(*x);
        let lo = f - i as f64 / n;
        let hi = (i + 1) as f64 / n - f;
        d = d.max(lo).max(hi);
    }
    d
}

/// Asymptotic KS critical value at significance 0.01: `1.628 / sqrt(n)`.
pub fn ks_critical_001(n: usize) -> f64 {
    1.628 / (n as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn uniform_passes_ks_and_stays_in_range() {
        let mut rng = StdRng::seed_from_u64(11);
        let d = DelayDist::default();
        let xs: Vec<f64> = (0..5000)
            .map(|_| {
                let s = d.sample(&mut rng);
                assert!(s >= Duration::from_millis(30) && s <= Duration::from_millis(150));
                s.as_secs_f64()
            })
            .collect();
        let ks = ks_statistic(&xs, |x| d.cdf(x));
        assert!(ks < ks_critical_001(xs.len()), "D = {ks}");
    }

    #[test]
    fn ks_rejects_wrong_distribution() {
        let mut rng = StdRng::seed_from_u64(12);
        let wrong =
            DelayDist::uniform(Duration::from_millis(30), Duration::from_millis(120)).unwrap();
        let xs: Vec<f64> = (0..2000)
            .map(|_| wrong.sample(&mut rng).as_secs_f64())
            .collect();
        let ks = ks_statistic(&xs, |x| DelayDist::default().cdf(x));
        assert!(ks > ks_critical_001(xs.len()), "D = {ks}");
    }

    #[test]
    fn exponential_passes_ks() {
        let mut rng = StdRng::seed_from_u64(13);
        let d = DelayDist::exponential(Duration::from_millis(90), Duration::from_secs(2)).unwrap();
        let xs: Vec<f64> = (0..5000)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .collect();
        let ks = ks_statistic(&xs, |x| d.cdf(x));
        assert!(ks < ks_critical_001(xs.len()), "D = {ks}");
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((mean - 0.09).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn config_checks() {
        assert!(DelayDist::uniform(Duration::from_millis(2), Duration::from_millis(1)).is_err());
        assert!(DelayDist::uniform(Duration::ZERO, Duration::from_secs(3)).is_err());
        assert!(DelayDist::exponential(Duration::ZERO, Duration::from_secs(1)).is_err());
    }
}
