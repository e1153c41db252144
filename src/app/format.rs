//! How the studio writes numbers for people: thousands separators, SI prefixes, shapes, durations
//! and rates. Pure string functions with no egui, so they are tested like any other logic.

use std::time::Duration;

/// `1234567` -> `"1,234,567"`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// A count with an SI prefix and three significant digits: `1_234_567` -> `"1.23 M"`; counts
/// below 1000 are written in full.
pub fn si(n: u64) -> String {
    const UNITS: [(&str, f64); 4] = [("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)];
    let x = n as f64;
    for (unit, scale) in UNITS {
        if x >= scale {
            let v = x / scale;
            let decimals = if v >= 100.0 {
                0
            } else if v >= 10.0 {
                1
            } else {
                2
            };
            return format!("{v:.decimals$} {unit}");
        }
    }
    n.to_string()
}

/// `[1, 28, 28]` -> `"1×28×28"`; an empty shape is a scalar.
pub fn shape(dims: &[usize]) -> String {
    if dims.is_empty() {
        return "scalar".to_string();
    }
    dims.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join("×")
}

/// A duration as `m:ss`, or `h:mm:ss` from one hour on (rounded to the second).
pub fn clock(d: Duration) -> String {
    let s = d.as_secs_f64().round() as u64;
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Images per second, rounded: `12345.6` -> `"12,346 img/s"`.
pub fn images_per_s(rate: f64) -> String {
    if rate.is_finite() && rate >= 0.0 {
        format!("{} img/s", thousands(rate.round() as u64))
    } else {
        "– img/s".to_string()
    }
}

/// A fraction in 0..=1 as a percentage with two decimals: `0.98765` -> `"98.77 %"`.
pub fn percent(fraction: f64) -> String {
    format!("{:.2} %", fraction * 100.0)
}

/// A learning rate or other small number, compactly: `0.002` -> `"0.002"`, `0.00005` ->
/// `"5e-5"`, `0.00020926` -> `"2.09e-4"`.
pub fn small(x: f32) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        // Three significant digits, trailing zeros of the mantissa dropped: "2.09e-4", "5e-5".
        let s = format!("{x:.2e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mantissa = mantissa.trim_end_matches('0').trim_end_matches('.');
        format!("{mantissa}e{exp}")
    } else {
        let s = format!("{x:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(206_922), "206,922");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }

    #[test]
    fn si_keeps_three_significant_digits() {
        assert_eq!(si(999), "999");
        assert_eq!(si(1_000), "1.00 k");
        assert_eq!(si(12_345), "12.3 k");
        assert_eq!(si(1_234_567), "1.23 M");
        assert_eq!(si(456_000_000), "456 M");
        assert_eq!(si(2_500_000_000), "2.50 G");
    }

    #[test]
    fn shapes_and_clocks() {
        assert_eq!(shape(&[1, 28, 28]), "1×28×28");
        assert_eq!(shape(&[]), "scalar");
        assert_eq!(clock(Duration::from_secs(0)), "0:00");
        assert_eq!(clock(Duration::from_millis(65_400)), "1:05");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }

    #[test]
    fn rates_and_small_numbers() {
        assert_eq!(images_per_s(12_345.6), "12,346 img/s");
        assert_eq!(images_per_s(f64::NAN), "– img/s");
        assert_eq!(percent(0.98765), "98.77 %");
        assert_eq!(small(0.002), "0.002");
        assert_eq!(small(0.1), "0.1");
        assert_eq!(small(0.00005), "5e-5");
        assert_eq!(small(1.0), "1");
        assert_eq!(small(1e-4), "1e-4");
        assert_eq!(small(2.0925922e-4), "2.09e-4");
        assert_eq!(small(0.00154), "0.00154");
    }
}
