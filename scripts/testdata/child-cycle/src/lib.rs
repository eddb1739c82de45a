//! A cycle between a folder module and its child: `a` names `a::b` by a relative path,
//! `a::b` names `a` through `super::`.
pub mod a;
