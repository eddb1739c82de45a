//! The judgement of a write-path canary's steps and of its whole run: pure functions from the
//! step's verdict and body to what the write meant (accepted, ignored, refused) and whether a
//! read-back saw the play; then one [`CanaryResult`] and whose fault it is.
//!
//! A write is first judged like any probe's request (`classify`); only a success payload is then
//! read for its own meaning, because Last.fm answers "ignored" with `200` and `status="ok"`
//! (docs/LASTFM-API.md, "The write path"). A read-back that answers with another account's plays
//! is a failed check, never a sighting.

use super::verdict::{Blame, Classification, Outcome};
use super::write::{RateLimitScope, read_recent_tracks, read_write_answer};
use crate::config::Format;
use crate::config::closed_set::closed_set;

closed_set! {
    /// How a canary run ended (README.md, "The write path").
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum CanaryResult {
        /// The write was accepted and the read-back saw the play within `visible_within`.
        Visible => "visible",
        /// The write was accepted; the read-back answered but never showed the play in time.
        NotVisible => "not_visible",
        /// The write was answered `ignored`, with an ignore code.
        Ignored => "ignored",
        /// The write was refused with an API error.
        Rejected => "rejected",
        /// No usable answer: to the write, or from any read-back poll.
        Failed => "failed",
        /// The write was accepted and the service offers no read-back (ListenBrainz's
        /// compatibility API): as far as it can be seen, the write path works.
        Accepted => "accepted",
    }
}

closed_set! {
    /// The `code` label of an ignored write: Last.fm's five documented ignore codes, and the rest.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum IgnoredCode {
        /// Artist ignored (filtered).
        ArtistFiltered => "1",
        /// Track ignored (filtered).
        TrackFiltered => "2",
        /// Timestamp too old.
        TooOld => "3",
        /// Timestamp too new.
        TooNew => "4",
        /// Daily scrobble limit exceeded.
        DailyLimit => "5",
        /// Any other code.
        Other => "other",
    }
}

impl IgnoredCode {
    /// The label of ignore code `code`.
    pub fn of(code: u32) -> Self {
        match code {
            1 => Self::ArtistFiltered,
            2 => Self::TrackFiltered,
            3 => Self::TooOld,
            4 => Self::TooNew,
            5 => Self::DailyLimit,
            _ => Self::Other,
        }
    }

    /// Whose fault an ignored write is: the filter codes (and unknown ones) are Last.fm's; a
    /// timestamp out of range is our clock's, the daily limit our own volume.
    pub fn blame(self) -> Blame {
        match self {
            Self::ArtistFiltered | Self::TrackFiltered | Self::Other => Blame::Upstream,
            Self::TooOld | Self::TooNew | Self::DailyLimit => Blame::Client,
        }
    }

    /// Whether the ignore says the write path is broken (`scrobbles_ignored`): codes 1 and 2,
    /// which Last.fm answered for every play during an incident.
    pub fn is_filter(self) -> bool {
        matches!(self, Self::ArtistFiltered | Self::TrackFiltered)
    }
}

/// What a write's answer meant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteJudgement {
    /// The play was accepted: read back.
    Accepted,
    /// The play was ignored, with this `ignoredMessage` code (0 when the answer gave none).
    Ignored(u32),
    /// An API error answered the write.
    Rejected,
    /// No usable answer.
    Failed,
}

/// Judges a write from its verdict and, for a success, its body. The verdict comes back changed
/// when a success payload is not a write's answer (`check_failed`, Last.fm's fault).
pub fn judge_write(
    verdict: Classification,
    format: Format,
    body: Option<&[u8]>,
) -> (Classification, WriteJudgement) {
    if verdict.outcome != Outcome::Success {
        let judgement = if verdict.outcome == Outcome::ApiError {
            WriteJudgement::Rejected
        } else {
            WriteJudgement::Failed
        };
        return (verdict, judgement);
    }
    match read_write_answer(format, body.unwrap_or_default()) {
        Ok(answer) if answer.ignored > 0 || answer.ignored_code.is_some() => (
            verdict,
            WriteJudgement::Ignored(answer.ignored_code.unwrap_or(0)),
        ),
        Ok(answer) if answer.accepted > 0 => (verdict, WriteJudgement::Accepted),
        Ok(_) => (
            failed_check(
                verdict,
                "the write's answer accepted no play and ignored none",
            ),
            WriteJudgement::Failed,
        ),
        Err(why) => (
            failed_check(verdict, &format!("not a write's answer: {why}")),
            WriteJudgement::Failed,
        ),
    }
}

