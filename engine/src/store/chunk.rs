//! The on-disk encoding of a run of samples of one series.
//!
//! A byte-aligned take on Prometheus' Gorilla chunks: timestamps as zig-zag varint
//! delta-of-deltas (a regular interval costs one byte), values XOR-ed with the
//! previous value and stored without their zero leading and trailing bytes (an
//! unchanged value costs one byte). Byte alignment costs some density against
//! bit-packed Gorilla but keeps the code short and decoding fast. Written by hand
//! because no maintained crate offers a plain encode/decode of `(i64, f64)` runs.

/// Encodes `samples` (in time order) into a chunk.
pub fn encode(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(samples.len() * 3 + 16);
    put_varint(&mut out, samples.len() as u64);
    let (mut prev_ts, mut prev_delta, mut prev_bits) = (0i64, 0i64, 0u64);
    for (i, &(ts, v)) in samples.iter().enumerate() {
        if i == 0 {
            put_varint(&mut out, zigzag(ts));
        } else {
            let delta = ts.wrapping_sub(prev_ts);
            put_varint(&mut out, zigzag(delta.wrapping_sub(prev_delta)));
            prev_delta = delta;
        }
        prev_ts = ts;
        let bits = v.to_bits();
        let x = bits ^ prev_bits;
        prev_bits = bits;
        if x == 0 {
            out.push(0);
            continue;
        }
        let lead = (x.leading_zeros() / 8) as usize;
        let trail = (x.trailing_zeros() / 8) as usize;
        let len = 8 - lead - trail;
        // Header: high nibble = leading zero bytes, low nibble = meaningful bytes (1..=8).
        out.push(((lead as u8) << 4) | len as u8);
        let bytes = x.to_be_bytes();
        out.extend_from_slice(&bytes[lead..lead + len]);
    }
    out
}

/// Decodes a chunk; `None` when it is corrupt.
pub fn decode(data: &[u8]) -> Option<Vec<(i64, f64)>> {
    let mut pos = 0usize;
    let n = get_varint(data, &mut pos)? as usize;
    if n > data.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let (mut prev_ts, mut prev_delta, mut prev_bits) = (0i64, 0i64, 0u64);
    for i in 0..n {
        let z = unzigzag(get_varint(data, &mut pos)?);
        let ts = if i == 0 {
            z
        } else {
            prev_delta = prev_delta.wrapping_add(z);
            prev_ts.wrapping_add(prev_delta)
        };
        prev_ts = ts;
        let h = *data.get(pos)?;
        pos += 1;
        if h != 0 {
            let lead = (h >> 4) as usize;
            let len = (h & 0x0f) as usize;
            if len == 0 || lead + len > 8 {
                return None;
            }
            let mut bytes = [0u8; 8];
            bytes[lead..lead + len].copy_from_slice(data.get(pos..pos + len)?);
            pos += len;
            prev_bits ^= u64::from_be_bytes(bytes);
        }
        out.push((ts, f64::from_bits(prev_bits)));
    }
    Some(out)
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn regular_series_are_small() {
        let s: Vec<(i64, f64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 10_000, 42.0))
            .collect();
        let e = encode(&s);
        assert!(e.len() < 120 * 3, "{} bytes", e.len());
        assert_eq!(decode(&e).unwrap(), s);
    }

    #[test]
    fn special_values_round_trip() {
        let s = vec![
            (1, f64::NAN),
            (2, f64::INFINITY),
            (3, f64::NEG_INFINITY),
            (4, -0.0),
            (5, 1e-300),
        ];
        let d = decode(&encode(&s)).unwrap();
        assert!(d[0].1.is_nan());
        assert_eq!(d[1..], s[1..]);
        assert!(d[3].1.is_sign_negative());
    }

    #[test]
    fn corrupt_input_is_refused_not_panicked() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[5, 0]).is_none());
        assert!(decode(&[1, 2, 0x39]).is_none());
    }

    proptest! {
        #[test]
        fn round_trip(s in proptest::collection::vec((any::<i64>(), any::<u64>()), 0..200)) {
            let s: Vec<(i64, f64)> = s.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect();
            let d = decode(&encode(&s)).unwrap();
            prop_assert_eq!(d.len(), s.len());
            for (a, b) in d.iter().zip(&s) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&data);
        }
    }
}
