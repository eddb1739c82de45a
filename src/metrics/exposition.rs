//! The exposition writer: the index of every series, and its encoding in the text format 0.0.4.
//!
//! Each series is an entry in an [`Index`] that keeps its label block escaped and sorted, beside
//! the cell (`metrics/cell.rs`) whose atomics hold its value; a scrape copies those prefixes and
//! formats the numbers. Neither `Registry::gather` (which rebuilt every series as a protobuf
//! message on each scrape, about 0.5 µs a series) nor the prometheus crate's series (about
//! 0.6 KiB each, 65 KiB a probe) are used (docs/PERFORMANCE.md, "What changed in the third
//! session"). The index is copy-on-write behind an `Arc` ([`Exposition`]): a scrape takes a
//! snapshot under a lock held only to clone a pointer, so encoding never blocks a probe and a
//! probe never blocks a scrape. The text is byte for byte what the crate's `TextEncoder` writes
//! for the same values (families by name, series by label values; a test checks).
//!
//! This file knows families only as the rows of `metrics/families.rs`: it declares them all and
//! resolves series by [`Family`], so it holds no metric name of its own. What each probe, target
//! or reference exports is decided by the handles (`metrics/handles.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::cell::{Counter, Gauge, Histogram, IntGauge};
use super::families::{Family, Kind};

