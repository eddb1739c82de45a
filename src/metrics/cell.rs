//! Where each series keeps its value: one shared atomic (or, for a histogram, a few), nothing else.
//!
//! The prometheus crate's series carry a copy of their family's description and their label pairs
//! as protobuf messages: about 0.6 KiB a series, 65 KiB a probe (measured with massif;
//! docs/PERFORMANCE.md, "What changed in the third session"). The exposition index
//! (`metrics/exposition.rs`) already holds each series' name, labels and text, so a series
//! needs only its number. A handle is an `Arc` of atomics: cloning it shares the series, recording
//! is one atomic operation, and a scrape reads without a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A monotonic integer counter.
#[derive(Debug, Clone, Default)]
pub(super) struct Counter(Arc<AtomicU64>);

impl Counter {
    pub(super) fn inc(&self) {
        self.inc_by(1);
    }

    pub(super) fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// An integer gauge.
#[derive(Debug, Clone, Default)]
pub(super) struct IntGauge(Arc<AtomicI64>);

impl IntGauge {
    pub(super) fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A float gauge, stored as the bits of an `f64`.
#[derive(Debug, Clone, Default)]
pub(super) struct Gauge(Arc<AtomicU64>);

impl Gauge {
    pub(super) fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
}

/// A histogram over fixed upper bounds.
#[derive(Debug, Clone)]
pub(super) struct Histogram(Arc<HistogramCells>);

#[derive(Debug)]
struct HistogramCells {
    bounds: &'static [f64],
    /// Observations per bucket, not cumulative: `counts[i]` holds those in
    /// `(bounds[i - 1], bounds[i]]`, and the last one those above every bound.
    counts: Box<[AtomicU64]>,
    /// The bits of the `f64` sum.
    sum: AtomicU64,
}

/// What a scrape reads of a histogram.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HistogramSnapshot {
    /// `(upper bound, cumulative count)` per bound, then `+Inf`.
    pub(super) buckets: Vec<(f64, u64)>,
    pub(super) sum: f64,
    /// Equal to the `+Inf` bucket, whatever runs concurrently: both come from the same reads.
    pub(super) count: u64,
}

impl Histogram {
    /// `bounds` ascending, as the text format lists them; `+Inf` is implied.
    pub(super) fn new(bounds: &'static [f64]) -> Self {
        Self(Arc::new(HistogramCells {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0.0_f64.to_bits()),
        }))
    }

    pub(super) fn observe(&self, value: f64) {
        let cells = &self.0;
        // Durations are never NaN; one would land above every bound.
        let bucket = cells
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(cells.bounds.len());
        cells.counts[bucket].fetch_add(1, Ordering::Relaxed);
        // One writer per probe in practice; the loop only matters when two observe at once.
        let _ = cells
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let cells = &self.0;
        let mut cumulative = 0_u64;
        let mut buckets = Vec::with_capacity(cells.counts.len());
        for (i, count) in cells.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = cells.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        HistogramSnapshot {
            buckets,
            sum: f64::from_bits(cells.sum.load(Ordering::Relaxed)),
            count: cumulative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_series() {
        let counter = Counter::default();
        let shared = counter.clone();
        shared.inc_by(3);
        counter.inc();
        assert_eq!((counter.get(), shared.get()), (4, 4));
        let gauge = Gauge::default();
        let shared = gauge.clone();
        shared.set(-2.5);
        assert_eq!(gauge.get(), -2.5);
        let int_gauge = IntGauge::default();
        let shared = int_gauge.clone();
        shared.set(-7);
        assert_eq!(int_gauge.get(), -7);
    }

    #[test]
    fn a_histogram_counts_cumulatively_with_bounds_inclusive() {
        static BOUNDS: [f64; 3] = [0.1, 1.0, 10.0];
        let histogram = Histogram::new(&BOUNDS);
        let shared = histogram.clone();
        for value in [0.05, 0.1, 0.5, 1.0, 20.0, f64::NAN] {
            shared.observe(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(
            snapshot.buckets,
            vec![(0.1, 2), (1.0, 4), (10.0, 4), (f64::INFINITY, 6)]
        );
        assert_eq!(snapshot.count, 6);
        assert!(snapshot.sum.is_nan(), "a NaN observation makes the sum NaN");
        let fresh = Histogram::new(&BOUNDS).snapshot();
        assert_eq!(fresh.count, 0);
        assert_eq!(fresh.sum, 0.0);
    }
}
