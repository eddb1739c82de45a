mod b;

use b::Y;

pub const X: u32 = Y + 1;