/// Declaring the families failed: a name declared twice or not a valid metric name, a bug caught
/// at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot register metric {0}: its name is declared twice or is not a valid metric name")]
pub struct RegisterMetric(&'static str);

/// Locks plain data; a panic elsewhere cannot leave it unusable.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A kind of series value, as the exposition index holds it.
pub(super) trait Cell: Clone {
    /// The type of the families whose series are of this kind.
    const KIND: Kind;
    /// A new series of `family` at zero.
    fn fresh(family: Family) -> Self;
    /// The handle in `value`, if it is of this kind.
    fn of(value: &Value) -> Option<&Self>;
    fn into_value(self) -> Value;
}

/// Implements [`Cell`] for `$cell`, a variant of [`Value`] of the same name; `$other` lists the
/// other variants, so that the match stays exhaustive.
macro_rules! cell {
    ($cell:ident, $kind:ident, |$family:ident| $fresh:expr, others: $($other:ident),+) => {
        impl Cell for $cell {
            const KIND: Kind = Kind::$kind;
            fn fresh($family: Family) -> Self {
                $fresh
            }
            fn of(value: &Value) -> Option<&Self> {
                match value {
                    Value::$cell(cell) => Some(cell),
                    $(Value::$other(_))|+ => None,
                }
            }
            fn into_value(self) -> Value {
                Value::$cell(self)
            }
        }
    };
}

cell!(Counter, Counter, |_family| Counter::default(), others: IntGauge, Gauge, Histogram);
cell!(IntGauge, Gauge, |_family| IntGauge::default(), others: Counter, Gauge, Histogram);
cell!(Gauge, Gauge, |_family| Gauge::default(), others: Counter, IntGauge, Histogram);
cell!(Histogram, Histogram, |family| Histogram::new(family.buckets()), others: Counter, IntGauge, Gauge);

/// Series being resolved against the exposition: one that exists already is shared, so a reload
/// (or a probe that comes back under the same labels) carries its values on; a missing one is
/// created at zero, and all of them enter the exposition together at [`Batch::commit`].
pub(super) struct Batch {
    current: Arc<Index>,
    new: Vec<Entry>,
}

impl Batch {
    pub(super) fn new(exposition: &Exposition) -> Self {
        Self {
            current: exposition.snapshot(),
            new: Vec::new(),
        }
    }

    /// The series of `family` with `labels`: the existing one (in the exposition or earlier in
    /// this batch), or a new one at zero.
    pub(super) fn series<C: Cell>(&mut self, family: Family, labels: &[(&'static str, &str)]) -> C {
        debug_assert_eq!(
            C::KIND,
            family.declaration().kind,
            "{family:?} holds another type"
        );
        if let Some(cell) = self.existing::<C>(family, labels) {
            return cell;
        }
        let cell = C::fresh(family);
        self.new
            .push(Entry::new(family.name(), labels, cell.clone().into_value()));
        cell
    }

    /// The series of `family` with `labels` if it exists (in the exposition or earlier in this
    /// batch); never creates one.
    pub(super) fn existing<C: Cell>(
        &self,
        family: Family,
        labels: &[(&'static str, &str)],
    ) -> Option<C> {
        let family = family.name();
        let key = series_key(labels);
        let in_batch = self
            .new
            .iter()
            .find(|entry| entry.family == family && entry.key == key)
            .map(|entry| &entry.series.value);
        let existing = in_batch.or_else(|| {
            let family = self.current.families.get(family)?;
            family.series.get(&key).map(|series| &series.value)
        });
        existing.and_then(C::of).cloned()
    }

    pub(super) fn commit(self, exposition: &Exposition) {
        let Self { current, new } = self;
        // Released first: while this snapshot lives, inserting would copy the whole index.
        drop(current);
        exposition.insert_all(new);
    }
}

/// The value of label `name`.
pub(super) fn label<'a>(labels: &[(&str, &'a str)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, value)| *value)
}

/// The exposition index, swapped copy-on-write so that a scrape only clones a pointer. Made only
/// by [`Exposition::declared`], so every family of the table is in it.
#[derive(Debug)]
pub(super) struct Exposition {
    index: Mutex<Arc<Index>>,
    /// Length of the last rendering, so the next one allocates its buffer once.
    last_len: AtomicUsize,
}

impl Exposition {
    /// An exposition with every family of the table declared, and no series yet.
    pub(super) fn declared() -> Result<Self, RegisterMetric> {
        let mut index = Index::default();
        for family in Family::ALL {
            let declaration = family.declaration();
            index.add_family(family.name(), &declaration.help.render(), declaration.kind)?;
        }
        Ok(Self {
            index: Mutex::new(Arc::new(index)),
            last_len: AtomicUsize::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<Index>> {
        lock(&self.index)
    }

    /// The series as of now; later changes make a new index and leave this one alone.
    pub(super) fn snapshot(&self) -> Arc<Index> {
        Arc::clone(&self.lock())
    }

    fn insert_all(&self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        let mut guard = self.lock();
        // Copies the index only while a scrape still encodes the previous one.
        let index = Arc::make_mut(&mut guard);
        for entry in entries {
            index.insert_entry(entry);
        }
    }

    /// Removes the series of `families` that `matches` selects by their labels.
    pub(super) fn remove(
        &self,
        families: impl Iterator<Item = Family>,
        matches: impl Fn(&[(&str, &str)]) -> bool,
    ) {
        let mut guard = self.lock();
        let index = Arc::make_mut(&mut guard);
        for family in families {
            let Some(family) = index.families.get_mut(family.name()) else {
                continue;
            };
            let names = family.sorted_names();
            family.series.retain(|key, _| {
                let labels: Vec<(&str, &str)> = names
                    .iter()
                    .copied()
                    .zip(key.split(KEY_SEPARATOR))
                    .collect();
                !matches(&labels)
            });
        }
    }

    pub(super) fn size_hint(&self) -> usize {
        self.last_len.load(Ordering::Relaxed).max(4096) + 1024
    }

    pub(super) fn remember_size(&self, len: usize) {
        self.last_len.store(len, Ordering::Relaxed);
    }
}

/// Every family by name, each with its series by label values: the order of the text format.
#[derive(Debug, Default, Clone)]
pub(super) struct Index {
    families: BTreeMap<&'static str, FamilySeries>,
}

impl Index {
    /// Declares a family; a name declared twice or outside `[a-zA-Z_:][a-zA-Z0-9_:]*` is a bug.
    fn add_family(
        &mut self,
        name: &'static str,
        help: &str,
        kind: Kind,
    ) -> Result<(), RegisterMetric> {
        let valid = name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if !valid || name.is_empty() || self.families.contains_key(name) {
            return Err(RegisterMetric(name));
        }
        let mut header = String::new();
        if !help.is_empty() {
            header.push_str("# HELP ");
            header.push_str(name);
            header.push(' ');
            escape_into(&mut header, help, false);
            header.push('\n');
        }
        header.push_str("# TYPE ");
        header.push_str(name);
        header.push(' ');
        header.push_str(kind.as_str());
        header.push('\n');
        self.families.insert(
            name,
            FamilySeries {
                header,
                #[cfg(test)]
                help: help.to_owned(),
                #[cfg(test)]
                kind,
                declared: Vec::new(),
                series: BTreeMap::new(),
            },
        );
        Ok(())
    }

    fn insert_entry(&mut self, entry: Entry) {
        match self.families.get_mut(entry.family) {
            Some(family) => {
                if family.declared.is_empty() {
                    family.declared = entry.declared;
                }
                family.series.insert(entry.key, entry.series);
            }
            None => tracing::error!(family = entry.family, "series of an undeclared family"),
        }
    }

    pub(super) fn encode(&self, out: &mut String) {
        self.encode_some(&mut Cursor::default(), out, usize::MAX);
    }

    /// Encodes from `cursor` on until `out` holds at least `budget` bytes or every series is
    /// written, and moves `cursor` past what it wrote; `true` while there is more to write.
    /// The one encoder: a whole exposition is this with no budget, a streamed scrape is this
    /// piece after piece.
    pub(super) fn encode_some(&self, cursor: &mut Cursor, out: &mut String, budget: usize) -> bool {
        use std::ops::Bound::{Excluded, Unbounded};

        for (at, (name, family)) in self.families.iter().enumerate().skip(cursor.family) {
            // Like `gather`, a family without series is left out.
            if family.series.is_empty() {
                continue;
            }
            let rest = match cursor.after.take() {
                Some(key) => family.series.range::<String, _>((Excluded(key), Unbounded)),
                None => {
                    out.push_str(&family.header);
                    family.series.range::<String, _>(..)
                }
            };
            for (key, series) in rest {
                series.encode(name, out);
                if out.len() >= budget {
                    cursor.family = at;
                    cursor.after = Some(key.clone());
                    return true;
                }
            }
        }
        cursor.family = self.families.len();
        false
    }
}

/// Where a piecewise encoding stopped: the family it was in and the last series it wrote there
/// (`None`: the family's header comes next).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Cursor {
    family: usize,
    after: Option<String>,
}

/// A metric family: its `# HELP`/`# TYPE` header and its series.
#[derive(Debug, Clone)]
struct FamilySeries {
    header: String,
    /// The help text and type the header was made of, for the reference encoding in the tests.
    #[cfg(test)]
    help: String,
    #[cfg(test)]
    kind: Kind,
    /// The label names in the order the series were created with.
    declared: Vec<&'static str>,
    /// By label values in the order of the label names (what `gather` sorts by), joined by
    /// [`KEY_SEPARATOR`]: one allocation per series, and the same order as comparing the values
    /// one by one, as no label value holds a NUL (config names cannot).
    series: BTreeMap<String, Series>,
}

impl FamilySeries {
    /// The label names in the order of a series key's values.
    fn sorted_names(&self) -> Vec<&'static str> {
        let mut names = self.declared.clone();
        names.sort_unstable();
        names
    }
}

/// Joins label values in a series key; sorts below every character a label value holds.
const KEY_SEPARATOR: char = '\0';
/// Where a series keeps its value.
#[derive(Debug, Clone)]
pub(super) enum Value {
    Counter(Counter),
    IntGauge(IntGauge),
    Gauge(Gauge),
    Histogram(Histogram),
}

/// One series: the text that precedes its value, and where its value lives.
#[derive(Debug, Clone)]
struct Series {
    /// `{a="x",b="y"}`: sorted by name and escaped; empty without labels.
    block: String,
    value: Value,
}

impl Series {
    fn encode(&self, name: &str, out: &mut String) {
        match &self.value {
            Value::Counter(counter) => {
                self.sample(name, "", out);
                push_u64(out, counter.get());
            }
            Value::IntGauge(gauge) => {
                self.sample(name, "", out);
                push_i64(out, gauge.get());
            }
            Value::Gauge(gauge) => {
                self.sample(name, "", out);
                push_f64(out, gauge.get());
            }
            Value::Histogram(histogram) => {
                let snapshot = histogram.snapshot();
                for (bound, cumulative) in snapshot.buckets {
                    self.bucket(name, out);
                    if bound.is_infinite() {
                        out.push_str("+Inf");
                    } else {
                        push_f64(out, bound);
                    }
                    out.push_str("\"} ");
                    push_u64(out, cumulative);
                    out.push('\n');
                }
                self.sample(name, "_sum", out);
                push_f64(out, snapshot.sum);
                out.push('\n');
                self.sample(name, "_count", out);
                push_u64(out, snapshot.count);
            }
        }
        out.push('\n');
    }

    /// Writes `name_bucket{labels,le="`, up to the bound.
    fn bucket(&self, name: &str, out: &mut String) {
        out.push_str(name);
        out.push_str("_bucket");
        match self.block.strip_suffix('}') {
            Some(open) => {
                out.push_str(open);
                out.push(',');
            }
            None => out.push('{'),
        }
        out.push_str("le=\"");
    }

    /// Writes `name{labels} `, up to the value.
    fn sample(&self, name: &str, suffix: &str, out: &mut String) {
        out.push_str(name);
        out.push_str(suffix);
        out.push_str(&self.block);
        out.push(' ');
    }
}

/// A series about to enter the index.
#[derive(Debug)]
struct Entry {
    family: &'static str,
    declared: Vec<&'static str>,
    key: String,
    series: Series,
}

impl Entry {
    fn new(family: &'static str, labels: &[(&'static str, &str)], value: Value) -> Self {
        let mut block = String::new();
        for (i, (name, value)) in sorted(labels).iter().enumerate() {
            block.push(if i == 0 { '{' } else { ',' });
            block.push_str(name);
            block.push_str("=\"");
            escape_into(&mut block, value, true);
            block.push('"');
        }
        if !block.is_empty() {
            block.push('}');
        }
        Self {
            family,
            declared: labels.iter().map(|(name, _)| *name).collect(),
            key: series_key(labels),
            series: Series { block, value },
        }
    }
}