/// The play a read-back looks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The canary account.
    pub user: &'a str,
    /// The artist written.
    pub artist: &'a str,
    /// The track written.
    pub track: &'a str,
    /// A scrobble's timestamp; `None` for a now-playing write, found as the entry marked
    /// `nowplaying`.
    pub timestamp: Option<i64>,
}

/// What one read-back poll showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sight {
    /// The account's recent tracks, with the play.
    Seen,
    /// The account's recent tracks, without the play (yet).
    NotYet,
    /// No usable answer (a failure, or someone else's tracks).
    Unusable,
}

/// Judges one read-back poll. The verdict comes back changed when a success payload is not
/// the canary account's recent tracks (`check_failed`, Last.fm's fault).
pub fn judge_read(
    verdict: Classification,
    format: Format,
    body: Option<&[u8]>,
    wanted: Wanted<'_>,
) -> (Classification, Sight) {
    if verdict.outcome != Outcome::Success {
        return (verdict, Sight::Unusable);
    }
    let recent = match read_recent_tracks(format, body.unwrap_or_default()) {
        Ok(recent) => recent,
        Err(why) => {
            let why = format!("not a recent-tracks answer: {why}");
            return (failed_check(verdict, &why), Sight::Unusable);
        }
    };
    match recent.user.as_deref() {
        Some(user) if user.eq_ignore_ascii_case(wanted.user) => {}
        other => {
            let whose = other.map_or_else(|| "no user".to_owned(), |u| format!("user {u:?}"));
            let why = format!(
                "the recent tracks are of {whose}, not of the canary account {:?}",
                wanted.user
            );
            return (failed_check(verdict, &why), Sight::Unusable);
        }
    }
    let seen = recent.entries.iter().any(|entry| {
        let same_play = entry.artist.eq_ignore_ascii_case(wanted.artist)
            && entry.track.eq_ignore_ascii_case(wanted.track);
        match wanted.timestamp {
            None => entry.now_playing && same_play,
            Some(at) => entry.uts == Some(at) && same_play,
        }
    });
    (verdict, if seen { Sight::Seen } else { Sight::NotYet })
}

/// A success payload that is not what the step needs.
fn failed_check(verdict: Classification, why: &str) -> Classification {
    Classification {
        outcome: Outcome::CheckFailed,
        detail: Some(why.to_owned()),
        blame: Some(Blame::Upstream),
        met_expectation: false,
        api_healthy: false,
        ..verdict
    }
}

