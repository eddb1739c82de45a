use crate::{a::X, b};

pub const Y: u32 = X + 1;
