//! Time-based uptime of one target: how much of the time the monitor ran the target was
//! available, and how much of the window the monitor ran at all (coverage).
//!
//! Time is counted, not runs: the span between two consecutive runs of a target is monitored
//! time, up or down as the target stood after the first of them. Time the process did not run
//! (before its first run, across a restart) is no one's: it lowers coverage, never uptime. Two
//! rings of second counters keep it bounded whatever the probe count or cadence: 61 one-minute
//! slots (the last hour) and 168 one-hour slots (the last week), four bytes a slot, under 1 KiB
//! per target. Figures are read over complete minutes only, so they move at most once a minute
//! and a document built from them does not change between two polls a few seconds apart.

use serde::{Deserialize, Serialize};

/// Seconds of a minute slot.
const MINUTE: i64 = 60;
/// Seconds of an hour slot.
const HOUR: i64 = 3600;
/// Minute slots: the last hour and the current minute.
const MINUTE_SLOTS: usize = 61;
/// Hour slots: the last week.
const HOUR_SLOTS: usize = 168;

/// The three windows uptime is reported over.
pub const WINDOWS: [(&str, i64); 3] = [("1h", HOUR), ("24h", 24 * HOUR), ("7d", 7 * 24 * HOUR)];

/// A ring of `[monitored, up]` second counters, one pair per slot of `slot_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Ring {
    slot_secs: i64,
    /// The absolute index (Unix seconds / `slot_secs`) of the newest slot written.
    newest: i64,
    #[serde(with = "slots_text")]
    slots: Vec<[u16; 2]>,
}

/// The slots in the state file as one line of text: `m` for a slot up all its `m` monitored
/// seconds (`0` for an empty one), `m/u` otherwise, space-separated. A JSON array of pairs
/// takes ten times the room once pretty-printed.
mod slots_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(
        slots: &[[u16; 2]],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let words: Vec<String> = slots
            .iter()
            .map(|[monitored, up]| {
                if monitored == up {
                    monitored.to_string()
                } else {
                    format!("{monitored}/{up}")
                }
            })
            .collect();
        serializer.serialize_str(&words.join(" "))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<[u16; 2]>, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.split(' ')
            .map(|word| {
                let (monitored, up) = word.split_once('/').unwrap_or((word, word));
                match (monitored.parse::<u16>(), up.parse::<u16>()) {
                    (Ok(monitored), Ok(up)) if up <= monitored => Ok([monitored, up]),
                    _ => Err(D::Error::custom("unreadable uptime slot")),
                }
            })
            .collect()
    }
}

impl Ring {
    fn new(slot_secs: i64, len: usize) -> Self {
        Self {
            slot_secs,
            newest: 0,
            slots: vec![[0, 0]; len],
        }
    }

    fn len(&self) -> i64 {
        i64::try_from(self.slots.len()).unwrap_or(i64::MAX).max(1)
    }

    fn holds(&self, index: i64) -> bool {
        index <= self.newest && index > self.newest.saturating_sub(self.len())
    }

    fn slot(&mut self, index: i64) -> Option<&mut [u16; 2]> {
        let at = usize::try_from(index.rem_euclid(self.len())).ok()?;
        self.slots.get_mut(at)
    }

    /// Counts `[from, to)` (Unix seconds) as monitored, and as up when `up`.
    fn add(&mut self, from: i64, to: i64, up: bool) {
        // Only the part the ring can hold: bounds the loop whatever the gap.
        let mut t = from.max(to.saturating_sub(self.len() * self.slot_secs));
        while t < to {
            let index = t.div_euclid(self.slot_secs);
            let end = to.min((index + 1) * self.slot_secs);
            self.advance(index);
            let secs = u16::try_from(end - t).unwrap_or(u16::MAX);
            if self.holds(index)
                && let Some(slot) = self.slot(index)
            {
                slot[0] = slot[0].saturating_add(secs);
                if up {
                    slot[1] = slot[1].saturating_add(secs);
                }
            }
            t = end;
        }
    }

    /// Makes `index` the newest slot, clearing the slots it passes.
    fn advance(&mut self, index: i64) {
        if index <= self.newest {
            return;
        }
        let first = (self.newest + 1).max(index - self.len() + 1);
        for i in first..=index {
            if let Some(slot) = self.slot(i) {
                *slot = [0, 0];
            }
        }
        self.newest = index;
    }

    /// `[monitored, up]` seconds over the slots `[from, to)` the ring holds.
    fn sum(&self, from: i64, to: i64) -> [i64; 2] {
        let mut total = [0, 0];
        for index in from.max(self.newest - self.len() + 1)..to.min(self.newest + 1) {
            let at = usize::try_from(index.rem_euclid(self.len())).unwrap_or(0);
            if let Some(slot) = self.slots.get(at) {
                total[0] += i64::from(slot[0]);
                total[1] += i64::from(slot[1]);
            }
        }
        total
    }
}

/// Uptime over one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figure {
    /// `1h`, `24h` or `7d`.
    pub window: &'static str,
    /// The fraction of monitored time the target was available; `None` with no monitored time.
    pub ratio: Option<f64>,
    /// The fraction of the window that was monitored.
    pub coverage: f64,
}

