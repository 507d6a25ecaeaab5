//! Validation of keys, prefixes and fan-in arguments, shared by every backend.
//!
//! A **key** is a relative, `/`-separated path of one or more segments. Each segment is
//! non-empty, is neither `.` nor `..`, is at most [`MAX_SEGMENT_LENGTH`] bytes, and uses only
//! `A-Z a-z 0-9 . _ = -`. The whole key is at most [`MAX_KEY_LENGTH`] bytes. These rules make
//! a key a safe file path (no escape from the store directory, no character a backend uses
//! for its own bookkeeping), a valid S3 object name and a plain Redis key.
//!
//! A **prefix** names a folder of keys: a valid key followed by `/`, such as `run-17/`. A key is
//! under a prefix when it starts with it, so `run1/` never matches `run10/x`. Listing also
//! accepts the empty prefix, meaning every key; deleting does not, so that no caller empties a
//! whole store by accident.
//!
//! A **fan-in member** is any non-empty text of at most [`MAX_MEMBER_LENGTH`] bytes without
//! control characters; the expected size of a fan-in set is at least one.
//!
//! Backends validate before touching storage, so an invalid argument never has an effect.

use crate::StoreError;

/// The longest key, in bytes.
pub const MAX_KEY_LENGTH: usize = 1024;

/// The longest key segment, in bytes (file systems cap a file name at 255 bytes, and a backend
/// may decorate a segment).
pub const MAX_SEGMENT_LENGTH: usize = 200;

/// The longest fan-in member, in bytes.
pub const MAX_MEMBER_LENGTH: usize = 1024;

/// Checks that `key` names an object; the error explains what is wrong.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("a key cannot be empty".to_owned()));
    }
    if key.len() > MAX_KEY_LENGTH {
        return Err(invalid(format!(
            "a key is at most {MAX_KEY_LENGTH} bytes; this one is {} bytes",
            key.len()
        )));
    }
    if key.starts_with('/') {
        return Err(invalid(
            "a key is a relative path and cannot start with '/'".to_owned(),
        ));
    }
    if key.ends_with('/') {
        return Err(invalid(
            "a key ending with '/' names a prefix, not an object".to_owned(),
        ));
    }
    for segment in key.split('/') {
        validate_segment(segment).map_err(invalid)?;
    }
    Ok(())
}

fn validate_segment(segment: &str) -> Result<(), String> {
    if segment.is_empty() {
        return Err("a key cannot contain an empty segment ('//')".to_owned());
    }
    if segment == "." || segment == ".." {
        return Err(format!("a key segment cannot be {segment:?}"));
    }
    if segment.len() > MAX_SEGMENT_LENGTH {
        return Err(format!(
            "a key segment is at most {MAX_SEGMENT_LENGTH} bytes; {segment:?} is {} bytes",
            segment.len()
        ));
    }
    if let Some(character) = segment
        .chars()
        .find(|character| !is_key_character(*character))
    {
        return Err(format!(
            "character {character:?} is not allowed; key segments use only A-Z a-z 0-9 . _ = -"
        ));
    }
    Ok(())
}

fn is_key_character(character: char) -> bool {
    character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '=' | '-')
}

/// Checks that `prefix` names a folder of keys (a valid key followed by `/`), or is empty when
/// `allow_empty` is set.
pub(crate) fn validate_prefix(prefix: &str, allow_empty: bool) -> Result<(), StoreError> {
    if prefix.is_empty() {
        if allow_empty {
            return Ok(());
        }
        return Err(StoreError::InvalidKey {
            key: String::new(),
            reason: "the prefix cannot be empty here: that would delete the whole store".to_owned(),
        });
    }
    let Some(folder) = prefix.strip_suffix('/') else {
        return Err(StoreError::InvalidKey {
            key: prefix.to_owned(),
            reason: "a prefix must end with '/'".to_owned(),
        });
    };
    if folder.ends_with('/') {
        return Err(StoreError::InvalidKey {
            key: prefix.to_owned(),
            reason: "a prefix cannot contain an empty segment ('//')".to_owned(),
        });
    }
    validate_key(folder).map_err(|error| match error {
        StoreError::InvalidKey { reason, .. } => StoreError::InvalidKey {
            key: prefix.to_owned(),
            reason,
        },
        other => other,
    })
}