fn sorted<'a>(labels: &[(&'static str, &'a str)]) -> Vec<(&'static str, &'a str)> {
    let mut sorted = labels.to_vec();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    sorted
}

/// A series' key in its family: the label values in the order of their names.
fn series_key(labels: &[(&'static str, &str)]) -> String {
    let mut key = String::new();
    for (i, (_, value)) in sorted(labels).iter().enumerate() {
        if i > 0 {
            key.push(KEY_SEPARATOR);
        }
        key.push_str(value);
    }
    key
}

/// The text format's escaping: `\` and newline always, `"` in label values.
fn escape_into(out: &mut String, text: &str, quotes: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quotes => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Integers up to 2^53 print the same as the `f64` the text encoder formatted them as.
const EXACT_IN_F64: u64 = 1 << 53;

fn push_u64(out: &mut String, value: u64) {
    if value <= EXACT_IN_F64 {
        out.push_str(itoa::Buffer::new().format(value));
    } else {
        push_f64_raw(out, value as f64);
    }
}

fn push_i64(out: &mut String, value: i64) {
    if value.unsigned_abs() <= EXACT_IN_F64 {
        out.push_str(itoa::Buffer::new().format(value));
    } else {
        push_f64_raw(out, value as f64);
    }
}

/// A float as `f64::to_string` writes it (what the text encoder used), whole numbers fast.
pub(crate) fn push_f64(out: &mut String, value: f64) {
    let whole = value.fract() == 0.0 && value.abs() <= EXACT_IN_F64 as f64;
    if whole && !(value == 0.0 && value.is_sign_negative()) {
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        push_f64_raw(out, value);
    }
}

fn push_f64_raw(out: &mut String, value: f64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{value}");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::classify::{Condition, MismatchKind, Outcome};
    use crate::health::politeness::SkipReason;
    use crate::metrics::Metrics;
    use crate::metrics::tests::verdict;
    use crate::probe::PhaseTimings;

    /// A streamed scrape is the whole exposition cut into pieces, whatever the piece size: every
    /// series once, in order, headers where their families start, then the process families.
    #[test]
    fn pieces_put_together_are_the_exposition() {
        let metrics = Metrics::try_new("1", "r").unwrap();
        for probe in ["a", "b", "c"] {
            metrics.probe("lastfm", probe, Duration::from_secs(60));
        }
        metrics.target("lastfm", 0.995);
        let index = metrics.exposition.snapshot();
        let mut whole = String::new();
        index.encode(&mut whole);
        assert!(
            whole.len() > 10_000,
            "enough series to cut: {}",
            whole.len()
        );
        for budget in [1, 100, 4096, usize::MAX] {
            let (mut cursor, mut joined, mut pieces) = (Cursor::default(), String::new(), 0);
            loop {
                let mut piece = String::new();
                let more = index.encode_some(&mut cursor, &mut piece, budget);
                joined.push_str(&piece);
                pieces += 1;
                if !more {
                    break;
                }
            }
            assert_eq!(joined, whole, "budget {budget}");
            if budget == 100 {
                assert!(
                    pieces > whole.len() / 1000,
                    "{pieces} pieces of about 100 bytes"
                );
            }
        }
        let mut streamed = String::new();
        let mut all = metrics.pieces(1000);
        while let Some(piece) = all.next_piece() {
            streamed.push_str(&piece);
        }
        assert!(streamed.starts_with(&whole), "the series first");
        #[cfg(target_os = "linux")]
        assert!(
            streamed[whole.len()..].starts_with("# HELP process_"),
            "then the process"
        );
    }

    #[test]
    fn render_is_byte_for_byte_what_the_text_encoder_writes() {
        let metrics = Metrics::try_new("1.2.3", "rev\"with\\odd\nchars").unwrap();
        let plain = metrics.probe("lastfm", "artist.getInfo", Duration::from_secs(60));
        let odd = metrics.probe("lastfm", "a\"b\\c\nd", Duration::from_millis(1500));
        metrics.probe("libre", "gone", Duration::from_secs(60));
        metrics.target("lastfm", 0.995).set(
            false,
            |c| c == Condition::RateLimited,
            Duration::from_millis(2500),
        );
        metrics
            .target("libre", 0.999)
            .set(true, |_| false, Duration::ZERO);
        let mismatch = |kind, code, status| crate::classify::Mismatch { kind, code, status };
        plain.record_run(
            &verdict(Outcome::Success, Some(200), None, None),
            Duration::from_millis(120),
            &PhaseTimings::default(),
            1_764_000_000.25,
        );
        plain.record_run(
            &verdict(
                Outcome::ApiError,
                Some(200),
                Some(8),
                Some(mismatch(MismatchKind::ErrorWithSuccessStatus, Some(8), 200)),
            ),
            Duration::from_millis(3300),
            &PhaseTimings::default(),
            1_764_000_060.5,
        );
        odd.record_run(
            &verdict(
                Outcome::ApiError,
                Some(418),
                Some(99),
                Some(mismatch(
                    MismatchKind::StatusDisagreesWithCode,
                    Some(99),
                    418,
                )),
            ),
            Duration::from_secs(40),
            &PhaseTimings::default(),
            1_764_000_061.0,
        );
        odd.record_run(
            &verdict(Outcome::Timeout, None, None, None),
            Duration::from_secs(10),
            &PhaseTimings::default(),
            1_764_000_062.0,
        );
        odd.record_skip(SkipReason::Overrun, 3);
        metrics.remove_probe("libre", "gone");
        metrics.remove_target("libre");
        metrics.record_reload(true, 1_764_000_000.123);

        let ours = metrics.render();
        let ours = ours.split("# HELP process_").next().unwrap();
        let durations = [
            (["lastfm", "artist.getInfo"], 0.12),
            (["lastfm", "artist.getInfo"], 3.3),
            (["lastfm", "a\"b\\c\nd"], 40.0),
            (["lastfm", "a\"b\\c\nd"], 10.0),
        ];
        assert_eq!(ours, oracle(&metrics, &durations));
        assert!(!ours.contains("libre"), "removed series are gone");
        assert!(
            ours.contains("status=\"4xx\""),
            "sparse series appear once used"
        );
    }

    /// The same series with the same values, built from the prometheus crate's own types and
    /// written by its `TextEncoder`: the reference our encoder must match. Histograms cannot be
    /// set, so their observations are replayed: `(target and probe, seconds)`.
    fn oracle(metrics: &Metrics, durations: &[([&str; 2], f64)]) -> String {
        use prometheus::Encoder as _;
        use prometheus::core::Collector;
        let registry = prometheus::Registry::new();
        let index = metrics.exposition.snapshot();
        for (name, family) in &index.families {
            let opts = prometheus::Opts::new(*name, family.help.clone());
            let names = family.sorted_names();
            let declared = &family.declared;
            let collector: Box<dyn Collector> = match family.kind {
                Kind::Histogram => {
                    let vec = prometheus::HistogramVec::new(
                        prometheus::HistogramOpts::from(opts).buckets(
                            Family::ALL
                                .into_iter()
                                .find(|f| f.name() == *name)
                                .expect("a declared family")
                                .buckets()
                                .to_vec(),
                        ),
                        declared,
                    )
                    .unwrap();
                    for series in family.series.values() {
                        // A series observed nothing yet still appears, at zero.
                        assert!(matches!(series.value, Value::Histogram(_)));
                    }
                    for key in family.series.keys() {
                        vec.with_label_values(&values_of(key, &names, declared));
                    }
                    if *name == Family::ProbeDuration.name() {
                        for (labels, seconds) in durations {
                            vec.with_label_values(labels).observe(*seconds);
                        }
                    }
                    Box::new(vec)
                }
                Kind::Counter => {
                    let vec = prometheus::IntCounterVec::new(opts, declared).unwrap();
                    for (key, series) in &family.series {
                        let Value::Counter(counter) = &series.value else {
                            panic!("{name} mixes kinds")
                        };
                        vec.with_label_values(&values_of(key, &names, declared))
                            .inc_by(counter.get());
                    }
                    Box::new(vec)
                }
                Kind::Gauge => {
                    let ints = prometheus::IntGaugeVec::new(opts.clone(), declared).unwrap();
                    let floats = prometheus::GaugeVec::new(opts, declared).unwrap();
                    let mut any_float = false;
                    for (key, series) in &family.series {
                        let values = values_of(key, &names, declared);
                        match &series.value {
                            Value::IntGauge(gauge) => {
                                ints.with_label_values(&values).set(gauge.get());
                            }
                            Value::Gauge(gauge) => {
                                any_float = true;
                                floats.with_label_values(&values).set(gauge.get());
                            }
                            Value::Counter(_) | Value::Histogram(_) => {
                                panic!("{name} mixes kinds")
                            }
                        }
                    }
                    if any_float {
                        Box::new(floats)
                    } else {
                        Box::new(ints)
                    }
                }
            };
            registry.register(collector).unwrap();
        }
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&registry.gather(), &mut text)
            .unwrap();
        String::from_utf8(text).unwrap()
    }

    /// A series key's label values, in the order of `declared`.
    fn values_of<'a>(key: &'a str, sorted: &[&str], declared: &[&str]) -> Vec<&'a str> {
        let labels: Vec<(&str, &str)> = sorted
            .iter()
            .copied()
            .zip(key.split(KEY_SEPARATOR))
            .collect();
        declared
            .iter()
            .map(|name| label(&labels, name).unwrap())
            .collect()
    }

    #[test]
    fn a_family_declared_twice_or_badly_named_is_refused() {
        let mut index = Index::default();
        assert!(index.add_family("lastfm_x", "help", Kind::Gauge).is_ok());
        assert!(index.add_family("lastfm_x", "help", Kind::Gauge).is_err());
        assert!(index.add_family("9lastfm", "help", Kind::Gauge).is_err());
        assert!(index.add_family("lastfm-x", "help", Kind::Gauge).is_err());
        assert!(index.add_family("", "help", Kind::Gauge).is_err());
    }
}
