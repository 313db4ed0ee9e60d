//! What `resource.ParseQuantity` (k8s.io/apimachinery v0.36.2) makes of a
//! quantity string, as far as go-spew can see it: the int64 fast path (with or
//! without the input string kept as the canonical form) and the `inf.Dec` path.

/// The `Format` a quantity keeps.
pub(super) const DECIMAL_SI: &str = "DecimalSI";
pub(super) const BINARY_SI: &str = "BinarySI";
pub(super) const DECIMAL_EXPONENT: &str = "DecimalExponent";

/// A parsed quantity, as its unexported fields hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Parsed {
    /// `i: int64Amount{value, scale}`, `d.Dec` nil, and `s` when the input was
    /// already canonical.
    Int {
        value: i64,
        scale: i32,
        kept: Option<String>,
        format: &'static str,
    },
    /// `d.Dec = &inf.Dec{unscaled: big.Int{neg, abs}, scale}`: `abs` is the
    /// magnitude in 64-bit words, least significant first (empty: a nil slice).
    Dec {
        neg: bool,
        abs: Vec<u64>,
        scale: i32,
        format: &'static str,
    },
}

/// The outcome: `None` where Go returns an error (Flagger's decode of the whole
/// object then fails). `exact` is false where the emulation gave up on a
/// pathological magnitude.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Outcome {
    pub parsed: Parsed,
    pub exact: bool,
}

/// The pieces `parseQuantityString` splits a quantity into.
struct Pieces<'a> {
    positive: bool,
    value: &'a [u8],
    num: &'a [u8],
    denom: &'a [u8],
    suffix: &'a [u8],
}

fn digit(b: u8) -> bool {
    b.is_ascii_digit()
}

/// Go's `parseQuantityString`, byte for byte: sign, leading zeros, numerator,
/// denominator, then a suffix (letters of "eEinumkKMGTP", an optional sign, digits).
fn split(s: &[u8]) -> Option<Pieces<'_>> {
    let end = s.len();
    let mut p = Pieces {
        positive: true,
        value: &[],
        num: &[],
        denom: &[],
        suffix: &[],
    };
    let mut pos = 0;
    if pos < end {
        match s[0] {
            b'-' => {
                p.positive = false;
                pos += 1;
            }
            b'+' => pos += 1,
            _ => {}
        }
    }
    // Leading zeros.
    loop {
        if pos >= end {
            p.num = b"0";
            p.value = b"0";
            return Some(p);
        }
        if s[pos] == b'0' {
            pos += 1;
        } else {
            break;
        }
    }
    // Numerator.
    let start = pos;
    let mut i = pos;
    loop {
        if i >= end {
            p.num = &s[start..end];
            p.value = &s[..end];
            return Some(p);
        }
        if !digit(s[i]) {
            p.num = &s[start..i];
            pos = i;
            break;
        }
        i += 1;
    }
    if p.num.is_empty() {
        p.num = b"0";
    }
    // Denominator.
    if pos < end && s[pos] == b'.' {
        pos += 1;
        let start = pos;
        let mut i = pos;
        loop {
            if i >= end {
                p.denom = &s[start..end];
                p.value = &s[..end];
                return Some(p);
            }
            if !digit(s[i]) {
                p.denom = &s[start..i];
                pos = i;
                break;
            }
            i += 1;
        }
    }
    p.value = &s[..pos];
    // Suffix.
    let suffix_start = pos;
    let mut i = pos;
    loop {
        if i >= end {
            p.suffix = &s[suffix_start..end];
            return Some(p);
        }
        if !b"eEinumkKMGTP".contains(&s[i]) {
            pos = i;
            break;
        }
        i += 1;
    }
    if pos < end && (s[pos] == b'-' || s[pos] == b'+') {
        pos += 1;
    }
    let mut i = pos;
    loop {
        if i >= end {
            p.suffix = &s[suffix_start..end];
            return Some(p);
        }
        if !digit(s[i]) {
            return None;
        }
        i += 1;
    }
}

