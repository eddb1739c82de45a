//! No cycle: the only paths back from `b::c` to `a` are in a doc link, a comment and a test module.
pub mod a;
pub mod b;