/// Whose fault a run's result is: none for `visible`; an invisible play and a filter ignore are
/// Last.fm's; our clock, our volume and a user-scoped rate limit are ours; otherwise the blame
/// of the step that failed.
pub fn canary_blame(
    result: CanaryResult,
    ignored: Option<IgnoredCode>,
    scope: Option<RateLimitScope>,
    step_blame: Option<Blame>,
) -> Option<Blame> {
    match result {
        CanaryResult::Visible | CanaryResult::Accepted => None,
        CanaryResult::NotVisible => Some(Blame::Upstream),
        CanaryResult::Ignored => Some(ignored.map_or(Blame::Upstream, IgnoredCode::blame)),
        CanaryResult::Rejected if scope == Some(RateLimitScope::User) => Some(Blame::Client),
        CanaryResult::Rejected | CanaryResult::Failed => step_blame,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_PLAYING: &str = r##"{"nowplaying":{"artist":{"corrected":"0","#text":"lastfm-monitor"},"track":{"corrected":"0","#text":"canary"},"ignoredMessage":{"code":"0","#text":""}}}"##;

    fn wanted(timestamp: Option<i64>) -> Wanted<'static> {
        Wanted {
            user: "Canary",
            artist: "lastfm-monitor",
            track: "canary",
            timestamp,
        }
    }

    #[test]
    fn an_accepted_write_an_ignored_one_and_an_error() {
        let ok = Classification::success(200);
        let (_, judged) = judge_write(ok.clone(), Format::Json, Some(NOW_PLAYING.as_bytes()));
        assert_eq!(judged, WriteJudgement::Accepted);

        let ignored = r##"{"scrobbles":{"@attr":{"accepted":"0","ignored":"1"},"scrobble":[{"ignoredMessage":{"code":"1","#text":"Artist was ignored"}}]}}"##;
        let (_, judged) = judge_write(ok.clone(), Format::Json, Some(ignored.as_bytes()));
        assert_eq!(judged, WriteJudgement::Ignored(1));

        let (verdict, judged) = judge_write(ok, Format::Json, Some(b"{\"artist\":{}}"));
        assert_eq!(judged, WriteJudgement::Failed);
        assert_eq!(verdict.outcome, Outcome::CheckFailed);
        assert_eq!(verdict.blame, Some(Blame::Upstream));

        let mut error = Classification::new(Outcome::ApiError);
        error.error_code = Some(9);
        assert_eq!(
            judge_write(error, Format::Json, None).1,
            WriteJudgement::Rejected
        );
        let timeout = Classification::new(Outcome::Timeout);
        assert_eq!(
            judge_write(timeout, Format::Json, None).1,
            WriteJudgement::Failed
        );
    }

    /// ListenBrainz turns its XML into JSON with the attributes as plain members (no `@attr`).
    #[test]
    fn listenbrainz_write_answers_without_attr_are_read() {
        let ok = Classification::success(200);
        let scrobbles = r##"{"scrobbles":{"accepted":"1","ignored":"0","scrobble":{"track":{"corrected":"0","#text":"canary"},"ignoredMessage":{"code":"0"}}}}"##;
        let (_, judged) = judge_write(ok.clone(), Format::Json, Some(scrobbles.as_bytes()));
        assert_eq!(judged, WriteJudgement::Accepted);
        let playing = r##"{"nowplaying":{"track":{"corrected":"0","#text":"canary"},"ignoredMessage":{"code":"0"}}}"##;
        let (_, judged) = judge_write(ok, Format::Json, Some(playing.as_bytes()));
        assert_eq!(judged, WriteJudgement::Accepted);
    }

    #[test]
    fn a_read_back_sees_the_play_of_the_canary_account_only() {
        let ok = Classification::success(200);
        let playing = r##"{"recenttracks":{"track":[{"artist":{"#text":"lastfm-monitor"},"name":"canary","@attr":{"nowplaying":"true"}}],"@attr":{"user":"canary"}}}"##;
        let (_, sight) = judge_read(
            ok.clone(),
            Format::Json,
            Some(playing.as_bytes()),
            wanted(None),
        );
        assert_eq!(sight, Sight::Seen, "user names compare case-insensitively");
        // The same entry is not a scrobble with a timestamp.
        let (_, sight) = judge_read(
            ok.clone(),
            Format::Json,
            Some(playing.as_bytes()),
            wanted(Some(1_700_000_000)),
        );
        assert_eq!(sight, Sight::NotYet);

        let scrobbled = r##"{"recenttracks":{"track":{"artist":{"#text":"lastfm-monitor"},"name":"canary","date":{"uts":"1700000000","#text":""}},"@attr":{"user":"canary"}}}"##;
        let (_, sight) = judge_read(
            ok.clone(),
            Format::Json,
            Some(scrobbled.as_bytes()),
            wanted(Some(1_700_000_000)),
        );
        assert_eq!(sight, Sight::Seen);

        let someone_else = playing.replace("\"user\":\"canary\"", "\"user\":\"rj\"");
        let (verdict, sight) = judge_read(
            ok,
            Format::Json,
            Some(someone_else.as_bytes()),
            wanted(None),
        );
        assert_eq!(sight, Sight::Unusable);
        assert_eq!(verdict.outcome, Outcome::CheckFailed);
        assert!(verdict.detail.unwrap().contains("\"rj\""));
    }

    #[test]
    fn blame_follows_the_result() {
        use CanaryResult::{Failed, Ignored, NotVisible, Rejected, Visible};
        assert_eq!(canary_blame(Visible, None, None, None), None);
        assert_eq!(
            canary_blame(NotVisible, None, None, None),
            Some(Blame::Upstream)
        );
        for (code, blame) in [
            (1, Blame::Upstream),
            (2, Blame::Upstream),
            (3, Blame::Client),
            (4, Blame::Client),
            (5, Blame::Client),
            (77, Blame::Upstream),
        ] {
            let code = IgnoredCode::of(code);
            assert_eq!(canary_blame(Ignored, Some(code), None, None), Some(blame));
        }
        assert_eq!(
            canary_blame(
                Rejected,
                None,
                Some(RateLimitScope::User),
                Some(Blame::Upstream)
            ),
            Some(Blame::Client)
        );
        assert_eq!(
            canary_blame(Failed, None, None, Some(Blame::Local)),
            Some(Blame::Local)
        );
        assert_eq!(IgnoredCode::of(0), IgnoredCode::Other);
        assert!(IgnoredCode::of(2).is_filter() && !IgnoredCode::of(5).is_filter());
    }
}