/// The suffixer's `interpret`: (base, exponent, format).
fn interpret(suffix: &[u8]) -> Option<(u32, i32, &'static str)> {
    let dec = |e| Some((10, e, DECIMAL_SI));
    let bin = |e| Some((2, e, BINARY_SI));
    match suffix {
        b"" => dec(0),
        b"n" => dec(-9),
        b"u" => dec(-6),
        b"m" => dec(-3),
        b"k" => dec(3),
        b"M" => dec(6),
        b"G" => dec(9),
        b"T" => dec(12),
        b"P" => dec(15),
        b"E" => dec(18),
        b"Ki" => bin(10),
        b"Mi" => bin(20),
        b"Gi" => bin(30),
        b"Ti" => bin(40),
        b"Pi" => bin(50),
        b"Ei" => bin(60),
        [b'e' | b'E', rest @ ..] if !rest.is_empty() => {
            // strconv.ParseInt(rest, 10, 64), then int32(parsed).
            let text = std::str::from_utf8(rest).ok()?;
            let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
            if digits.is_empty() || !digits.bytes().all(digit) {
                return None;
            }
            let parsed: i64 = text.parse().ok()?;
            Some((10, parsed as i32, DECIMAL_EXPONENT))
        }
        _ => None,
    }
}

/// `resource.ParseQuantity(s)`.
pub(super) fn parse(s: &str) -> Option<Outcome> {
    let exact = |parsed| {
        Some(Outcome {
            parsed,
            exact: true,
        })
    };
    if s.is_empty() {
        return None;
    }
    if s == "0" {
        return exact(Parsed::Int {
            value: 0,
            scale: 0,
            kept: Some(s.to_string()),
            format: DECIMAL_SI,
        });
    }
    let p = split(s.as_bytes())?;
    let (base, exponent, format) = interpret(p.suffix)?;

    let digits = (p.num.len() + p.denom.len()) as i64;
    let mut mantissa: i64 = 1;
    let (precision, mut scale): (i64, i64) = match format {
        DECIMAL_EXPONENT | DECIMAL_SI => (18 - digits, i64::from(exponent)),
        _ if exponent >= 0 && p.denom.is_empty() => {
            mantissa = 1i64.checked_shl(exponent as u32).unwrap_or(0);
            // 15 - len(num) - int32(float32(exponent)*3/10) - 1
            let approx = (exponent as f32 * 3.0 / 10.0) as i64;
            (15 - p.num.len() as i64 - approx - 1, 0)
        }
        _ => (-1, 0),
    };

    if precision >= 0 {
        scale -= p.denom.len() as i64;
        if scale >= -9 {
            let mut shifted = Vec::with_capacity(p.num.len() + p.denom.len());
            shifted.extend_from_slice(p.num);
            shifted.extend_from_slice(p.denom);
            let value: i64 = std::str::from_utf8(&shifted).ok()?.parse().ok()?;
            if let Some(mut result) = int64_multiply(value, mantissa) {
                if !p.positive {
                    result = -result;
                }
                let canonical = match format {
                    BINARY_SI => exponent % 10 == 0 && value & 0x07 != 0,
                    _ => {
                        scale % 3 == 0
                            && !shifted.ends_with(b"000")
                            && shifted.first() != Some(&b'0')
                    }
                };
                return exact(Parsed::Int {
                    value: result,
                    scale: scale as i32,
                    kept: canonical.then(|| s.to_string()),
                    format,
                });
            }
        }
    }
    dec_path(p.value, base, exponent, format)
}

/// Go's `int64Multiply`: the product, or `None` on overflow.
fn int64_multiply(a: i64, b: i64) -> Option<i64> {
    if a == 0 || b == 0 || a == 1 || b == 1 {
        return Some(a.wrapping_mul(b));
    }
    if a == i64::MIN || b == i64::MIN {
        return None;
    }
    a.checked_mul(b)
}

/// Beyond this many decimal digits the emulation stops (Go would go on, with
/// numbers no pod template has).
const MAX_DIGITS: usize = 1000;

