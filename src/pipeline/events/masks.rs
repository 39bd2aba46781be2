//! Column masks (`[tables."…".masks]`): what a captured text column shows instead of
//! its value.

use sha2::{Digest, Sha256, Sha512};

use crate::config::{HashAlgorithm, Mask};
use crate::model::value::Value;

/// Masks text values: a salted hash (hex), a fixed text, or the first N characters.
/// Masks only apply to text columns (the config check rejects others); NULLs stay NULL.
pub fn apply_masks(mut row: Vec<Value>, masks: &[Option<Mask>]) -> Vec<Value> {
    for (value, mask) in row.iter_mut().zip(masks) {
        let (Some(mask), Value::Text(text)) = (mask, &*value) else {
            continue;
        };
        let masked = match mask {
            Mask::Hash { algorithm, salt } => {
                let bytes: Vec<u8> = match algorithm {
                    HashAlgorithm::Sha256 => Sha256::new()
                        .chain_update(salt.expose())
                        .chain_update(text)
                        .finalize()
                        .to_vec(),
                    HashAlgorithm::Sha512 => Sha512::new()
                        .chain_update(salt.expose())
                        .chain_update(text)
                        .finalize()
                        .to_vec(),
                };
                bytes.iter().map(|b| format!("{b:02x}")).collect()
            }
            Mask::Fixed(fixed) => fixed.clone(),
            Mask::Truncate(n) => text.chars().take(*n).collect(),
        };
        *value = Value::Text(masked);
    }
    row
}
