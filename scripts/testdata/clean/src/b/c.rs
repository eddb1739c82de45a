/// Like [`crate::a::X`], but two.
pub const Y: u32 = 2; // not crate::a::X

#[cfg(test)]
mod tests {
    #[test]
    fn y_follows_x() {
        assert_eq!(super::Y, crate::a::X + 1);
    }
}
