pub const Y: u32 = 1;

pub fn x() -> u32 {
    super::X
}