/// The `inf.Dec` path: the value (sign, digits, point) scaled by the suffix,
/// rounded up to nanos, capped for BinarySI.
fn dec_path(value: &[u8], base: u32, exponent: i32, format: &'static str) -> Option<Outcome> {
    // inf.Dec.SetString: an optional sign first, one optional point, digits.
    let (negative, body) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, value),
    };
    let mut digits: Vec<u8> = Vec::with_capacity(body.len());
    let mut point: Option<usize> = None;
    for &b in body {
        match b {
            b'.' if point.is_none() => point = Some(digits.len()),
            b'0'..=b'9' => digits.push(b - b'0'),
            _ => return None,
        }
    }
    if digits.is_empty() {
        return None;
    }
    let mut scale: i64 = point.map_or(0, |p| (digits.len() - p) as i64);
    let mut magnitude = Decimal::from_digits(digits);
    let mut format = format;
    let mut exact = true;

    if base == 10 {
        scale -= i64::from(exponent);
    } else {
        for _ in 0..exponent.max(0) {
            magnitude.double();
        }
    }
    let zero = magnitude.is_zero();
    if !zero {
        // Round(amount, 9, RoundUp): to scale 9, away from zero.
        let shift = 9 - scale;
        if shift.unsigned_abs() as usize > MAX_DIGITS {
            exact = false;
            magnitude = Decimal::from_digits(vec![1]);
        } else if shift >= 0 {
            magnitude.shift_left(shift as usize);
        } else {
            magnitude.shift_right_ceil((-shift) as usize);
        }
        scale = 9;
        if magnitude.len() > MAX_DIGITS {
            exact = false;
            magnitude = Decimal::from_digits(vec![1]);
        }
        if format == BINARY_SI {
            // The cap: 2^63-1 at scale 0.
            let max_at_nanos = Decimal::from_digits(
                b"9223372036854775807000000000"
                    .iter()
                    .map(|b| b - b'0')
                    .collect(),
            );
            if magnitude.cmp(&max_at_nanos) == std::cmp::Ordering::Greater {
                magnitude =
                    Decimal::from_digits(b"9223372036854775807".iter().map(|b| b - b'0').collect());
                scale = 0;
            } else if magnitude.len() <= 9 {
                // 0 < amount < 1
                format = DECIMAL_SI;
            }
        }
    }
    if i32::try_from(scale).is_err() {
        exact = false;
    }
    Some(Outcome {
        parsed: Parsed::Dec {
            neg: negative && !zero,
            abs: magnitude.words(),
            scale: scale as i32,
            format,
        },
        exact,
    })
}

/// An unsigned decimal integer, most significant digit first, no leading zeros
/// (zero: no digits).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decimal(Vec<u8>);

impl Decimal {
    fn from_digits(mut d: Vec<u8>) -> Self {
        let lead = d.iter().take_while(|&&x| x == 0).count();
        d.drain(..lead);
        Decimal(d)
    }

    fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn double(&mut self) {
        let mut carry = 0u8;
        for d in self.0.iter_mut().rev() {
            let v = *d * 2 + carry;
            *d = v % 10;
            carry = v / 10;
        }
        if carry > 0 {
            self.0.insert(0, carry);
        }
    }

    /// Times 10^n.
    fn shift_left(&mut self, n: usize) {
        if !self.is_zero() {
            self.0.extend(std::iter::repeat_n(0, n));
        }
    }

    /// Divided by 10^n, rounded up.
    fn shift_right_ceil(&mut self, n: usize) {
        let keep = self.0.len().saturating_sub(n);
        let remainder = self.0[keep..].iter().any(|&d| d != 0);
        self.0.truncate(keep);
        if remainder {
            self.add_one();
        }
    }

    fn add_one(&mut self) {
        for d in self.0.iter_mut().rev() {
            if *d == 9 {
                *d = 0;
            } else {
                *d += 1;
                return;
            }
        }
        self.0.insert(0, 1);
    }

    fn cmp(&self, other: &Decimal) -> std::cmp::Ordering {
        self.0
            .len()
            .cmp(&other.0.len())
            .then_with(|| self.0.cmp(&other.0))
    }

