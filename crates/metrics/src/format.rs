//! Numbers and durations printed the way Flagger (Go) prints them, so event texts
//! match: `%v` of a float64 (`99`, `0.5`, `1e+06`) and a `time.Duration` built from
//! whole milliseconds (`1.515s`, `500ms`).

use std::time::Duration;

use serin_api::duration::format_duration;

/// Go's `%v` of a float64: the shortest digits that read back the same value, in
/// exponent form when the decimal exponent is below -4 or 6 and above (Go's
/// `strconv` 'g' rule for shortest precision).
pub fn go_float(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.515e3".
    let sci = format!("{:e}", v.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if v < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{exp_sign}{:02}", exp.abs());
    }
    let point = exp + 1; // digits before the decimal point
    let body = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (int, frac) = digits.split_at(point as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// `time.Duration(int64(ms)) * time.Millisecond` printed with Go's `String()`:
/// the fraction of a millisecond is dropped, as Flagger does.
pub fn go_millis(ms: f64) -> String {
    if !ms.is_finite() {
        return go_float(ms) + "ms";
    }
    // `as` saturates at the i64 range, where Go would overflow.
    let whole = ms.trunc() as i64;
    let text = format_duration(Duration::from_millis(whole.unsigned_abs()));
    if whole < 0 { format!("-{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        let cases = [
            (99.0, "99"),
            (1.0, "1"),
            (0.5, "0.5"),
            (99.95, "99.95"),
            (500.0, "500"),
            (123456.0, "123456"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (1e21, "1e+21"),
            (0.1 + 0.2, "0.30000000000000004"),
        ];
        for (v, want) in cases {
            assert_eq!(go_float(v), want, "{v}");
        }
    }

    #[test]
    fn millisecond_durations_like_go() {
        assert_eq!(go_millis(1515.7), "1.515s");
        assert_eq!(go_millis(500.0), "500ms");
        assert_eq!(go_millis(0.4), "0s");
        assert_eq!(go_millis(90_000.0), "1m30s");
        assert_eq!(go_millis(-20.0), "-20ms");
    }
}
