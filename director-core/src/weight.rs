//! A backend's weight: a real number, as Varnish's `add_backend(b, 10.0)` and `0.5`.
//!
//! The weighted schedulers (`wrr`, `random`, `hash`, `shard`; see [`crate::directors`]) give a
//! backend `weight / sum of weights` of the traffic. A [`Weight`] is finite and between 0 and
//! [`Weight::MAX`]; 0 means "no new balanced traffic" (HAProxy's weight 0), pinned requests
//! still reach it. The config file and the API accept integers (`10`) and reals (`10.0`,
//! `0.5`); a weight is written back as an integer when it is one (`10.0` becomes `10`, the same
//! value) and as a real otherwise, so a cluster file round-trips and the JSON documents show
//! `"weight": 10` as before.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A backend's weight: finite, `0..=Weight::MAX` (default 1).
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Weight(f64);

// === impl Weight ===

impl Weight {
    /// The largest weight: large enough for any ratio an operator means, small enough that a
    /// sum over thousands of backends stays exact in an `f64`.
    pub const MAX: f64 = 1_000_000.0;

    /// The default weight, 1.
    pub const ONE: Weight = Weight(1.0);

    /// `w` if it is a weight: finite and within `0..=Weight::MAX` (`-0.0` is 0).
    pub fn new(w: f64) -> Result<Weight, WeightError> {
        if !w.is_finite() {
            return Err(WeightError::NotFinite);
        }
        if w < 0.0 {
            return Err(WeightError::Negative);
        }
        if w > Self::MAX {
            return Err(WeightError::TooLarge);
        }
        // `-0.0 + 0.0` is `0.0`: one spelling of zero.
        Ok(Weight(w + 0.0))
    }

    /// The value.
    pub fn get(self) -> f64 {
        self.0
    }

    /// Whether the value is a whole number (written without a fraction).
    pub fn is_integral(self) -> bool {
        self.0.fract() == 0.0
    }
}

impl Default for Weight {
    fn default() -> Self {
        Weight::ONE
    }
}

impl From<u32> for Weight {
    fn from(w: u32) -> Self {
        Weight(f64::from(w).min(Self::MAX))
    }
}

impl fmt::Display for Weight {
    // Rust prints the shortest text that parses back to the same f64: `10`, `0.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Weight {
    type Err = WeightError;

    /// A decimal number: `10`, `10.0`, `0.5`, `.5`. Signs other than `-0`, exponents, `inf`
    /// and `NaN` are refused, so what an operator typed is what it means.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let decimal = !t.is_empty()
            && t.bytes().filter(|&b| b == b'.').count() <= 1
            && t.bytes().any(|b| b.is_ascii_digit())
            && t.strip_prefix('-')
                .unwrap_or(t)
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'.');
        if !decimal {
            return Err(WeightError::NotANumber);
        }
        Weight::new(t.parse::<f64>().map_err(|_| WeightError::NotANumber)?)
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.is_integral() {
            // Whole and at most MAX (< 2^53): exact as an integer.
            s.serialize_u64(self.0 as u64)
        } else {
            s.serialize_f64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Weight;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a weight: a number from 0 to {}", Weight::MAX)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Weight, E> {
                Weight::new(v).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                // Integers beyond 2^53 are far above MAX anyway.
                Weight::new(v as f64).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                Weight::new(v as f64).map_err(E::custom)
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Why a number is not a weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    /// Not a decimal number.
    #[error("a weight is a number such as 10, 10.0 or 0.5")]
    NotANumber,
    /// Infinite or NaN.
    #[error("a weight must be a finite number")]
    NotFinite,
    /// Below zero.
    #[error("a weight cannot be negative (0 takes the backend out of balancing)")]
    Negative,
    /// Above [`Weight::MAX`].
    #[error("a weight is at most 1000000")]
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_integers_and_reals() {
        for (text, value) in [
            ("10", 10.0),
            ("10.0", 10.0),
            ("0.5", 0.5),
            (".5", 0.5),
            ("0", 0.0),
        ] {
            assert_eq!(text.parse::<Weight>().unwrap().get(), value, "{text}");
        }
        assert_eq!("-0".parse::<Weight>().unwrap().to_string(), "0");
        assert_eq!("1000000".parse::<Weight>().unwrap().get(), Weight::MAX);
    }

    #[test]
    fn refuses_what_is_not_a_weight() {
        for (text, err) in [
            ("", WeightError::NotANumber),
            ("ten", WeightError::NotANumber),
            ("1e3", WeightError::NotANumber),
            ("inf", WeightError::NotANumber),
            ("NaN", WeightError::NotANumber),
            ("+1", WeightError::NotANumber),
            ("1.2.3", WeightError::NotANumber),
            (".", WeightError::NotANumber),
            ("-1", WeightError::Negative),
            ("-0.5", WeightError::Negative),
            ("1000000.5", WeightError::TooLarge),
        ] {
            assert_eq!(text.parse::<Weight>(), Err(err), "{text:?}");
        }
        assert_eq!(Weight::new(f64::NAN), Err(WeightError::NotFinite));
        assert_eq!(Weight::new(f64::INFINITY), Err(WeightError::NotFinite));
    }

    #[test]
    fn displays_integral_weights_without_a_fraction() {
        assert_eq!(Weight::new(10.0).unwrap().to_string(), "10");
        assert_eq!(Weight::new(0.5).unwrap().to_string(), "0.5");
        assert_eq!(Weight::new(0.1).unwrap().to_string(), "0.1");
    }

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct Doc {
        weight: Weight,
    }

    #[test]
    fn toml_round_trips_integers_as_integers_and_reals_as_reals() {
        for (text, written) in [
            ("weight = 10", "weight = 10\n"),
            ("weight = 10.0", "weight = 10\n"),
            ("weight = 0.5", "weight = 0.5\n"),
            ("weight = 0", "weight = 0\n"),
        ] {
            let doc: Doc = toml::from_str(text).unwrap();
            let out = toml::to_string(&doc).unwrap();
            assert_eq!(out, written, "{text}");
            assert_eq!(toml::from_str::<Doc>(&out).unwrap(), doc, "{text}");
        }
        for bad in [
            "weight = -1",
            "weight = -0.5",
            "weight = nan",
            "weight = inf",
            "weight = \"2\"",
        ] {
            assert!(toml::from_str::<Doc>(bad).is_err(), "{bad}");
        }
        let err = toml::from_str::<Doc>("weight = -1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be negative"), "{err}");
    }
}
