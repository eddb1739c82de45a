//! The error codes of the API as one table, and the bounded label sets of codes and statuses.
//!
//! Per code, one row says everything the monitor knows of it: its `code` label, the HTTP
//! statuses it is documented to arrive with (docs/LASTFM-API.md §1 and §2), whose fault it is,
//! and the condition it raises. The classifier, the exporter's label set and the blame model read
//! this one table, so a code is added or changed in one place.
//!
//! The table is a value, [`CodeTable`]: a target classifies with its service's table (Last.fm's,
//! Libre.fm's or ListenBrainz's: the `api` of the target) with the documented statuses its
//! configuration overrides. The `code` label set is
//! fixed at compile time from the rows, so no response can grow the metric set.

use crate::config::{Api, StatusTable};

use super::verdict::{Blame, Condition};

/// What an error code raises on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Raises {
    /// Nothing: the run's blame is all it means.
    Nothing,
    /// This condition, on any probe.
    Always(Condition),
    /// This condition, only on a probe signed with a session key (a bad session means nothing
    /// to a probe that sends none).
    WhenSigned(Condition),
}

/// One error code's row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code {
    /// The code in the payload.
    pub code: u32,
    /// Its name in Last.fm's documentation (docs/LASTFM-API.md §1), for sentences people read.
    pub name: &'static str,
    /// Its `code` label value; `None` for a code counted under `other`.
    pub label: Option<&'static str>,
    /// The HTTP statuses it is documented to arrive with; empty when none is documented, and
    /// then no status disagrees with it.
    pub statuses: &'static [u16],
    /// Whose fault a run that got it unexpectedly is.
    pub blame: Blame,
    /// What it raises.
    pub raises: Raises,
}

const fn row(
    code: u32,
    name: &'static str,
    label: Option<&'static str>,
    statuses: &'static [u16],
    blame: Blame,
    raises: Raises,
) -> Code {
    Code {
        code,
        name,
        label,
        statuses,
        blame,
        raises,
    }
}

/// Last.fm's codes (docs/LASTFM-API.md §1, §2). Errors 2, 8, 11 and 16 are Last.fm's own
/// failures; the rest are about our request, key, session or rate. A code not listed is blamed
/// on Last.fm and counted under `other`.
const LASTFM: [Code; 17] = {
    use Blame::{Client, Upstream};
    use Condition::{ApiKeyInvalid, ApiKeySuspended, RateLimited, ServiceOffline, SessionInvalid};
    use Raises::{Always, Nothing, WhenSigned};
    [
        row(
            2,
            "invalid service",
            Some("2"),
            &[],
            Upstream,
            Always(ServiceOffline),
        ),
        row(3, "invalid method", Some("3"), &[400], Client, Nothing),
        row(
            4,
            "authentication failed",
            Some("4"),
            &[403],
            Client,
            WhenSigned(SessionInvalid),
        ),
        row(5, "invalid format", Some("5"), &[400], Client, Nothing),
        row(
            6,
            "invalid parameters",
            Some("6"),
            &[400, 404],
            Client,
            Nothing,
        ),
        row(7, "invalid resource", Some("7"), &[], Client, Nothing),
        row(
            8,
            "operation failed",
            Some("8"),
            &[500, 503],
            Upstream,
            Nothing,
        ),
        row(
            9,
            "invalid session key",
            Some("9"),
            &[403],
            Client,
            WhenSigned(SessionInvalid),
        ),
        row(
            10,
            "invalid API key",
            Some("10"),
            &[403],
            Client,
            Always(ApiKeyInvalid),
        ),
        row(
            11,
            "service offline",
            Some("11"),
            &[503],
            Upstream,
            Always(ServiceOffline),
        ),
        row(
            13,
            "invalid method signature",
            Some("13"),
            &[400],
            Client,
            Nothing,
        ),
        // Token errors of the desktop auth flow: ours, but too rare for series of their own.
        row(14, "token not authorised", None, &[], Client, Nothing),
        row(15, "token expired", None, &[], Client, Nothing),
        row(
            16,
            "temporarily unavailable",
            Some("16"),
            &[503],
            Upstream,
            Nothing,
        ),
        row(17, "login required", Some("17"), &[403], Client, Nothing),
        row(
            26,
            "API key suspended",
            Some("26"),
            &[403],
            Client,
            Always(ApiKeySuspended),
        ),
        row(
            29,
            "rate limit exceeded",
            Some("29"),
            &[429],
            Client,
            Always(RateLimited),
        ),
    ]
};

