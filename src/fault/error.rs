//! [`RuleError`]: why a rule was refused, naming the field.

/// Why a rule was refused: the field (or spec token) and the reason. Displayed as
/// `<field>: <reason>`, e.g. `probability: 1.5 is not between 0 and 1`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct RuleError {
    /// The field, e.g. `count` or `match.path`; in a spec, the token's key.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl RuleError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_displays_field_then_reason() {
        let e = RuleError::new("probability", "1.5 is not between 0 and 1");
        assert_eq!(e.to_string(), "probability: 1.5 is not between 0 and 1");
    }
}
