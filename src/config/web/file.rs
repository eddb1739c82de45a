//! The raw mirror of the web config's YAML: serde structs with `deny_unknown_fields`
//! (exporter-toolkit is strict too, so a typo fails the start), and [`from_yaml`], which turns
//! text into the mirror or one located syntax problem.
//!
//! Keys exporter-toolkit knows but this build refuses (inline `cert`/`key`, `cipher_suites`,
//! `rate_limit`, …) are read as `IgnoredAny`: named so they are refused by name (README.md,
//! TLS and basic auth), their values never kept. The mirror never leaves `web`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, Visitor};

use crate::config::problem::{ConfigError, Problem};

/// Parses web config text into the mirror; `None` for an empty file (or only comments), which
/// is valid and means "no TLS, no auth", as upstream. `origin` names the file in the error.
pub(super) fn from_yaml(text: &str, origin: &str) -> Result<Option<WebConfigFile>, ConfigError> {
    serde_norway::from_str(text).map_err(|err| {
        let location = err.location().map(|l| (l.line(), l.column()));
        let mut message = err.to_string();
        if let Some((line, column)) = location {
            // The location leads the line already.
            let suffix = format!(" at line {line} column {column}");
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        ConfigError::one(
            origin,
            Problem {
                line: location.map(|(line, _)| line),
                column: location.map(|(_, column)| column),
                context: String::new(),
                key: String::new(),
                message,
            },
        )
    })
}

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WebConfigFile {
    #[serde(default)]
    pub(super) tls_server_config: Option<TlsServerConfigFile>,
    #[serde(default)]
    pub(super) http_server_config: Option<HttpServerConfigFile>,
    #[serde(default)]
    pub(super) basic_auth_users: Option<Users>,
    #[serde(default)]
    pub(super) rate_limit: Option<IgnoredAny>,
}

/// `tls_server_config`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsServerConfigFile {
    #[serde(default)]
    pub(super) cert_file: Option<String>,
    #[serde(default)]
    pub(super) key_file: Option<String>,
    #[serde(default)]
    pub(super) client_auth_type: Option<String>,
    #[serde(default)]
    pub(super) client_ca_file: Option<String>,
    #[serde(default)]
    pub(super) min_version: Option<String>,
    #[serde(default)]
    pub(super) max_version: Option<String>,
    #[serde(default)]
    pub(super) prefer_server_cipher_suites: Option<bool>,
    // exporter-toolkit keys this build refuses by name; their values are never kept (an inline
    // `key` is a secret).
    #[serde(default)]
    pub(super) cert: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) key: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) client_ca: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) client_allowed_sans: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) cipher_suites: Option<IgnoredAny>,
    #[serde(default)]
    pub(super) curve_preferences: Option<IgnoredAny>,
}

/// `http_server_config`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpServerConfigFile {
    #[serde(default)]
    pub(super) http2: Option<bool>,
    #[serde(default)]
    pub(super) headers: Option<BTreeMap<String, String>>,
}

/// `basic_auth_users`, in file order, refusing a user listed twice (a plain map would keep
/// the last silently).
#[derive(Debug)]
pub(super) struct Users(pub(super) Vec<(String, String)>);

impl<'de> Deserialize<'de> for Users {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UsersVisitor;
        impl<'de> Visitor<'de> for UsersVisitor {
            type Value = Users;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of user names to bcrypt hashes")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Users, E> {
                Ok(Users(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Users, A::Error> {
                let mut users: Vec<(String, String)> = Vec::new();
                while let Some((user, hash)) = map.next_entry::<String, String>()? {
                    if users.iter().any(|(u, _)| *u == user) {
                        return Err(serde::de::Error::custom(format!(
                            "user {user:?} is listed twice in basic_auth_users"
                        )));
                    }
                    users.push((user, hash));
                }
                Ok(Users(users))
            }
        }
        deserializer.deserialize_map(UsersVisitor)
    }
}