/// The codes GNU FM and ListenBrainz's compatibility API share (docs/LASTFM-API.md,
/// "Compatible APIs"): every error comes with HTTP 200, so 200 is the documented status and no
/// mismatch; the rows are Last.fm's meanings. Neither sends 26 or 29 (no key suspension, and
/// ListenBrainz throttles with its own HTTP 429): one that comes anyway is blamed on the service.
const COMPAT: [Code; 11] = {
    use Blame::{Client, Upstream};
    use Condition::{ApiKeyInvalid, ServiceOffline, SessionInvalid};
    use Raises::{Always, Nothing, WhenSigned};
    const OK: &[u16] = &[200];
    [
        row(2, "invalid service", Some("2"), OK, Client, Nothing),
        row(3, "invalid method", Some("3"), OK, Client, Nothing),
        row(
            4,
            "authentication failed",
            Some("4"),
            OK,
            Client,
            WhenSigned(SessionInvalid),
        ),
        row(5, "invalid format", Some("5"), OK, Client, Nothing),
        row(6, "invalid parameters", Some("6"), OK, Client, Nothing),
        // GNU FM's answer to an unknown user, artist or track (Last.fm's is 6).
        row(7, "invalid resource", Some("7"), OK, Client, Nothing),
        row(8, "operation failed", Some("8"), OK, Upstream, Nothing),
        row(
            9,
            "invalid session key",
            Some("9"),
            OK,
            Client,
            WhenSigned(SessionInvalid),
        ),
        row(
            10,
            "invalid API key",
            Some("10"),
            OK,
            Client,
            Always(ApiKeyInvalid),
        ),
        row(
            11,
            "service offline",
            Some("11"),
            OK,
            Upstream,
            Always(ServiceOffline),
        ),
        row(
            13,
            "invalid method signature",
            Some("13"),
            OK,
            Client,
            Nothing,
        ),
    ]
};

/// GNU FM's codes: the shared ones and its radio subscription errors.
const LIBREFM: [Code; 13] = join(
    COMPAT,
    [
        // Named as Last.fm's retired radio API named them.
        row(
            12,
            "subscribers only",
            None,
            &[200],
            Blame::Client,
            Raises::Nothing,
        ),
        row(
            18,
            "trial expired",
            None,
            &[200],
            Blame::Client,
            Raises::Nothing,
        ),
    ],
);

/// ListenBrainz's compatibility errors: the shared ones, its token errors, and 16, which answers
/// a write sent with `GET` there (the request's fault, not an outage).
const LISTENBRAINZ: [Code; 13] = join(
    COMPAT,
    [
        row(
            14,
            "token not authorised",
            None,
            &[200],
            Blame::Client,
            Raises::Nothing,
        ),
        row(
            16,
            "temporarily unavailable",
            Some("16"),
            &[200],
            Blame::Client,
            Raises::Nothing,
        ),
    ],
);

/// `a` then `b`, at compile time.
const fn join<const A: usize, const B: usize, const N: usize>(
    a: [Code; A],
    b: [Code; B],
) -> [Code; N] {
    assert!(
        A + B == N,
        "the joined table's length is the sum of its parts"
    );
    let mut out = [row(0, "", None, &[], Blame::Upstream, Raises::Nothing); N];
    let mut i = 0;
    while i < A {
        out[i] = a[i];
        i += 1;
    }
    while i < N {
        out[i] = b[i - A];
        i += 1;
    }
    out
}

/// How many codes have a label of their own.
const LABELLED: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < LASTFM.len() {
        if LASTFM[i].label.is_some() {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The codes exported under their own label, in table order; anything else is `other`.
pub const KNOWN_CODES: [u32; LABELLED] = {
    let mut codes = [0; LABELLED];
    let (mut n, mut i) = (0, 0);
    while i < LASTFM.len() {
        if LASTFM[i].label.is_some() {
            codes[n] = LASTFM[i].code;
            n += 1;
        }
        i += 1;
    }
    codes
};

/// The `code` label values, in the order of [`KNOWN_CODES`], then `other`.
pub const CODE_LABELS: [&str; LABELLED + 1] = {
    let mut labels = ["other"; LABELLED + 1];
    let (mut n, mut i) = (0, 0);
    while i < LASTFM.len() {
        if let Some(label) = LASTFM[i].label {
            labels[n] = label;
            n += 1;
        }
        i += 1;
    }
    labels
};

/// The `code` label for an error code: itself when known, else `other`.
pub fn code_label(code: u32) -> &'static str {
    CODE_LABELS[code_index(code)]
}

/// A code's documented name ("service offline"), when Last.fm or a compatible service has the
/// code.
pub fn code_name(code: u32) -> Option<&'static str> {
    // The compatible services' rows carry Last.fm's meanings; only their own codes add names.
    LASTFM
        .iter()
        .chain(LIBREFM.iter())
        .chain(LISTENBRAINZ.iter())
        .find(|row| row.code == code)
        .map(|row| row.name)
}

