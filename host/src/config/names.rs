//! Names that reach Kafka and SQL: topics, tables, databases. Each is a type
//! that can only be made from a valid name, so a name checked once when the
//! pipeline is loaded stays checked. They deref to `str`, so code that reads
//! them needs no conversion.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// The extra column of an upsert sink's staging table: true for a delete,
/// false for an upsert. A mapper of such a sink may not declare it.
pub const DELETE_COLUMN: &str = "wasm_stream_delete";

/// Longest Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;
/// Longest PostgreSQL identifier.
pub const MAX_PG_IDENT_LEN: usize = 63;

/// Why a name is refused; the message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{name:?} must be 1 to {max} characters long")]
    Length { name: String, max: usize },
    #[error("{name:?} must start with a lowercase letter and hold only lowercase letters, digits{allowed}{suggestion}")]
    Characters {
        name: String,
        /// ", underscores and hyphens" or " and underscores".
        allowed: &'static str,
        /// ", e.g. \"fixed_name\"", or empty when no fix is obvious.
        suggestion: String,
    },
}

/// Checks a name used for a topic, table, database or consumer group: lowercase
/// letters, digits and underscores, starting with a letter. Topics, tables and
/// databases take no hyphens (`allow_hyphen = false`), so one name is valid in
/// Kafka and PostgreSQL alike; consumer groups and Aiven project and service
/// names may keep them.
pub fn check_name(name: &str, max_len: usize, allow_hyphen: bool) -> Result<(), NameError> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (allow_hyphen && c == '-');
    let allowed = if allow_hyphen {
        ", underscores and hyphens"
    } else {
        " and underscores"
    };
    if name.is_empty() || name.len() > max_len {
        return Err(NameError::Length {
            name: name.to_string(),
            max: max_len,
        });
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) || !name.chars().all(valid_char) {
        let fixed: String = name
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| match c {
                c if valid_char(c) => c,
                _ if allow_hyphen => '-',
                _ => '_',
            })
            .collect();
        let suggestion = if fixed.starts_with(|c: char| c.is_ascii_lowercase()) {
            format!(", e.g. {fixed:?}")
        } else {
            String::new()
        };
        return Err(NameError::Characters {
            name: name.to_string(),
            allowed,
            suggestion,
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The longest name this type takes.
            pub const MAX_LEN: usize = $max;

            /// The name, if it is valid.
            pub fn new(name: impl Into<String>) -> Result<Self, NameError> {
                let name = name.into();
                check_name(&name, $max, false)?;
                Ok(Self(name))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = NameError;
            fn try_from(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::new(name)
            }
        }

        impl From<$name> for String {
            fn from(name: $name) -> String {
                name.0
            }
        }

        impl From<&$name> for String {
            fn from(name: &$name) -> String {
                name.0.clone()
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }

        impl PartialEq<$name> for &str {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }
    };
}

name_type!(
    /// A Kafka topic name that is also a valid PostgreSQL identifier.
    TopicName,
    MAX_TOPIC_LEN
);
name_type!(
    /// A sink's table: a PostgreSQL identifier (quoted in SQL all the same).
    TableName,
    MAX_PG_IDENT_LEN
);
name_type!(
    /// The database of `postgres.url`.
    DatabaseName,
    MAX_PG_IDENT_LEN
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_taken_as_they_are() {
        let topic = TopicName::new("cars_2024").expect("valid");
        assert_eq!(topic, "cars_2024");
        assert_eq!(topic.len(), 9, "derefs to str");
        assert_eq!(topic.to_string(), "cars_2024");
        assert_eq!(String::from(topic.clone()), "cars_2024");
        assert_eq!("cars_2024".parse::<TopicName>(), Ok(topic));
        assert!(TableName::new("a").is_ok());
        assert!(DatabaseName::new("defaultdb").is_ok());
    }

    #[test]
    fn invalid_names_cannot_be_made_and_the_error_says_the_fix() {
        let e = TopicName::new("Cars-2024").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"Cars-2024\" must start with a lowercase letter and hold only lowercase letters, digits and underscores, e.g. \"cars_2024\""
        );
        let e = TableName::new("1cars").unwrap_err();
        assert_eq!(
            e.to_string(),
            "\"1cars\" must start with a lowercase letter and hold only lowercase letters, digits and underscores"
        );
        assert!(TableName::new("cars;drop table x").is_err());
        assert!(TableName::new("\"quoted\"").is_err());
        assert_eq!(
            DatabaseName::new("").unwrap_err(),
            NameError::Length {
                name: String::new(),
                max: MAX_PG_IDENT_LEN
            }
        );
    }

    #[test]
    fn lengths_are_bounded_by_kafka_and_postgresql() {
        assert!(TableName::new("a".repeat(63)).is_ok());
        let e = TableName::new("a".repeat(64)).unwrap_err();
        assert!(e.to_string().ends_with("must be 1 to 63 characters long"), "{e}");
        assert!(TopicName::new("a".repeat(249)).is_ok());
        assert!(TopicName::new("a".repeat(250)).is_err());
        assert_eq!(TopicName::MAX_LEN, 249);
    }

    #[test]
    fn groups_may_keep_hyphens_but_topics_may_not() {
        assert!(check_name("wasm-stream-cars", MAX_TOPIC_LEN, true).is_ok());
        let e = check_name("Wasm Stream", MAX_TOPIC_LEN, true).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("digits, underscores and hyphens, e.g. \"wasm-stream\""),
            "{e}"
        );
        assert!(TopicName::new("wasm-stream").is_err());
    }

    #[test]
    fn names_work_as_map_keys_looked_up_by_str() {
        let mut m = std::collections::HashMap::new();
        m.insert(TableName::new("cars").expect("valid"), 1);
        assert_eq!(m.get("cars"), Some(&1));
    }
}
