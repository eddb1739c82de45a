//! Last.fm request signing (`api_sig`), shared by the simulator's verifier and its tests.
//!
//! The rule (official `/api/authspec` §8): sort the parameters by name in byte order, drop `format`,
//! `callback` and `api_sig` itself, concatenate `<name><value>` without any encoding, append the
//! secret and send the lowercase hex MD5 of the UTF-8 string.

use md5::{Digest, Md5};

/// The `api_sig` Last.fm expects for `params` signed with `secret`.
pub fn api_sig(params: &[(&str, &str)], secret: &str) -> String {
    let mut signed: Vec<_> = params
        .iter()
        .filter(|(name, _)| !matches!(*name, "format" | "callback" | "api_sig"))
        .collect();
    signed.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut hasher = Md5::new();
    for (name, value) in signed {
        hasher.update(name.as_bytes());
        hasher.update(value.as_bytes());
    }
    hasher.update(secret.as_bytes());
    format!("{:x}", hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_get_session_vector_from_the_docs() {
        let params = [
            ("token", "YOUR_REQUESTED_TOKEN"),
            ("method", "auth.getSession"),
            ("api_key", "YOUR_API_KEY"),
        ];
        assert_eq!(
            api_sig(&params, "YOUR_SECRET"),
            "94539006de89b3c6b3c030bb1e52b9c4"
        );
    }

    #[test]
    fn track_love_vector_ignores_format_and_callback() {
        let params = [
            ("track", "RAINSICK"),
            ("sk", "YOUR_SESSION_KEY"),
            ("method", "track.love"),
            ("format", "json"),
            ("artist", "KITANO REM"),
            ("callback", "cb"),
            ("api_key", "YOUR_API_KEY"),
        ];
        assert_eq!(
            api_sig(&params, "YOUR_SECRET"),
            "800b8884b00c9343d1d425ed271e0f42"
        );
    }

    #[test]
    fn names_sort_by_bytes() {
        // "artist[10]" < "artist[1]" because '0' (0x30) < ']' (0x5d).
        let sig = api_sig(&[("artist[1]", "x"), ("artist[10]", "y")], "s");
        assert_eq!(sig, format!("{:x}", Md5::digest(b"artist[10]yartist[1]xs")));
    }
}
