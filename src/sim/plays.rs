//! The simulated API's memory of writes: per user, the now-playing track and the scrobbled plays,
//! each with the moment it becomes visible (or never), plus the scrobbles counted per UTC day.
//!
//! Plain data with no clock of its own: every call is told the time, so visibility delays and
//! expiry are tested without sleeping. Bounded, because `simulate` may run for weeks against a
//! monitor that scrobbles every hour: the oldest plays and, past a number of users, all users are
//! forgotten.

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

/// Plays kept per user; `user.getRecentTracks` never pages further back than this.
const MAX_PLAYS_PER_USER: usize = 1000;
/// Without `[[keys]]` any session is valid, so the map is bounded by forgetting.
const MAX_USERS: usize = 1024;

/// What a write names: the track and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Track {
    pub(crate) artist: String,
    pub(crate) name: String,
    pub(crate) album: String,
    pub(crate) album_artist: String,
}

/// One scrobbled play: the track and the time it was played (UTC seconds), as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Play {
    pub(crate) track: Track,
    pub(crate) timestamp: u64,
}

/// When a stored write shows: from `Some(instant)` on, or never.
pub(crate) type VisibleFrom = Option<Instant>;

#[derive(Debug, Default)]
struct UserPlays {
    now_playing: Option<NowPlaying>,
    /// In the order written.
    plays: Vec<(Play, VisibleFrom)>,
    /// The UTC day (days since the epoch) and the scrobbles accepted on it.
    today: (u64, u32),
}

#[derive(Debug)]
struct NowPlaying {
    track: Track,
    visible_from: VisibleFrom,
    until: Instant,
}

/// Every user's writes; the key is the user name in lower case, as Last.fm names are.
#[derive(Debug, Default)]
pub(crate) struct PlayStore {
    users: HashMap<String, UserPlays>,
}

impl PlayStore {
    fn user(&mut self, user: &str) -> &mut UserPlays {
        let name = user.to_lowercase();
        if self.users.len() >= MAX_USERS && !self.users.contains_key(&name) {
            self.users.clear();
        }
        self.users.entry(name).or_default()
    }

    /// `track` is playing for `user` from `visible_from` until `lasts` after `now`.
    pub(crate) fn set_now_playing(
        &mut self,
        user: &str,
        track: Track,
        visible_from: VisibleFrom,
        now: Instant,
        lasts: Duration,
    ) {
        self.user(user).now_playing = Some(NowPlaying {
            track,
            visible_from,
            until: now + lasts,
        });
    }

    /// Stores an accepted scrobble; a scrobble of the track playing now ends the now playing.
    pub(crate) fn scrobble(&mut self, user: &str, play: Play, visible_from: VisibleFrom) {
        let entry = self.user(user);
        if entry
            .now_playing
            .as_ref()
            .is_some_and(|np| same_track(&np.track, &play.track))
        {
            entry.now_playing = None;
        }
        if entry.plays.len() >= MAX_PLAYS_PER_USER {
            entry.plays.remove(0);
        }
        entry.plays.push((play, visible_from));
    }

    /// Counts one scrobble of `user` on `day` and says whether it was within `cap`.
    pub(crate) fn count_scrobble(&mut self, user: &str, day: u64, cap: Option<u32>) -> bool {
        let entry = self.user(user);
        if entry.today.0 != day {
            entry.today = (day, 0);
        }
        if cap.is_some_and(|cap| entry.today.1 >= cap) {
            return false;
        }
        entry.today.1 += 1;
        true
    }

    /// What `user.getRecentTracks` shows of `user` at `now`: the now-playing track, if any, and
    /// the visible plays, newest first (by their timestamp; the later write first on a tie).
    pub(crate) fn recent(&self, user: &str, now: Instant) -> (Option<&Track>, Vec<&Play>) {
        let Some(entry) = self.users.get(&user.to_lowercase()) else {
            return (None, Vec::new());
        };
        let shows = |from: &VisibleFrom| from.is_some_and(|at| at <= now);
        let now_playing = entry
            .now_playing
            .as_ref()
            .filter(|np| shows(&np.visible_from) && now < np.until)
            .map(|np| &np.track);
        let mut plays: Vec<&Play> = entry
            .plays
            .iter()
            .rev()
            .filter(|(_, from)| shows(from))
            .map(|(play, _)| play)
            .collect();
        plays.sort_by_key(|play| std::cmp::Reverse(play.timestamp));
        (now_playing, plays)
    }
}

/// Last.fm compares names without regard to case.
fn same_track(a: &Track, b: &Track) -> bool {
    a.artist.to_lowercase() == b.artist.to_lowercase()
        && a.name.to_lowercase() == b.name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(name: &str) -> Track {
        Track {
            artist: "Cher".to_owned(),
            name: name.to_owned(),
            album: String::new(),
            album_artist: String::new(),
        }
    }

    fn play(name: &str, timestamp: u64) -> Play {
        Play {
            track: track(name),
            timestamp,
        }
    }

    fn names(plays: &[&Play]) -> Vec<String> {
        plays.iter().map(|p| p.track.name.clone()).collect()
    }

    #[test]
    fn plays_show_newest_first_once_visible_and_never_when_invisible() {
        let t0 = Instant::now();
        let mut store = PlayStore::default();
        store.scrobble("Canary", play("old", 100), Some(t0));
        store.scrobble("canary", play("new", 200), Some(t0));
        store.scrobble(
            "canary",
            play("late", 300),
            Some(t0 + Duration::from_secs(10)),
        );
        store.scrobble("canary", play("lost", 400), None);
        store.scrobble("other", play("elsewhere", 500), Some(t0));
        assert_eq!(names(&store.recent("CANARY", t0).1), ["new", "old"]);
        let later = store.recent("canary", t0 + Duration::from_secs(10)).1;
        assert_eq!(names(&later), ["late", "new", "old"]);
        assert!(store.recent("nobody", t0).1.is_empty());
    }

    #[test]
    fn now_playing_expires_and_a_scrobble_of_it_ends_it() {
        let t0 = Instant::now();
        let mut store = PlayStore::default();
        let minute = Duration::from_secs(60);
        store.set_now_playing("canary", track("Believe"), Some(t0), t0, minute);
        assert_eq!(store.recent("canary", t0).0, Some(&track("Believe")));
        assert_eq!(store.recent("canary", t0 + minute).0, None, "expired");
        store.set_now_playing("canary", track("Believe"), Some(t0), t0, minute);
        store.scrobble("canary", play("Strong Enough", 1), Some(t0));
        assert!(store.recent("canary", t0).0.is_some(), "another track");
        let mut same = play("believe", 2);
        same.track.artist = "CHER".to_owned();
        store.scrobble("canary", same, Some(t0));
        assert_eq!(store.recent("canary", t0).0, None, "scrobbled");
    }

    #[test]
    fn the_daily_count_starts_again_each_day() {
        let mut store = PlayStore::default();
        assert!(store.count_scrobble("canary", 1, Some(2)));
        assert!(store.count_scrobble("canary", 1, Some(2)));
        assert!(!store.count_scrobble("canary", 1, Some(2)));
        assert!(store.count_scrobble("other", 1, Some(2)), "per user");
        assert!(store.count_scrobble("canary", 2, Some(2)), "a new day");
        assert!(store.count_scrobble("canary", 2, None), "no cap");
    }
}
