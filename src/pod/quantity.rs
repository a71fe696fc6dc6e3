//! Kubernetes resource quantities (`64Mi`, `1G`, `500m`, `0.5`, `1e3`) and the Docker-style
//! memory sizes of `--memory` (`64m`, `1g`: binary units), as plain numbers.

use super::PodError;

fn bad(s: &str, what: &str) -> PodError {
    PodError::Invalid(format!("{what} {s:?}: expected a quantity such as 64Mi, 1G, 500m or 0.5"))
}

/// The value of a Kubernetes quantity (may be fractional: `500m` is 0.5).
pub fn parse(s: &str) -> Result<f64, PodError> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-')).unwrap_or(s.len());
    let (num, suffix) = s.split_at(split);
    // An exponent (1e3, 1E3) belongs to the number, not the suffix (E is exa).
    let (num, suffix) = match suffix.strip_prefix(['e', 'E']) {
        Some(exp) if !exp.is_empty() && exp.trim_start_matches(['+', '-']).chars().all(|c| c.is_ascii_digit()) => (s, ""),
        _ => (num, suffix),
    };
    let value: f64 = num.parse().map_err(|_| bad(s, "quantity"))?;
    let mult = match suffix {
        "" => 1.0,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        _ => return Err(bad(s, "quantity")),
    };
    if value < 0.0 || !value.is_finite() {
        return Err(bad(s, "quantity"));
    }
    Ok(value * mult)
}

/// The largest memory limit podbox sets: 4 EiB. The kernel counts limits in pages up to
/// LONG_MAX / PAGE_SIZE (~8 EiB) and reads anything above as "no limit", so a larger number
/// would silently mean none.
pub const MAX_MEMORY_BYTES: i64 = 1 << 62;

/// The largest CPU limit podbox sets, in thousandths of a CPU: a million CPUs. Its CFS quota
/// (100 000 µs × CPUs per 100 ms period) stays far below both i64 and the kernel's maximum
/// quota (2^44 µs), and the arithmetic on it cannot overflow.
pub const MAX_CPU_MILLIS: u64 = 1_000_000_000;

/// Bytes of a memory quantity; at least one page, since a smaller limit cannot be enforced.
pub fn memory_bytes(s: &str) -> Result<i64, PodError> {
    let b = parse(s)?.ceil();
    if b < 4096.0 {
        return Err(PodError::Invalid(format!("memory {s:?}: the limit must be at least 4Ki (one page)")));
    }
    if b > MAX_MEMORY_BYTES as f64 {
        return Err(PodError::Invalid(format!("memory {s:?}: larger than the kernel can limit (at most 4Ei); leave the limit out for none")));
    }
    Ok(b as i64)
}

/// `--memory`: Docker's units (b, k, m, g, t: binary, any case) or a Kubernetes quantity.
pub fn memory_flag(s: &str) -> Result<i64, PodError> {
    let t = s.trim();
    let docker = t.char_indices().last().and_then(|(i, c)| {
        let unit = match c.to_ascii_lowercase() {
            'b' => "",
            'k' => "Ki",
            'm' => "Mi",
            'g' => "Gi",
            't' => "Ti",
            _ => return None,
        };
        t[..i].chars().all(|d| d.is_ascii_digit() || d == '.').then(|| format!("{}{unit}", &t[..i]))
    });
    memory_bytes(docker.as_deref().unwrap_or(t))
}

/// Thousandths of a CPU (`500m` and `0.5` are both 500).
pub fn cpu_millis(s: &str) -> Result<u64, PodError> {
    let m = (parse(s)? * 1000.0).round();
    if m < 1.0 {
        return Err(PodError::Invalid(format!("cpu {s:?}: must be at least 1m (a thousandth of a CPU)")));
    }
    if m > MAX_CPU_MILLIS as f64 {
        return Err(PodError::Invalid(format!("cpu {s:?}: at most 1000000 CPUs; leave the limit out for none")));
    }
    Ok(m as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_quantities() {
        assert_eq!(memory_bytes("64Mi").unwrap(), 64 << 20);
        assert_eq!(memory_bytes("1G").unwrap(), 1_000_000_000);
        assert_eq!(memory_bytes("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(memory_bytes("128974848").unwrap(), 128_974_848);
        assert_eq!(memory_bytes("129e6").unwrap(), 129_000_000);
        assert_eq!(memory_bytes("1E").unwrap(), 1_000_000_000_000_000_000);
        assert_eq!(cpu_millis("500m").unwrap(), 500);
        assert_eq!(cpu_millis("0.5").unwrap(), 500);
        assert_eq!(cpu_millis("2").unwrap(), 2000);
        for bad in ["", "Mi", "1.2.3", "-1", "10X", "64mb", "1e"] {
            assert!(parse(bad).is_err() || memory_bytes(bad).is_err(), "{bad:?} accepted");
        }
        assert!(memory_bytes("100").is_err(), "below a page");
        assert!(cpu_millis("0.0001").is_err());
        // Numbers that overflowed into something else (a wrapped quota, "no limit").
        for big in ["184467440737.096", "1e30", "1000001"] {
            assert!(cpu_millis(big).is_err(), "cpu {big} accepted");
        }
        assert_eq!(cpu_millis("1000000").unwrap(), MAX_CPU_MILLIS);
        for big in ["1e100", "8Ei", "9223372036854775807"] {
            assert!(memory_bytes(big).is_err(), "memory {big} accepted");
        }
        assert!(memory_flag("1e100").is_err());
    }

    #[test]
    fn docker_memory_flags() {
        assert_eq!(memory_flag("64m").unwrap(), 64 << 20);
        assert_eq!(memory_flag("1G").unwrap(), 1 << 30);
        assert_eq!(memory_flag("32M").unwrap(), 32 << 20);
        assert_eq!(memory_flag("8192b").unwrap(), 8192);
        assert_eq!(memory_flag("64Mi").unwrap(), 64 << 20);
        assert_eq!(memory_flag("1000000").unwrap(), 1_000_000);
        assert!(memory_flag("lots").is_err());
    }
}