/// Index into [`CODE_LABELS`].
pub fn code_index(code: u32) -> usize {
    KNOWN_CODES
        .iter()
        .position(|known| *known == code)
        .unwrap_or(KNOWN_CODES.len())
}

/// A service's error codes, with the documented statuses a target overrides: the classifier's
/// part of a service profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeTable {
    /// The service.
    api: Api,
    /// The rows, in code order.
    codes: Vec<Code>,
    /// The target's `documented_statuses`, which replace a row's statuses.
    overrides: StatusTable,
}

impl CodeTable {
    /// Last.fm's codes.
    pub fn lastfm() -> Self {
        Self::of(Api::Lastfm)
    }

    /// The codes of `api`'s service.
    pub fn of(api: Api) -> Self {
        let rows: &[Code] = match api {
            Api::Lastfm => &LASTFM,
            Api::Librefm => &LIBREFM,
            Api::Listenbrainz => &LISTENBRAINZ,
        };
        Self {
            api,
            codes: rows.to_vec(),
            overrides: StatusTable::default(),
        }
    }

    /// The service.
    pub fn api(&self) -> Api {
        self.api
    }

    /// Whether the service says how long to back off in `X-RateLimit-Reset-In` (seconds) rather
    /// than `Retry-After`: ListenBrainz does, on its own 429.
    pub fn reads_reset_in(&self) -> bool {
        self.api == Api::Listenbrainz
    }

    /// This table with the documented statuses of `overrides` in place of its own.
    #[must_use]
    pub fn with_statuses(mut self, overrides: &StatusTable) -> Self {
        self.overrides = overrides.clone();
        self
    }

    /// The row of `code`, when the service documents it.
    pub fn get(&self, code: u32) -> Option<&Code> {
        self.codes.iter().find(|row| row.code == code)
    }

    /// The statuses `code` is documented to arrive with; empty when none are.
    pub fn documented(&self, code: u32) -> &[u16] {
        self.overrides
            .get(code)
            .or_else(|| self.get(code).map(|row| row.statuses))
            .unwrap_or(&[])
    }

    /// Whose fault an unexpected `code` is; a code the table lacks is the service's.
    pub fn blame(&self, code: u32) -> Blame {
        self.get(code).map_or(Blame::Upstream, |row| row.blame)
    }

    /// The condition `code` raises on a probe, `signed` or not.
    pub fn raises(&self, code: u32, signed: bool) -> Option<Condition> {
        match self.get(code).map_or(Raises::Nothing, |row| row.raises) {
            Raises::Nothing => None,
            Raises::Always(condition) => Some(condition),
            Raises::WhenSigned(condition) => signed.then_some(condition),
        }
    }
}

/// HTTP statuses exported as themselves; others become their class.
const KNOWN_STATUSES: [(u16, &str); 16] = [
    (200, "200"),
    (201, "201"),
    (204, "204"),
    (301, "301"),
    (302, "302"),
    (304, "304"),
    (400, "400"),
    (401, "401"),
    (403, "403"),
    (404, "404"),
    (405, "405"),
    (429, "429"),
    (500, "500"),
    (502, "502"),
    (503, "503"),
    (504, "504"),
];

/// The classes a status outside [`KNOWN_STATUSES`] is exported as.
const STATUS_CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"];

/// Every `status` label value: the known statuses, then the classes.
pub const STATUS_LABELS: [&str; KNOWN_STATUSES.len() + STATUS_CLASSES.len()] = {
    let mut labels = [""; KNOWN_STATUSES.len() + STATUS_CLASSES.len()];
    let mut i = 0;
    while i < KNOWN_STATUSES.len() {
        labels[i] = KNOWN_STATUSES[i].1;
        i += 1;
    }
    let mut j = 0;
    while j < STATUS_CLASSES.len() {
        labels[i + j] = STATUS_CLASSES[j];
        j += 1;
    }
    labels
};

/// The `status` label for an HTTP status: itself when in the fixed list, else its class.
pub fn status_label(status: u16) -> &'static str {
    if let Some((_, label)) = KNOWN_STATUSES.iter().find(|(known, _)| *known == status) {
        return label;
    }
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    }
}
