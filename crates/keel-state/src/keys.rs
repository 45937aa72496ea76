//! What a valid key is.

/// Longest key accepted, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 4096;

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is the empty string.
    #[error("key must not be empty")]
    Empty,
    /// The key is longer than [`MAX_KEY_LEN`] bytes.
    #[error("key is {0} bytes long; the limit is {MAX_KEY_LEN}")]
    TooLong(usize),
    /// The key contains a control character.
    #[error("key contains a control character at byte {0}")]
    ControlChar(usize),
}

/// Checks that `key` is non-empty, at most [`MAX_KEY_LEN`] bytes and free of control characters.
pub fn validate_key(key: &str) -> Result<(), KeyError> {
    if key.is_empty() {
        return Err(KeyError::Empty);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    if let Some((at, _)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(KeyError::ControlChar(at));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(validate_key(""), Err(KeyError::Empty));
        assert_eq!(validate_key("a/b/c"), Ok(()));
        assert_eq!(validate_key("é/ü"), Ok(()));
        assert_eq!(validate_key("a\nb"), Err(KeyError::ControlChar(1)));
        assert_eq!(
            validate_key(&"x".repeat(4097)),
            Err(KeyError::TooLong(4097))
        );
        assert_eq!(validate_key(&"x".repeat(4096)), Ok(()));
    }
}