/// Checks the arguments of a fan-in call.
pub(crate) fn validate_fan_in(key: &str, member: &str, expected: u32) -> Result<(), StoreError> {
    validate_key(key)?;
    let invalid = |reason: String| StoreError::InvalidFanIn {
        key: key.to_owned(),
        reason,
    };
    if expected == 0 {
        return Err(invalid(
            "the expected size of a fan-in set must be at least 1".to_owned(),
        ));
    }
    if member.is_empty() {
        return Err(invalid("a fan-in member cannot be empty".to_owned()));
    }
    if member.len() > MAX_MEMBER_LENGTH {
        return Err(invalid(format!(
            "a fan-in member is at most {MAX_MEMBER_LENGTH} bytes; this one is {} bytes",
            member.len()
        )));
    }
    if member.chars().any(char::is_control) {
        return Err(invalid(format!(
            "fan-in member {member:?} contains a control character"
        )));
    }
    Ok(())
}

/// The error for an add that would grow a fan-in set past its expected size.
pub(crate) fn fan_in_overflow(key: &str, member: &str, expected: u32) -> StoreError {
    StoreError::InvalidFanIn {
        key: key.to_owned(),
        reason: format!(
            "the set already has its {expected} expected members, so {member:?} cannot be added; \
             the expected size is wrong or the key is reused"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: Result<(), StoreError>) -> String {
        match result {
            Err(
                StoreError::InvalidKey { reason, .. } | StoreError::InvalidFanIn { reason, .. },
            ) => reason,
            other => panic!("expected an invalid-argument error, got {other:?}"),
        }
    }

    #[test]
    fn accepts_paths_of_allowed_characters() {
        for key in ["a", "run-1/task_2", "A.b=c-d/0/x.y", "...", ".hidden/x"] {
            validate_key(key).unwrap();
        }
        validate_key(&"a".repeat(MAX_SEGMENT_LENGTH)).unwrap();
    }

    #[test]
    fn rejections_explain_themselves() {
        assert!(reason(validate_key("")).contains("empty"));
        assert!(reason(validate_key("/a")).contains("relative"));
        assert!(reason(validate_key("a/")).contains("prefix"));
        assert!(reason(validate_key("a//b")).contains("empty segment"));
        assert!(reason(validate_key("a/./b")).contains("\".\""));
        assert!(reason(validate_key("../b")).contains("\"..\""));
        assert!(reason(validate_key("a b")).contains("' '"));
        assert!(reason(validate_key("caf\u{e9}")).contains("not allowed"));
        assert!(reason(validate_key(&"a".repeat(MAX_SEGMENT_LENGTH + 1))).contains("segment"));
        let long_key = vec!["a".repeat(100); 11].join("/");
        assert!(reason(validate_key(&long_key)).contains("1024"));
    }

    #[test]
    fn prefixes_end_with_a_slash() {
        validate_prefix("run1/", false).unwrap();
        validate_prefix("run1/stage/", false).unwrap();
        validate_prefix("", true).unwrap();
        assert!(reason(validate_prefix("", false)).contains("whole store"));
        assert!(reason(validate_prefix("run1", true)).contains("end with '/'"));
        assert!(reason(validate_prefix("/", true)).contains("empty"));
        assert!(reason(validate_prefix("a//", true)).contains("empty segment"));
    }

    #[test]
    fn fan_in_arguments_are_checked() {
        validate_fan_in("child", "parent-1", 3).unwrap();
        validate_fan_in("child", "('x', 0, 1)", 1).unwrap();
        assert!(reason(validate_fan_in("child", "parent", 0)).contains("at least 1"));
        assert!(reason(validate_fan_in("child", "", 1)).contains("empty"));
        assert!(reason(validate_fan_in("child", "a\nb", 1)).contains("control"));
        assert!(reason(validate_fan_in("child/", "a", 1)).contains("prefix"));
    }
}
