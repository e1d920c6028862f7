//! Short content hashes: of plugin files and pipeline files (to tell versions
//! apart in logs and status), and of long table names (index names).

/// A short, stable hash of some bytes (FNV-1a, 64 bits), for logs and names.
pub fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}
