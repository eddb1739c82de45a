//! `http_server_config.headers`: the response headers the web config may add, as in
//! exporter-toolkit (README.md, TLS and basic auth), each checked and turned into a header the
//! server can send.

use axum::http::{HeaderName, HeaderValue};

/// The headers `http_server_config.headers` may set, as in exporter-toolkit.
const ALLOWED_HEADERS: [&str; 5] = [
    "Content-Security-Policy",
    "X-Frame-Options",
    "X-Content-Type-Options",
    "X-XSS-Protection",
    "Strict-Transport-Security",
];

/// The header `name: value`, or what is wrong with it.
pub(super) fn validate_header(
    name: &str,
    value: &str,
) -> Result<(HeaderName, HeaderValue), String> {
    let Some(canonical) = ALLOWED_HEADERS
        .iter()
        .find(|allowed| allowed.eq_ignore_ascii_case(name))
    else {
        return Err(format!(
            "not a header the web config may set; use one of {}",
            ALLOWED_HEADERS.join(", ")
        ));
    };
    let lower = value.trim().to_ascii_lowercase();
    match *canonical {
        "X-Frame-Options" if lower != "deny" && lower != "sameorigin" => {
            return Err("must be deny or sameorigin".to_owned());
        }
        "X-Content-Type-Options" if lower != "nosniff" => {
            return Err("must be nosniff".to_owned());
        }
        _ => {}
    }
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| "not a valid header value (visible ASCII only)".to_owned())?;
    Ok((HeaderName::from_static(canonical_lower(canonical)), value))
}

/// `HeaderName::from_static` wants lowercase.
fn canonical_lower(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}
