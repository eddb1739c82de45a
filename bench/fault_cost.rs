//! What one first touch of a page costs on this machine: the lower bound of what a burst's
//! first round pays for memory the process never used before (docs/PERFORMANCE.md, scheduler).
//!
//! Run: `rustc -O --edition 2024 bench/fault_cost.rs -o /tmp/fault_cost && /tmp/fault_cost`.
//! Each round maps 64 MiB of fresh zeroed memory (`vec!` of zeros is `calloc`, which takes new
//! pages from the kernel at this size), writes one byte per 4 KiB page and frees it again.

use std::time::Instant;

const SIZE: usize = 64 << 20;
const PAGE: usize = 4096;

fn main() {
    for round in 1..=3 {
        let mut memory = vec![0u8; SIZE];
        let started = Instant::now();
        for offset in (0..SIZE).step_by(PAGE) {
            memory[offset] = 1;
        }
        let elapsed = started.elapsed();
        std::hint::black_box(&memory);
        let pages = SIZE / PAGE;
        println!(
            "round {round}: {pages} pages touched in {:.1} ms, {:.2} µs per page",
            elapsed.as_secs_f64() * 1e3,
            elapsed.as_secs_f64() * 1e6 / pages as f64
        );
    }
}
