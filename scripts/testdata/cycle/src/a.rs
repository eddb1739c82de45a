pub const X: u32 = 1;

pub fn twice() -> u32 {
    crate::b::c::Y * 2
}
