//! A tree with one cycle: `a` names `b::c` inline, `b::c` imports `a` through a group.
pub mod a;
pub mod b;
