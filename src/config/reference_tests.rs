//! `docs/config.md` against the [`Config`] struct, both ways: every key serde
//! accepts has a `### \`key\`` entry, and every entry is a key serde accepts;
//! tables (`[[listener]]`) the same with `#### \`table.key\`` entries. The
//! names come from serde itself (the field list a derived `Deserialize`
//! hands to `deserialize_struct`), so renames count as serde sees them.

use serde::de::{self, DeserializeOwned, Visitor};

use super::{Config, ListenerConfig};

/// The reference, as the test reads it.
const REFERENCE: &str = include_str!("../../docs/config.md");

/// The tables documented with `#### \`table.key\`` entries, and their keys.
/// A new table key (a `[[hook]]`, say) needs its struct added here.
fn tables() -> Vec<(&'static str, &'static [&'static str])> {
    vec![
        ("listener", field_names::<ListenerConfig>()),
        ("hook", field_names::<crate::policy::HookConfig>()),
        ("milter", field_names::<crate::policy::MilterConfig>()),
    ]
}

#[test]
fn every_config_key_is_documented_and_every_documented_key_exists() {
    let mut problems = Vec::new();
    let top = field_names::<Config>();
    let documented = headings("### ");
    compare(
        "Config (src/config/mod.rs)",
        top,
        &documented,
        &|key| format!("### `{key}`"),
        &mut problems,
    );
    let documented_nested = headings("#### ");
    let mut tables_seen = Vec::new();
    for (table, keys) in tables() {
        let prefix = format!("{table}.");
        let documented: Vec<String> = documented_nested
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix).map(str::to_owned))
            .collect();
        let owner = format!("the [[{table}]] table");
        compare(
            &owner,
            keys,
            &documented,
            &|key| format!("#### `{table}.{key}`"),
            &mut problems,
        );
        tables_seen.push(prefix);
    }
    for key in &documented_nested {
        if !tables_seen
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
        {
            problems.push(format!(
                "docs/config.md documents `#### {key}` but its table is not known to \
                 this test (add it to tables() in src/config/reference_tests.rs)"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/config.md and the Config struct disagree:\n  {}",
        problems.join("\n  ")
    );
}

/// Adds a line to `problems` for each key in one list and not the other.
fn compare(
    owner: &str,
    fields: &[&str],
    documented: &[String],
    heading: &dyn Fn(&str) -> String,
    problems: &mut Vec<String>,
) {
    for field in fields {
        if !documented.iter().any(|d| d == field) {
            problems.push(format!(
                "key `{field}` of {owner} is missing from docs/config.md \
                 (add a \"{}\" entry)",
                heading(field)
            ));
        }
    }
    for key in documented {
        if !fields.contains(&key.as_str()) {
            problems.push(format!(
                "docs/config.md has \"{}\" but {owner} has no such key \
                 (remove the entry, or add the field)",
                heading(key)
            ));
        }
    }
}

/// The backquoted names of the headings that start with `prefix`
/// (`### \`maildir\``).
fn headings(prefix: &str) -> Vec<String> {
    REFERENCE
        .lines()
        .filter_map(|line| line.strip_prefix(prefix))
        .filter_map(|rest| {
            let rest = rest.trim().strip_prefix('`')?;
            Some(rest.split('`').next()?.to_owned())
        })
        .collect()
}

#[test]
fn the_field_names_come_from_serde() {
    let names = field_names::<Config>();
    assert!(names.contains(&"maildir"), "{names:?}");
    // Renamed: the struct field is `listeners`, the key `listener`.
    assert!(names.contains(&"listener") && !names.contains(&"listeners"));
    assert_eq!(
        field_names::<ListenerConfig>(),
        ["address", "mode", "proxy_protocol"]
    );
    assert_eq!(
        headings("#### "),
        [
            "listener.address",
            "listener.mode",
            "listener.proxy_protocol",
            "hook.url",
            "hook.name",
            "hook.stages",
            "hook.timeout",
            "hook.on_error",
            "hook.headers",
            "hook.max_body",
            "hook.max_concurrency",
            "hook.tls_ca",
            "milter.address",
            "milter.name",
            "milter.default_action",
            "milter.connect_timeout",
            "milter.command_timeout",
            "milter.content_timeout",
            "milter.stages"
        ]
    );
}

/// The keys a derived `Deserialize` of a struct accepts.
fn field_names<T: DeserializeOwned>() -> &'static [&'static str] {
    let mut names = FieldNames(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// A deserializer that only records the field list it is asked for.
struct FieldNames(&'static [&'static str]);

impl<'de> de::Deserializer<'de> for &mut FieldNames {
    type Error = de::value::Error;

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}
