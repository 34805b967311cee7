//! Durations (`"500ms"`, `"2s"`, `"1h30m"`) and sizes (`"16MiB"`) as written in config files.

use std::time::Duration;

const DURATION_UNITS: [(&str, u64); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Parses `"2s"`, `"500ms"`, `"1h30m"`: one or more `<integer><unit>` parts.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration {text:?}: expected a number with a unit (ns, us, ms, s, m, h, d) like \"2s\""
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let number: u64 = rest
            .get(..digits)
            .and_then(|d| d.parse().ok())
            .ok_or_else(bad)?;
        rest = rest.get(digits..).unwrap_or("");
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = rest.get(..unit_len).unwrap_or("");
        let (_, nanos) = DURATION_UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .ok_or_else(bad)?;
        let part = number.checked_mul(*nanos).ok_or_else(bad)?;
        total = total.checked_add(part).ok_or_else(bad)?;
        rest = rest.get(unit_len..).unwrap_or("");
    }
    Ok(Duration::from_nanos(total))
}

/// Renders a duration in the largest unit that keeps it exact (`"2s"`, `"1800ms"`).
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    for (unit, size) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
        if nanos.is_multiple_of(size) {
            return format!("{}{unit}", nanos / size);
        }
    }
    format!("{nanos}ns")
}

const SIZE_UNITS: [(&str, u64); 8] = [
    ("", 1),
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
];

/// Parses a byte size: `"16MiB"`, `"512KiB"`, `"1GB"`, `"4096"`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "invalid size {text:?}: expected a number with a unit (B, KiB, MiB, GiB, KB, MB, GB) like \"16MiB\""
        )
    };
    let text_trim = text.trim();
    let digits = text_trim
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text_trim.len());
    let number: u64 = text_trim
        .get(..digits)
        .and_then(|d| d.parse().ok())
        .ok_or_else(bad)?;
    let unit = text_trim.get(digits..).unwrap_or("").trim();
    let (_, mult) = SIZE_UNITS
        .iter()
        .find(|(u, _)| *u == unit)
        .ok_or_else(bad)?;
    number.checked_mul(*mult).ok_or_else(bad)
}

/// Renders a byte size in the largest binary unit that keeps it exact.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes != 0 && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        let cases: [(&str, Option<Duration>); 12] = [
            ("2s", Some(ms(2000))),
            ("500ms", Some(ms(500))),
            ("1h", Some(ms(3_600_000))),
            ("1h30m", Some(ms(5_400_000))),
            ("1800ms", Some(ms(1800))),
            ("0s", Some(ms(0))),
            ("10us", Some(Duration::from_micros(10))),
            ("2", None),
            ("s", None),
            ("", None),
            ("2 s", None),
            ("1.5s", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text:?}");
        }
    }

    #[test]
    fn durations_round_trip() {
        for d in [
            0,
            1,
            999,
            1000,
            1_500_000,
            2_000_000_000,
            3_600_000_000_000u64,
        ] {
            let d = Duration::from_nanos(d);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }

    #[test]
    fn sizes() {
        let cases: [(&str, Option<u64>); 9] = [
            ("16MiB", Some(16 << 20)),
            ("512KiB", Some(512 << 10)),
            ("1GiB", Some(1 << 30)),
            ("1MB", Some(1_000_000)),
            ("4096", Some(4096)),
            ("10B", Some(10)),
            ("16 MiB", Some(16 << 20)),
            ("16mb", None),
            ("MiB", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_size(text).ok(), want, "{text:?}");
        }
        for b in [0, 1, 1024, 16 << 20, 3 << 30, 1_000_000] {
            assert_eq!(parse_size(&format_size(b)), Ok(b));
        }
    }
}