    /// Little-endian 64-bit words, as big.nat holds them on 64-bit platforms.
    fn words(&self) -> Vec<u64> {
        let mut words: Vec<u64> = Vec::new();
        for &d in &self.0 {
            let mut carry = u128::from(d);
            for w in words.iter_mut() {
                let v = u128::from(*w) * 10 + carry;
                *w = v as u64;
                carry = v >> 64;
            }
            if carry > 0 {
                words.push(carry as u64);
            }
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(value: i64, scale: i32, kept: Option<&str>, format: &'static str) -> Parsed {
        Parsed::Int {
            value,
            scale,
            kept: kept.map(str::to_string),
            format,
        }
    }

    fn p(s: &str) -> Parsed {
        parse(s).expect(s).parsed
    }

    #[test]
    fn fast_path_keeps_canonical_strings() {
        assert_eq!(p("0"), int(0, 0, Some("0"), DECIMAL_SI));
        assert_eq!(p("1m"), int(1, -3, Some("1m"), DECIMAL_SI));
        assert_eq!(p("100m"), int(100, -3, Some("100m"), DECIMAL_SI));
        assert_eq!(p("1000m"), int(1000, -3, None, DECIMAL_SI));
        assert_eq!(p("2"), int(2, 0, Some("2"), DECIMAL_SI));
        assert_eq!(p("512M"), int(512, 6, Some("512M"), DECIMAL_SI));
        assert_eq!(p("1Gi"), int(1 << 30, 0, Some("1Gi"), BINARY_SI));
        assert_eq!(p("16Mi"), int(16 << 20, 0, None, BINARY_SI));
        assert_eq!(p("7Ki"), int(7 << 10, 0, Some("7Ki"), BINARY_SI));
        assert_eq!(p("1.5m"), int(15, -4, None, DECIMAL_SI));
        assert_eq!(p("0.5"), int(5, -1, None, DECIMAL_SI));
        assert_eq!(p("-1"), int(-1, 0, Some("-1"), DECIMAL_SI));
        assert_eq!(p("1e3"), int(1, 3, Some("1e3"), DECIMAL_EXPONENT));
        assert_eq!(p("0m"), int(0, -3, None, DECIMAL_SI));
        assert_eq!(p("."), int(0, 0, None, DECIMAL_SI));
        // Corner cases, with what ParseQuantity v0.36.2 gives for them.
        assert_eq!(p("+"), int(0, 0, None, DECIMAL_SI));
        assert_eq!(p("-0"), int(0, 0, None, DECIMAL_SI));
        assert_eq!(p("-.Ki"), int(0, 0, None, BINARY_SI));
        assert_eq!(p("5."), int(5, 0, Some("5."), DECIMAL_SI));
        assert_eq!(p("00012"), int(12, 0, Some("00012"), DECIMAL_SI));
        assert_eq!(p("1e+3"), int(1, 3, Some("1e+3"), DECIMAL_EXPONENT));
        assert_eq!(p("1E3"), int(1, 3, Some("1E3"), DECIMAL_EXPONENT));
        assert_eq!(p("1e-9"), int(1, -9, Some("1e-9"), DECIMAL_EXPONENT));
        // int32(exponent) wraps.
        assert_eq!(
            p("1e4294967296"),
            int(1, 0, Some("1e4294967296"), DECIMAL_EXPONENT)
        );
        assert_eq!(
            p("123456789012345678"),
            int(
                123_456_789_012_345_678,
                0,
                Some("123456789012345678"),
                DECIMAL_SI
            )
        );
    }

    #[test]
    fn dec_path_rounds_to_nanos() {
        let dec = |neg, abs: &[u64], scale, format| Parsed::Dec {
            neg,
            abs: abs.to_vec(),
            scale,
            format,
        };
        assert_eq!(
            p("1.5Gi"),
            dec(false, &[1_610_612_736_000_000_000], 9, BINARY_SI)
        );
        assert_eq!(p("0.0000000000"), dec(false, &[], 10, DECIMAL_SI));
        assert_eq!(
            p("12345678901234567890"),
            dec(
                false,
                &[5_097_733_592_002_180_096, 669_260_594],
                9,
                DECIMAL_SI
            )
        );
        assert_eq!(p("8Ei"), dec(false, &[i64::MAX as u64], 0, BINARY_SI));
        assert_eq!(p("1e-10"), dec(false, &[1], 9, DECIMAL_EXPONENT));
        assert_eq!(p("0.3Ki"), dec(false, &[307_200_000_000], 9, BINARY_SI));
        assert_eq!(p("-1e-10"), dec(true, &[1], 9, DECIMAL_EXPONENT));
        assert_eq!(p("0.5Ki"), dec(false, &[512_000_000_000], 9, BINARY_SI));
        assert_eq!(p("0.0001Ki"), dec(false, &[102_400_000], 9, DECIMAL_SI));
        assert_eq!(
            p("100Ti"),
            dec(false, &[8_568_098_291_072_368_640, 5960], 9, BINARY_SI)
        );
        assert_eq!(p("1Ei"), dec(false, &[0, 62_500_000], 9, BINARY_SI));
        assert_eq!(p("0.0Ki"), dec(false, &[], 1, BINARY_SI));
        assert_eq!(p("-0.0000000001"), dec(true, &[1], 9, DECIMAL_SI));
        assert_eq!(
            p("1234567890123456789"),
            dec(
                false,
                &[7_888_470_988_684_038_656, 66_926_059],
                9,
                DECIMAL_SI
            )
        );
    }

    #[test]
    fn errors_are_errors() {
        for s in [
            "", "abc", "1ki", "1e", "1x", "1Mi5", "--1", "1 ", "é", "1e+", "-.e-10", "0x", "1.2.3",
        ] {
            assert_eq!(parse(s), None, "{s:?}");
        }
        let huge = parse("1e-2000000000").unwrap();
        assert!(!huge.exact);
    }
}