/// One target's uptime rings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uptime {
    minutes: Ring,
    hours: Ring,
}

impl Default for Uptime {
    fn default() -> Self {
        Self {
            minutes: Ring::new(MINUTE, MINUTE_SLOTS),
            hours: Ring::new(HOUR, HOUR_SLOTS),
        }
    }
}

impl Uptime {
    /// Counts `[from, to)` (Unix seconds) as monitored, up when `up`.
    pub fn add(&mut self, from: i64, to: i64, up: bool) {
        self.minutes.add(from, to, up);
        self.hours.add(from, to, up);
    }

    /// The figures of [`WINDOWS`] at `now` (Unix seconds), over complete minutes: the hour
    /// before the current minute; for a day and a week, the complete hours before the current
    /// hour plus its complete minutes.
    pub fn figures(&self, now: i64) -> [Figure; 3] {
        let minute = now.div_euclid(MINUTE);
        let hour = now.div_euclid(HOUR);
        let this_hour = self.minutes.sum(hour * (HOUR / MINUTE), minute);
        let this_hour_secs = (minute - hour * (HOUR / MINUTE)) * MINUTE;
        WINDOWS.map(|(window, secs)| {
            let (sum, span) = if secs == HOUR {
                (self.minutes.sum(minute - HOUR / MINUTE, minute), HOUR)
            } else {
                let hours = secs / HOUR - 1;
                let past = self.hours.sum(hour - hours, hour);
                (
                    [past[0] + this_hour[0], past[1] + this_hour[1]],
                    hours * HOUR + this_hour_secs,
                )
            };
            Figure {
                window,
                ratio: (sum[0] > 0).then(|| sum[1] as f64 / sum[0] as f64),
                coverage: if span > 0 {
                    (sum[0] as f64 / span as f64).min(1.0)
                } else {
                    0.0
                },
            }
        })
    }

    /// Whether the rings have their expected shape (a state file could hold anything).
    pub fn is_well_formed(&self) -> bool {
        self.minutes.slot_secs == MINUTE
            && self.minutes.slots.len() == MINUTE_SLOTS
            && self.hours.slot_secs == HOUR
            && self.hours.slots.len() == HOUR_SLOTS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_000_000 - 1_764_000_000 % HOUR;

    #[test]
    fn monitored_time_counts_and_unmonitored_time_is_coverage() {
        let mut uptime = Uptime::default();
        // Thirty minutes up, then ten minutes down, then twenty minutes not monitored.
        uptime.add(T0, T0 + 1800, true);
        uptime.add(T0 + 1800, T0 + 2400, false);
        let [hour, day, week] = uptime.figures(T0 + HOUR);
        assert_eq!(hour.window, "1h");
        assert_eq!(hour.ratio, Some(0.75));
        assert!((hour.coverage - 2400.0 / 3600.0).abs() < 1e-9);
        assert_eq!(day.ratio, Some(0.75));
        assert!(
            (day.coverage - 2400.0 / (23.0 * 3600.0)).abs() < 1e-9,
            "23 complete hours"
        );
        assert_eq!(week.ratio, Some(0.75));
    }

    #[test]
    fn the_current_minute_is_left_out_until_it_is_complete() {
        let mut uptime = Uptime::default();
        uptime.add(T0, T0 + 90, false);
        assert_eq!(uptime.figures(T0 + 100)[0].ratio, Some(0.0));
        let before = uptime.figures(T0 + 100);
        uptime.add(T0 + 90, T0 + 110, true);
        assert_eq!(
            uptime.figures(T0 + 110),
            before,
            "no change within a minute"
        );
        assert!(uptime.figures(T0 + 120)[0].ratio.unwrap() > 0.0);
    }

    #[test]
    fn the_rings_are_one_line_of_text_each_in_the_state_file() {
        let mut uptime = Uptime::default();
        uptime.add(T0, T0 + 90, true);
        uptime.add(T0 + 90, T0 + 150, false);
        let json = serde_json::to_string(&uptime).unwrap();
        assert!(json.contains(" 60 60/30 30/0 0 "), "{json}");
        let back: Uptime = serde_json::from_str(&json).unwrap();
        assert_eq!(back, uptime);
        // More up than monitored, or not a number: refused.
        assert!(serde_json::from_str::<Uptime>(&json.replace("60/30", "30/60")).is_err());
        assert!(serde_json::from_str::<Uptime>(&json.replace("60/30", "x")).is_err());
    }

    #[test]
    fn a_long_gap_or_old_time_is_bounded_and_forgotten() {
        let mut uptime = Uptime::default();
        uptime.add(T0, T0 + 600, false);
        // A week later the old minutes are gone from the hour window and the week.
        let later = T0 + 8 * 24 * HOUR;
        uptime.add(later, later + 120, true);
        let [hour, _, week] = uptime.figures(later + 120);
        assert_eq!(hour.ratio, Some(1.0));
        assert_eq!(week.ratio, Some(1.0));
        // An absurd span is cut to what the rings hold.
        uptime.add(i64::MIN / 2, later + 180, true);
        assert!(uptime.is_well_formed());
    }
}
