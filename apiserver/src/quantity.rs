//! Kubernetes resource quantities (`100m`, `128Mi`, `1.5`, `2e3`) as integers.

/// The quantity in thousandths (millicores for cpu, millibytes for memory).
pub fn milli(text: &str) -> Option<i128> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (number, exponent) = match suffix.strip_prefix(['e', 'E']) {
        Some(exponent) => (number, exponent.parse::<i32>().ok()?),
        None => (number, 0),
    };
    let suffix = if exponent != 0 || suffix.starts_with(['e', 'E']) { "" } else { suffix };
    let (scale, binary): (i32, Option<u32>) = match suffix {
        "n" => (-9, None),
        "u" => (-6, None),
        "m" => (-3, None),
        "" => (0, None),
        "k" => (3, None),
        "M" => (6, None),
        "G" => (9, None),
        "T" => (12, None),
        "P" => (15, None),
        "E" => (18, None),
        "Ki" => (0, Some(10)),
        "Mi" => (0, Some(20)),
        "Gi" => (0, Some(30)),
        "Ti" => (0, Some(40)),
        "Pi" => (0, Some(50)),
        "Ei" => (0, Some(60)),
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let negative = whole.starts_with('-');
    let digits = format!("{}{fraction}", whole.trim_start_matches(['+', '-']));
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut value: i128 = digits.parse().ok()?;
    // value * 10^(scale + exponent + 3 - fraction digits) * 2^binary
    let mut power = scale + exponent + 3 - fraction.len() as i32;
    if let Some(bits) = binary {
        value = value.checked_mul(1i128.checked_shl(bits)?)?;
    }
    while power > 0 {
        value = value.checked_mul(10)?;
        power -= 1;
    }
    while power < 0 {
        // Round up, as kube does for sub-milli amounts.
        value = (value + 9) / 10;
        power += 1;
    }
    Some(if negative { -value } else { value })
}

/// Whole units (bytes, pods), rounded up.
pub fn units(text: &str) -> Option<i128> {
    milli(text).map(|m| (m + 999).div_euclid(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t10_quantities_read_as_kube_reads_them() {
        assert_eq!(milli("100m"), Some(100));
        assert_eq!(milli("1"), Some(1000));
        assert_eq!(milli("1.5"), Some(1500));
        assert_eq!(units("128Mi"), Some(128 << 20));
        assert_eq!(units("1G"), Some(1_000_000_000));
        assert_eq!(units("2e3"), Some(2000));
        assert_eq!(milli("1n"), Some(1));
        assert_eq!(milli("abc"), None);
        assert_eq!(milli("5Zi"), None);
    }
}
